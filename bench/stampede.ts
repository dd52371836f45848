// Stampede benchmark (`npm run bench:stampede`): how often a 100 ms origin is read when 200
// concurrent callers miss one cold key, with and without leases, against one local memcached.
// Each round uses fresh keys and runs three subjects, interleaved (order rotated per round):
//
//   protected  CacheAside(clientStore(client, { leaseMode: "auto" }))  (meta protocol on 1.6.18)
//   lock       CacheAside(clientStore(client, { leaseMode: "lock" }))  (the forced lock path: a placeholder by hand)
//   naive      CacheAside(clientStore(client, { leaseMode: "off" }))
//
// Callers are spread round-robin over several clients (own sockets), as separate Lambdas would.
// Reported: origin reads per subject (protected / lock: max over rounds; naive: median), and the
// latency of the callers that did not read the origin ("waiters"), pooled over rounds: waiterP99Ms.
// Writes bench/results/stampede.json and prints a table. Exit code 1 only when a caller got a
// wrong value; a missed target is reported as MISSED and still exits 0.

import { mkdir, writeFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { CacheAside, type CacheStatus } from "../lib/cache/cacheAside.ts";
import type { LeaseMode } from "../lib/cache/leases.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { median, percentile, rotated, round, verdict } from "../tools/stats.ts";

const settings = {
  /** Interleaved rounds; each subject runs once per round on a fresh key. */
  rounds: 5,
  /** Concurrent cold callers of one key. */
  callers: 200,
  /** Latency of the simulated origin, in ms. */
  originDelayMs: 100,
  /** Separate clients (sockets) the callers are spread over, round-robin. */
  clients: 8,
  /** Client timeouts, in ms: generous, so a busy machine does not turn a wait into a BYPASS. */
  timeoutMs: 2000,
  connectTimeoutMs: 2000,
};

const targets = {
  /** Max over rounds. */
  originReadsProtected: 2,
  /** Median over rounds: "near 200", i.e. at least 90 % of the callers. */
  originReadsNaiveAtLeast: Math.floor(settings.callers * 0.9),
  /** Pooled p99 of the waiters' latency: origin delay + 50 ms. */
  waiterP99Ms: settings.originDelayMs + 50,
};

const resultsFile = new URL("./results/stampede.json", import.meta.url);

type SubjectId = "protected" | "lock" | "naive";

interface Subject {
  id: SubjectId;
  /** One cache per client. */
  caches: CacheAside[];
}

interface RoundResult {
  originReads: number;
  /** Latencies (ms) of the callers that did not read the origin. */
  waiterMs: number[];
  statuses: Partial<Record<CacheStatus, number>>;
}

/** A caller that got something other than the origin's value. */
class WrongValueError extends Error {
  override name = "WrongValueError";
}

/** For the table: "-" where there were no samples (naive callers all read the origin). */
const shown = (n: number) => (Number.isNaN(n) ? "-" : round(n, 1));

// ---- one stampede ----

/** `callers` concurrent cold getOrLoad calls of `key`, each with its own view of the origin. */
async function stampede(subject: Subject, key: string): Promise<RoundResult> {
  const expected = { key, payload: "x".repeat(200) };
  let originReads = 0;
  const calls = Array.from({ length: settings.callers }, async (_, i) => {
    let readOrigin = false;
    const cache = subject.caches[i % subject.caches.length]!;
    const start = performance.now();
    const { value, status } = await cache.getOrLoad(key, async () => {
      readOrigin = true;
      originReads++;
      await delay(settings.originDelayMs);
      return expected;
    });
    const ms = performance.now() - start;
    if (JSON.stringify(value) !== JSON.stringify(expected)) {
      throw new WrongValueError(`${subject.id}: caller ${i} got ${JSON.stringify(value)}`);
    }
    return { ms, readOrigin, status };
  });
  const results = await Promise.all(calls);
  const statuses: Partial<Record<CacheStatus, number>> = {};
  for (const { status } of results) statuses[status] = (statuses[status] ?? 0) + 1;
  return {
    originReads,
    waiterMs: results.filter((r) => !r.readOrigin).map((r) => r.ms),
    statuses,
  };
}

// ---- main ----

async function main(): Promise<void> {
  const server: MemcachedProcess = await startMemcached();
  const clients = Array.from(
    { length: settings.clients },
    () =>
      new MemcacheClient({
        servers: server.endpoint,
        timeoutMs: settings.timeoutMs,
        connectTimeoutMs: settings.connectTimeoutMs,
      }),
  );
  try {
    const version = Object.values(await clients[0]!.version())[0] ?? "unknown";
    const autoMode = (await clients[0]!.hasMeta()) ? "meta" : "lock";
    const over = (leaseMode: LeaseMode) =>
      clients.map((c) => new CacheAside(clientStore(c, { leaseMode })));
    const subjects: Subject[] = [
      { id: "protected", caches: over("auto") },
      { id: "lock", caches: over("lock") },
      { id: "naive", caches: over("off") },
    ];

    // Untimed warm-up: connections, JIT, the meta probe.
    for (const subject of subjects) await stampede(subject, `stampede:warmup:${subject.id}`);

    const byRound: Array<Record<SubjectId, RoundResult>> = [];
    for (let round = 0; round < settings.rounds; round++) {
      const results = {} as Record<SubjectId, RoundResult>;
      for (const subject of rotated(subjects, round)) {
        results[subject.id] = await stampede(subject, `stampede:${round}:${subject.id}`);
      }
      byRound.push(results);
    }

    const reads = (id: SubjectId) => byRound.map((r) => r[id].originReads);
    const waiters = (id: SubjectId) => byRound.flatMap((r) => r[id].waiterMs);
    const originReadsProtected = Math.max(...reads("protected"));
    const originReadsLock = Math.max(...reads("lock"));
    const originReadsNaive = median(reads("naive"));
    const waiterP99Ms = round(percentile(waiters("protected"), 0.99), 1);
    const waiterP99MsLock = round(percentile(waiters("lock"), 0.99), 1);

    const met = {
      originReadsProtected: originReadsProtected <= targets.originReadsProtected,
      originReadsLock: originReadsLock <= targets.originReadsProtected,
      originReadsNaive: originReadsNaive >= targets.originReadsNaiveAtLeast,
      waiterP99Ms: waiterP99Ms <= targets.waiterP99Ms,
      waiterP99MsLock: waiterP99MsLock <= targets.waiterP99Ms,
    };

    const result = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion: version,
      autoLeaseMode: autoMode,
      originReadsProtected,
      originReadsNaive,
      originReadsLock,
      waiterP99Ms,
      waiterP50Ms: round(percentile(waiters("protected"), 0.5), 1),
      waiterP99MsLock,
      waiterP50MsLock: round(percentile(waiters("lock"), 0.5), 1),
      settings,
      targets,
      met,
      rounds: byRound.map((r) =>
        Object.fromEntries(
          subjects.map(({ id }) => [
            id,
            {
              originReads: r[id].originReads,
              waiterP50Ms: round(percentile(r[id].waiterMs, 0.5), 1),
              waiterP99Ms: round(percentile(r[id].waiterMs, 0.99), 1),
              statuses: r[id].statuses,
            },
          ]),
        ),
      ),
    };
    await mkdir(new URL("./results/", import.meta.url), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(result, null, 2)}\n`);

    console.log(
      `stampede: ${settings.callers} concurrent cold reads, ${settings.originDelayMs} ms origin, ` +
        `${settings.clients} clients, ${settings.rounds} rounds, memcached ${version} (auto = ${autoMode})`,
    );
    console.table(
      subjects.map(({ id }) => ({
        subject: id,
        "origin reads per round": reads(id).join(" "),
        "waiter p50 ms": shown(percentile(waiters(id), 0.5)),
        "waiter p99 ms": shown(percentile(waiters(id), 0.99)),
      })),
    );
    console.log(
      `originReadsProtected ${originReadsProtected} (max; target <= ${targets.originReadsProtected}) ${verdict(met.originReadsProtected)}`,
    );
    console.log(
      `originReadsLock      ${originReadsLock} (max; target <= ${targets.originReadsProtected}) ${verdict(met.originReadsLock)}`,
    );
    console.log(
      `originReadsNaive     ${originReadsNaive} (median; target >= ${targets.originReadsNaiveAtLeast}) ${verdict(met.originReadsNaive)}`,
    );
    console.log(
      `waiterP99Ms          ${waiterP99Ms} (target <= ${targets.waiterP99Ms}) ${verdict(met.waiterP99Ms)}`,
    );
    console.log(
      `waiterP99MsLock      ${waiterP99MsLock} (target <= ${targets.waiterP99Ms}) ${verdict(met.waiterP99MsLock)}`,
    );
    console.log(`wrote ${resultsFile.pathname}`);
  } finally {
    for (const c of clients) c.close();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof WrongValueError ? error.message : error);
  process.exitCode = 1;
});
