// Fault benchmark (`npm run bench:faults`): cache-aside traffic through the fault proxy
// (tools/fault-proxy.ts) to one local memcached, once without a fault (the baseline) and
// once per fault, the fault on for the middle part of each run. Per fault it records requests
// answered with the origin's value / sent, the p99 extra latency of the requests started while
// the fault was on (vs the baseline's requests in the same time window), and the recovery time
// (fault off -> end of the first HIT). Then the parser fuzz (tools/fuzz.ts) and, when a
// soak benchmark is present, its heap growth. Writes bench/results/faults.json and prints a
// table; exits 0 even when a target is missed (reported as MISSED).

import { mkdir, writeFile } from "node:fs/promises";
import { CacheAside } from "../lib/cache/cacheAside.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import {
  type Fault,
  faultWindow,
  runTraffic,
  type ServedSummary,
  startFaultProxy,
  summarizeServed,
} from "../tools/fault-proxy.ts";
import { runParserFuzz } from "../tools/fuzz.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { percentile, round } from "../tools/stats.ts";
import { runSoak } from "./soak.ts";

const settings = {
  /** Requests per run (one run per fault plus the baseline). */
  requests: 500,
  /** Requests are paced evenly over this time. */
  durationMs: 3_000,
  /** Requests in flight at most. */
  concurrency: 4,
  /** The fault is on from here ... */
  faultOnAtMs: 1_000,
  /** ... to here, leaving 1.2 s to recover. */
  faultOffAtMs: 1_800,
  /** Distinct keys per run (each loaded once, then served from the cache). */
  keys: 16,
  /** Client options, as in test/integration/faults.test.ts. */
  // checksums: values carry a CRC-32, so a byte corrupted inside a value reads as a miss.
  client: { timeoutMs: 100, connectTimeoutMs: 200, deadRetryMs: 500, checksums: true },
  /** Parser fuzz cases and seed. */
  fuzzCases: 100_000,
  fuzzSeed: 20_260_101,
};

const targets = {
  /** Lowest answered / sent over all faults. */
  answeredRatioMin: 1,
  fuzzCasesMin: 100_000,
};

const faults: Array<{ name: string; fault: Fault }> = [
  { name: "delay-50ms", fault: { kind: "delay", ms: 50 } },
  { name: "blackhole", fault: { kind: "blackhole" } },
  { name: "reset", fault: { kind: "reset" } },
  { name: "half-close", fault: { kind: "half-close" } },
  { name: "split", fault: { kind: "split" } },
  { name: "corrupt-1pct", fault: { kind: "corrupt", probability: 0.01 } },
  { name: "silent-drop", fault: { kind: "silent-drop" } },
];

const resultsFile = new URL("./results/faults.json", import.meta.url);

function product(key: string): { id: string; name: string; price: number } {
  return { id: key, name: `product ${key}`, price: key.length * 100 + 99 };
}

interface Run {
  summary: ServedSummary;
  /** Latencies of the requests started while the fault was on. */
  duringFault: number[];
}

/** One cache-aside run through a fresh proxy and client, `fault` on in the middle. */
async function run(server: MemcachedProcess, name: string, fault: Fault): Promise<Run> {
  const proxy = await startFaultProxy(server);
  const client = new MemcacheClient({ servers: proxy.endpoint, ...settings.client });
  try {
    const cache = new CacheAside(clientStore(client));
    const key = (i: number) => `bench-faults:${name}:${i % settings.keys}`;
    const startedAt = performance.now();
    const [window, samples] = await Promise.all([
      faultWindow(proxy, fault, {
        startedAt,
        onAtMs: settings.faultOnAtMs,
        offAtMs: settings.faultOffAtMs,
      }),
      runTraffic({
        ...settings,
        startedAt,
        call: (i) => cache.getOrLoad(key(i), async () => product(key(i))),
      }),
    ]);
    const duringFault = samples
      .filter((s) => s.startMs >= window.onMs && s.startMs < window.offMs)
      .map((s) => s.endMs - s.startMs);
    return { summary: summarizeServed(samples, window, (i) => product(key(i))), duringFault };
  } finally {
    client.close();
    await proxy.close();
  }
}

/** The soak benchmark (one million cache-aside calls with faults switching): its key figures. */
async function soakFigures() {
  const { calls, answered, wrong, rejected, heapGrowthMb, maxOpenSockets, durationMs } =
    await runSoak();
  return { calls, answered, wrong, rejected, heapGrowthMb, maxOpenSockets, durationMs };
}

const round1 = (n: number | null) => (n === null || Number.isNaN(n) ? null : round(n, 1));

async function main(): Promise<void> {
  const server = await startMemcached();
  const results: Record<string, unknown> = {};
  let answeredRatioMin = 1;
  const rows: string[][] = [];
  try {
    const baseline = await run(server, "baseline", { kind: "none" });
    const baselineP99 = percentile(baseline.duringFault, 0.99);
    for (const { name, fault } of faults) {
      const { summary, duringFault } = await run(server, name, fault);
      const ratio = summary.answered / summary.sent;
      answeredRatioMin = Math.min(answeredRatioMin, ratio);
      const p99ExtraMs = percentile(duringFault, 0.99) - baselineP99;
      results[name] = {
        fault,
        answered: summary.answered,
        sent: summary.sent,
        answeredRatio: ratio,
        wrongValues: summary.wrong,
        rejected: summary.rejected,
        statuses: summary.statuses,
        p99ExtraMs: round1(p99ExtraMs),
        p99DuringFaultMs: round1(percentile(duringFault, 0.99)),
        p99AllMs: round1(summary.p99Ms),
        maxMs: round1(summary.maxMs),
        recoveryMs: round1(summary.recoveryMs),
        wrongExamples: summary.wrongExamples.slice(0, 2),
      };
      rows.push([
        name,
        `${summary.answered}/${summary.sent}`,
        String(summary.wrong),
        String(round1(p99ExtraMs)),
        String(round1(summary.recoveryMs) ?? "none"),
        Object.entries(summary.statuses)
          .map(([status, n]) => `${status} ${n}`)
          .join(", "),
      ]);
    }
    const fuzz = runParserFuzz(settings.fuzzCases, settings.fuzzSeed);
    const soak = await soakFigures();

    const output = {
      date: new Date().toISOString(),
      node: process.version,
      settings,
      baselineP99DuringWindowMs: round1(baselineP99),
      faults: results,
      answeredRatioMin,
      fuzzCases: fuzz.cases,
      fuzz: {
        seed: settings.fuzzSeed,
        crashes: fuzz.crashes,
        hangs: fuzz.hangs,
        maxBufferedBytes: fuzz.maxBufferedBytes,
        bufferLimit: fuzz.bufferLimit,
        bufferViolations: fuzz.bufferViolations,
        roundTripMismatches: fuzz.roundTripMismatches,
        chunkingMismatches: fuzz.chunkingMismatches,
        durationMs: Math.round(fuzz.durationMs),
      },
      soakHeapGrowthMb: soak.heapGrowthMb,
      soak,
      targets,
    };
    await mkdir(new URL("./results/", import.meta.url), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(output, null, 2)}\n`);

    const header = ["fault", "answered/sent", "wrong", "p99 extra ms", "recovery ms", "statuses"];
    const table = [header, ...rows];
    const widths = header.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
    for (const row of table) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));
    const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
    console.log(
      `\nbaseline p99 (same window, no fault): ${round1(baselineP99)} ms` +
        `\nansweredRatioMin ${answeredRatioMin.toFixed(3)} (target ${targets.answeredRatioMin}: ${verdict(answeredRatioMin >= targets.answeredRatioMin)})` +
        `\nfuzzCases ${fuzz.cases} (target >= ${targets.fuzzCasesMin}: ${verdict(fuzz.cases >= targets.fuzzCasesMin)}), crashes ${fuzz.crashes}, hangs ${fuzz.hangs}, maxBufferedBytes ${fuzz.maxBufferedBytes}` +
        `\nsoak: ${soak.answered}/${soak.calls} answered, ${soak.wrong} wrong, heap growth ${soak.heapGrowthMb} MB, max open sockets ${soak.maxOpenSockets}, ${Math.round(soak.durationMs / 1000)} s` +
        `\nwrote ${resultsFile.pathname}`,
    );
  } finally {
    await server.stop();
  }
}

await main();
