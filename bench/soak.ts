// Soak benchmark (`npm run soak [calls]`): one million CacheAside.getOrLoad calls against a real
// memcached, through the fault proxy (tools/fault-proxy.ts), with faults switched on and
// off every 50,000 calls (blackhole, reset, a short delay, a delay past the client timeout).
// 16 calls in flight over 10,000 keys. Every call must resolve with the loader's value; the heap
// (after GC) and the open TCP sockets must stay bounded. Prints the figures as JSON.
//
// The proxy runs in a child process (this file, forked with --fault-proxy-child), so the
// sockets counted here are the client's own: process.getActiveResourcesInfo() "TCPSocketWrap".

import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CacheAside, type CacheStatus } from "../lib/cache/cacheAside.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { type Fault, startFaultProxy } from "../tools/fault-proxy.ts";
import { startMemcached } from "../tools/memcached.ts";
import { round } from "../tools/stats.ts";

export interface SoakOptions {
  /** getOrLoad calls in total. Default 1,000,000. */
  calls: number;
  /** Calls in flight at once. Default 16. */
  concurrency: number;
  /** Distinct keys, drawn uniformly. Default 10,000. */
  keySpace: number;
  /** Calls per fault phase: the fault switches at every multiple. Default 50,000. */
  phaseCalls: number;
  /** Phases cycle through these (index = phase number modulo length). */
  faults: readonly Fault[];
  /** Heap sample (after GC) every this many calls. Default 100,000. */
  sampleEveryCalls: number;
  /** Client per-operation timeout, ms. Default 100 (the library default). */
  timeoutMs: number;
  /**
   * How long the client skips a dead node, ms. Default 100 (library default 2,000): phases are
   * counted in calls and a faulty phase passes in about a second, so a short retry makes the
   * client probe, reconnect and fail many times per fault: the churn a soak is for.
   */
  deadRetryMs: number;
  /** A call in flight longer than this aborts the run (reported, not thrown), ms. Default 30,000. */
  stuckCallMs: number;
  /** Progress lines (one per phase); default: none. */
  log: ((line: string) => void) | undefined;
}

export const soakDefaults: SoakOptions = {
  calls: 1_000_000,
  concurrency: 16,
  keySpace: 10_000,
  phaseCalls: 50_000,
  faults: [
    { kind: "none" },
    { kind: "blackhole" },
    { kind: "none" },
    { kind: "reset" },
    { kind: "none" },
    { kind: "delay", ms: 20 },
    { kind: "none" },
    { kind: "delay", ms: 150 },
  ],
  sampleEveryCalls: 100_000,
  timeoutMs: 100,
  deadRetryMs: 100,
  stuckCallMs: 30_000,
  log: undefined,
};

export interface HeapSample {
  /** Calls completed when sampled. */
  calls: number;
  /** heapUsed after a full GC, MB. */
  heapMb: number;
  /** TCP sockets open in this process at that moment. */
  openSockets: number;
}

export interface PhaseFigures {
  phase: number;
  fault: string;
  calls: number;
  ms: number;
  callsPerSecond: number;
  statuses: Record<string, number>;
  /** Longest single call in the phase, ms. */
  maxCallMs: number;
}

export interface SoakResult {
  calls: number;
  /** Calls that resolved with the loader's value for their key. */
  answered: number;
  /** answered / calls; must be 1. */
  answeredRatio: number;
  /** Calls that resolved with some other value (must be 0). */
  wrong: number;
  /** Calls that rejected (must be 0: the loader never throws, cache errors are BYPASS). */
  rejected: number;
  /** Calls still in flight when a stuck call aborted the run (must be 0). */
  unfinished: number;
  statuses: Record<string, number>;
  loads: number;
  durationMs: number;
  callsPerSecond: number;
  p50CallMs: number;
  p99CallMs: number;
  maxCallMs: number;
  heapStartMb: number;
  heapEndMb: number;
  /** heapEnd - heapStart, both after GC, MB. */
  heapGrowthMb: number;
  heapSamples: HeapSample[];
  /** Most TCP sockets open at once in this process (sampled every 500 calls and every phase). */
  maxOpenSockets: number;
  /** Connections the proxy accepted from the client (reconnects after faults). */
  proxyConnections: number;
  gcExposed: boolean;
  phases: PhaseFigures[];
}

/** Calls getOrLoad `calls` times through switching faults and reports heap and sockets. */
export async function runSoak(options: Partial<SoakOptions> = {}): Promise<SoakResult> {
  const settings = { ...soakDefaults, ...options };
  const { calls, concurrency, keySpace, phaseCalls, faults, log } = settings;
  const collect = gcFunction();
  const memcached = await startMemcached({ memoryMb: 64 });
  const proxy = await startProxyChild({ host: memcached.host, port: memcached.port });
  const client = new MemcacheClient({
    servers: proxy.endpoint,
    timeoutMs: settings.timeoutMs,
    deadRetryMs: settings.deadRetryMs,
  });
  const cache = new CacheAside(clientStore(client));

  const latencies = new Float32Array(calls);
  const statuses: Record<string, number> = {};
  const heapSamples: HeapSample[] = [];
  const phases: PhaseFigures[] = [];
  let answered = 0;
  let wrong = 0;
  let rejected = 0;
  let loads = 0;
  let done = 0;
  let next = 0;
  let maxOpenSockets = 0;
  let aborted = false;
  const inFlightSince = new Float64Array(concurrency);

  const sampleSockets = () => {
    const open = openTcpSockets();
    if (open > maxOpenSockets) maxOpenSockets = open;
    return open;
  };
  const sampleHeap = () => {
    collect();
    const sample = {
      calls: done,
      heapMb: round(process.memoryUsage().heapUsed / 1024 / 1024, 2),
      openSockets: sampleSockets(),
    };
    heapSamples.push(sample);
    return sample;
  };

  // Values are small JSON objects, deterministic per key, so every answer can be checked.
  const pad = "p".repeat(200);
  const loader = (index: number) => async () => {
    loads++;
    return { id: index, pad };
  };

  let phase = -1;
  let phaseStartedAt = 0;
  let phaseStatuses: Record<string, number> = {};
  let phaseMaxMs = 0;
  let phaseCallsDone = 0;
  let switching: Promise<void> = Promise.resolve();
  const endPhase = () => {
    if (phase < 0) return;
    const ms = performance.now() - phaseStartedAt;
    const figures: PhaseFigures = {
      phase,
      fault: describeFault(faults[phase % faults.length]!),
      calls: phaseCallsDone,
      ms: Math.round(ms),
      callsPerSecond: Math.round((phaseCallsDone / ms) * 1000),
      statuses: phaseStatuses,
      maxCallMs: round(phaseMaxMs, 2),
    };
    phases.push(figures);
    log?.(
      `phase ${figures.phase} ${figures.fault.padEnd(10)} ${figures.calls} calls ${figures.ms} ms ${JSON.stringify(figures.statuses)} max ${figures.maxCallMs} ms, sockets now ${sampleSockets()}`,
    );
  };
  const startPhase = async (number: number) => {
    endPhase();
    phase = number;
    phaseStartedAt = performance.now();
    phaseStatuses = {};
    phaseMaxMs = 0;
    phaseCallsDone = 0;
    await proxy.setFault(faults[number % faults.length]!);
  };

  const started = performance.now();
  const heapStart = sampleHeap();
  await startPhase(0);

  const worker = async (slot: number) => {
    for (let index = next++; index < calls && !aborted; index = next++) {
      if (index > 0 && index % phaseCalls === 0) {
        switching = startPhase(index / phaseCalls);
      }
      await switching; // calls of a new phase start once its fault is in force
      const keyIndex = Math.floor(Math.random() * keySpace);
      const callStarted = performance.now();
      inFlightSince[slot] = callStarted;
      let status: CacheStatus | "REJECTED";
      try {
        const { value, status: served } = await cache.getOrLoad(
          `soak:${keyIndex}`,
          loader(keyIndex),
        );
        status = served;
        if (value.id === keyIndex && value.pad === pad) answered++;
        else wrong++;
      } catch {
        status = "REJECTED";
        rejected++;
      }
      inFlightSince[slot] = 0;
      const ms = performance.now() - callStarted;
      latencies[index] = ms;
      if (ms > phaseMaxMs) phaseMaxMs = ms;
      statuses[status] = (statuses[status] ?? 0) + 1;
      phaseStatuses[status] = (phaseStatuses[status] ?? 0) + 1;
      phaseCallsDone++;
      done++;
      if (done % 500 === 0) sampleSockets();
      if (done % settings.sampleEveryCalls === 0) sampleHeap();
    }
  };

  // A call that never settles would hang the run: the watchdog ends it and reports.
  let stopWatchdog: () => void = () => {};
  const watchdog = new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (inFlightSince.some((since) => since > 0 && now - since > settings.stuckCallMs)) {
        aborted = true;
        clearInterval(timer);
        resolve();
      }
    }, 1_000);
    stopWatchdog = () => {
      clearInterval(timer);
      resolve();
    };
  });
  await Promise.race([
    Promise.all(Array.from({ length: concurrency }, (_, slot) => worker(slot))),
    watchdog,
  ]);
  stopWatchdog();
  await switching;
  endPhase();
  const durationMs = performance.now() - started;
  const proxyConnections = await proxy.connections();
  if (done % settings.sampleEveryCalls !== 0) sampleHeap();
  const heapEnd = heapSamples.at(-1)!;

  client.close();
  await proxy.close();
  await memcached.stop();

  const measured = Array.from(latencies.subarray(0, done)).sort((a, b) => a - b);
  const quantile = (q: number) =>
    measured.length === 0
      ? 0
      : measured[Math.min(measured.length - 1, Math.floor(q * measured.length))]!;
  return {
    calls,
    answered,
    answeredRatio: answered / calls,
    wrong,
    rejected,
    unfinished: calls - done,
    statuses,
    loads,
    durationMs: Math.round(durationMs),
    callsPerSecond: Math.round((done / durationMs) * 1000),
    p50CallMs: round(quantile(0.5), 2),
    p99CallMs: round(quantile(0.99), 2),
    maxCallMs: round(measured.at(-1) ?? 0, 2),
    heapStartMb: heapStart.heapMb,
    heapEndMb: heapEnd.heapMb,
    heapGrowthMb: round(heapEnd.heapMb - heapStart.heapMb, 2),
    heapSamples,
    maxOpenSockets,
    proxyConnections,
    gcExposed: collect !== noGc,
    phases,
  };
}

// ---- measurements ----

const noGc = () => {};

/** globalThis.gc when run with --expose-gc; otherwise exposed at runtime through V8 flags. */
function gcFunction(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === "function") return exposed;
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    if (typeof gc === "function") return gc as () => void;
  } catch {
    // fall through: heap figures are then without a forced GC
  }
  return noGc;
}

/** TCP sockets open in this process (the proxy and memcached run in other processes). */
function openTcpSockets(): number {
  let count = 0;
  for (const resource of process.getActiveResourcesInfo()) {
    if (resource === "TCPSocketWrap" || resource === "TCPWRAP") count++;
  }
  return count;
}

function describeFault(fault: Fault): string {
  return fault.kind === "delay" ? `delay-${fault.ms}ms` : fault.kind;
}

// ---- the fault proxy in a child process ----

interface ProxyChild {
  endpoint: string;
  /** Switches the fault; resolves once the child has applied it. */
  setFault(fault: Fault): Promise<void>;
  connections(): Promise<number>;
  close(): Promise<void>;
}

type ToChild = { type: "fault"; fault: Fault } | { type: "connections" } | { type: "close" };
type FromChild =
  | { type: "listening"; port: number }
  | { type: "fault-set" }
  | { type: "connections"; connections: number };

const CHILD_FLAG = "--fault-proxy-child";

async function startProxyChild(target: { host: string; port: number }): Promise<ProxyChild> {
  const child: ChildProcess = fork(
    import.meta.filename,
    [CHILD_FLAG, target.host, String(target.port)],
    {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    },
  );
  // Replies come in request order: each request waits for the reply before the next is sent.
  const waiting: Array<{ resolve: (message: FromChild) => void; reject: (error: Error) => void }> =
    [];
  child.on("message", (message: FromChild) => waiting.shift()?.resolve(message));
  child.once("exit", (code) => {
    for (const pending of waiting.splice(0)) {
      pending.reject(new Error(`fault proxy child exited (${code})`));
    }
  });
  const request = (message: ToChild | undefined) =>
    new Promise<FromChild>((resolve, reject) => {
      waiting.push({ resolve, reject });
      if (message !== undefined) child.send(message);
    });
  const listening = await request(undefined);
  if (listening.type !== "listening") throw new Error("fault proxy child did not start");
  return {
    endpoint: `127.0.0.1:${listening.port}`,
    setFault: async (fault) => {
      await request({ type: "fault", fault });
    },
    connections: async () => {
      const reply = await request({ type: "connections" });
      return reply.type === "connections" ? reply.connections : -1;
    },
    close: async () => {
      const exited = once(child, "exit");
      child.send({ type: "close" } satisfies ToChild);
      await exited;
    },
  };
}

async function runProxyChild(host: string, port: number): Promise<void> {
  const proxy = await startFaultProxy({ host, port });
  const send = (message: FromChild) => process.send?.(message);
  process.on("message", async (message: ToChild) => {
    if (message.type === "fault") {
      proxy.setFault(message.fault);
      send({ type: "fault-set" });
    } else if (message.type === "connections") {
      send({ type: "connections", connections: proxy.connections });
    } else {
      await proxy.close();
      process.disconnect?.();
      process.exit(0);
    }
  });
  process.on("disconnect", () => process.exit(0)); // the parent went away
  send({ type: "listening", port: proxy.port });
}

// ---- run directly ----

const runDirectly =
  process.argv[1] !== undefined && path.resolve(process.argv[1]) === import.meta.filename;
if (runDirectly && process.argv[2] === CHILD_FLAG) {
  await runProxyChild(process.argv[3]!, Number(process.argv[4]));
} else if (runDirectly) {
  const calls = Number(process.argv[2] ?? soakDefaults.calls);
  if (!Number.isSafeInteger(calls) || calls < 1) {
    console.error("usage: npm run soak -- [calls (default 1000000)]");
    process.exit(2);
  }
  console.log(`soak: ${calls} getOrLoad calls, faults switching every ${soakDefaults.phaseCalls}`);
  const result = await runSoak({ calls, log: (line) => console.log(line) });
  const { phases: _phases, ...figures } = result;
  console.log(JSON.stringify(figures, null, 2));
  const ok = result.answered === result.calls && result.wrong === 0 && result.unfinished === 0;
  console.log(
    `${ok ? "ok" : "FAILED"}: ${result.answered}/${result.calls} answered in ${(result.durationMs / 1000).toFixed(1)} s (${result.callsPerSecond} calls/s), heap growth ${result.heapGrowthMb} MB after GC, max ${result.maxOpenSockets} open sockets`,
  );
  process.exit(ok ? 0 : 1);
}
