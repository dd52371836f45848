// A TCP fault proxy for failure tests and the fault benchmark: it sits on loopback between a
// client and a real memcached and, switchable at any moment while traffic flows, delays,
// black-holes, resets, half-closes, splits into single bytes, corrupts, or silently drops.
// Beside it, a paced traffic driver that runs requests through such a fault and the figures
// taken from it (answered / sent, latency percentiles, time to the first HIT after the fault).
//
// TCP never loses or reorders bytes inside a connection, so neither does the proxy: a
// connection that stopped forwarding (blackhole, silent-drop) stays stopped for good, exactly
// like a path to a peer that went away. Only connections opened later work again.

import net from "node:net";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import { isDeepStrictEqual } from "node:util";
import { closeServer, type LoopbackAddress, listenOnLoopback } from "./ports.ts";
import { percentile } from "./stats.ts";

export type Fault =
  /** Forward everything as it comes. */
  | { kind: "none" }
  /** Hold each server -> client chunk `ms` milliseconds (order kept). */
  | { kind: "delay"; ms: number }
  /** Keep accepting and reading; forward nothing either way; never close. */
  | { kind: "blackhole" }
  /** Reset (RST) every open connection and every new one at once. */
  | { kind: "reset" }
  /** Forward nothing more and send FIN to the client: the request is never answered. */
  | { kind: "half-close" }
  /** Forward server -> client bytes one byte per write, a turn of the event loop between. */
  | { kind: "split" }
  /** Flip each server -> client byte with this probability (0..1), XOR a random non-zero byte. */
  | { kind: "corrupt"; probability: number }
  /**
   * The peer went away without a FIN (a frozen-and-thawed Lambda's socket): connections open
   * now stop forwarding both ways and are never closed; new connections work normally.
   */
  | { kind: "silent-drop" };

export interface FaultProxy extends LoopbackAddress {
  /** The fault in force. */
  readonly fault: Fault;
  /** Switches the fault for open and new connections (see Fault for which each affects). */
  setFault(fault: Fault): void;
  /** Client connections accepted so far. */
  readonly connections: number;
  /** Client connections currently open. */
  readonly openConnections: number;
  /** Destroys every socket and stops listening. */
  close(): Promise<void>;
}

/** One client connection and its upstream socket to the target. */
interface Pair {
  client: net.Socket;
  upstream: net.Socket | null;
  /** Stopped forwarding for good (blackhole, silent-drop, half-close). */
  frozen: boolean;
  /** Server -> client chunks waiting for their turn (delay, split). */
  queue: Array<{ data: Buffer; releaseAt: number; split: boolean }>;
  pumping: boolean;
  lastReleaseAt: number;
}

/** Starts a proxy on a free loopback port that forwards to `target` (fault: none). */
export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let fault: Fault = { kind: "none" };
  let connections = 0;
  const pairs = new Set<Pair>();

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    client.on("error", () => {}); // clients reset and time out on purpose
    const pair: Pair = {
      client,
      upstream: null,
      frozen: false,
      queue: [],
      pumping: false,
      lastReleaseAt: 0,
    };
    pairs.add(pair);
    client.on("close", () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    switch (fault.kind) {
      case "reset":
        client.resetAndDestroy();
        return;
      case "blackhole":
        pair.frozen = true;
        client.resume(); // read and discard
        return;
      case "half-close":
        pair.frozen = true;
        // Read the request, then close without a reply.
        client.once("data", () => client.end());
        client.resume();
        return;
    }
    connectUpstream(pair);
  });

  function connectUpstream(pair: Pair): void {
    const { client } = pair;
    const upstream = net.connect({ host: target.host, port: target.port });
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    upstream.on("error", () => {
      if (!pair.frozen) client.destroy();
    });
    upstream.on("close", () => {
      if (!pair.frozen) client.destroy();
    });
    upstream.on("end", () => {
      if (!pair.frozen) client.end();
    });
    client.on("end", () => {
      if (!pair.frozen) upstream.end();
    });
    client.on("data", (chunk: Buffer) => {
      if (!pair.frozen) upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!pair.frozen) toClient(pair, chunk);
    });
  }

  function toClient(pair: Pair, chunk: Buffer): void {
    let data = chunk;
    if (fault.kind === "corrupt") data = corrupt(chunk, fault.probability);
    const now = performance.now();
    const delayMs = fault.kind === "delay" ? fault.ms : 0;
    const split = fault.kind === "split";
    if (delayMs === 0 && !split && pair.queue.length === 0 && !pair.pumping) {
      pair.client.write(data);
      return;
    }
    // Later chunks never overtake earlier ones, even when the delay shrinks meanwhile.
    const releaseAt = Math.max(now + delayMs, pair.lastReleaseAt);
    pair.lastReleaseAt = releaseAt;
    pair.queue.push({ data, releaseAt, split });
    if (!pair.pumping) void pump(pair);
  }

  async function pump(pair: Pair): Promise<void> {
    pair.pumping = true;
    try {
      for (let item = pair.queue.shift(); item !== undefined; item = pair.queue.shift()) {
        const waitMs = item.releaseAt - performance.now();
        if (waitMs > 0) await sleep(waitMs);
        if (pair.frozen || pair.client.destroyed) return;
        if (!item.split) {
          pair.client.write(item.data);
          continue;
        }
        for (let i = 0; i < item.data.length; i++) {
          if (pair.frozen || pair.client.destroyed) return;
          pair.client.write(item.data.subarray(i, i + 1));
          await nextTurn();
        }
      }
    } finally {
      pair.pumping = false;
    }
  }

  function setFault(next: Fault): void {
    fault = next;
    for (const pair of pairs) {
      switch (next.kind) {
        case "reset":
          pair.client.resetAndDestroy();
          pair.upstream?.destroy();
          break;
        case "blackhole":
        case "silent-drop":
          freeze(pair);
          pair.client.resume(); // keep reading, so the client's writes never block
          break;
        case "half-close":
          freeze(pair);
          pair.client.end();
          break;
      }
    }
  }

  /** Stops forwarding on `pair` for good; what was queued for the client is dropped too. */
  function freeze(pair: Pair): void {
    pair.frozen = true;
    pair.queue.length = 0;
    pair.upstream?.destroy();
  }

  return {
    ...(await listenOnLoopback(server)),
    get fault() {
      return fault;
    },
    setFault,
    get connections() {
      return connections;
    },
    get openConnections() {
      return pairs.size;
    },
    close: () =>
      closeServer(
        server,
        [...pairs].flatMap(({ client, upstream }) => (upstream ? [client, upstream] : [client])),
      ),
  };
}

function corrupt(chunk: Buffer, probability: number): Buffer {
  let out: Buffer | undefined;
  for (let i = 0; i < chunk.length; i++) {
    if (Math.random() >= probability) continue;
    out ??= Buffer.from(chunk); // never write into a buffer the socket may still hold
    out[i] = out[i]! ^ (1 + Math.floor(Math.random() * 255));
  }
  return out ?? chunk;
}

// ---- traffic through a fault ----

/** One request of a traffic run; times in ms from the run's start. */
export interface Sample<T> {
  index: number;
  startMs: number;
  endMs: number;
  result: PromiseSettledResult<T>;
}

export interface TrafficOptions<T> {
  /** Requests to send. */
  requests: number;
  /** Request i starts no earlier than i * durationMs / requests after `startedAt`. */
  durationMs: number;
  /** Requests in flight at most. */
  concurrency: number;
  /** performance.now() at the run's start; several runs may share one to overlap in time. */
  startedAt: number;
  call(index: number): Promise<T>;
}

/** Sends `requests` paced calls, at most `concurrency` at a time, and records each outcome. */
export async function runTraffic<T>(options: TrafficOptions<T>): Promise<Sample<T>[]> {
  const { requests, durationMs, concurrency, startedAt, call } = options;
  const samples: Sample<T>[] = [];
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < requests; index = next++) {
      const dueMs = (index * durationMs) / requests - (performance.now() - startedAt);
      if (dueMs > 0) await sleep(dueMs);
      const startMs = performance.now() - startedAt;
      const [result] = await Promise.allSettled([call(index)]);
      samples.push({ index, startMs, endMs: performance.now() - startedAt, result: result! });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return samples.sort((a, b) => a.index - b.index);
}

/** When a fault was on, in ms from the run's start (as measured, not as planned). */
export interface FaultWindow {
  onMs: number;
  offMs: number;
}

/**
 * Switches `fault` on at `onAtMs` and off (kind none) at `offAtMs` after `startedAt`; resolves
 * with the times it actually happened.
 */
export async function faultWindow(
  proxy: FaultProxy,
  fault: Fault,
  plan: { startedAt: number; onAtMs: number; offAtMs: number },
): Promise<FaultWindow> {
  const since = () => performance.now() - plan.startedAt;
  await sleep(Math.max(0, plan.onAtMs - since()));
  proxy.setFault(fault);
  const onMs = since();
  await sleep(Math.max(0, plan.offAtMs - since()));
  proxy.setFault({ kind: "none" });
  return { onMs, offMs: since() };
}

/** What getOrLoad resolves with. */
export interface Served<V> {
  value: V;
  status: string;
}

/** Figures of one cache-aside traffic run. */
export interface ServedSummary {
  sent: number;
  /** Resolved with the expected value. */
  answered: number;
  /** Resolved with a value other than the expected one (examples in `wrongExamples`). */
  wrong: number;
  rejected: number;
  statuses: Record<string, number>;
  /** Latency percentiles over all requests, in ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p99 latency of the requests started while the fault was on, in ms. */
  p99DuringFaultMs: number;
  /** From the fault going off to the end of the first HIT started after it; null: none seen. */
  recoveryMs: number | null;
  wrongExamples: Array<{ index: number; status: string; value: unknown; expected: unknown }>;
  rejectedExamples: string[];
}

/** Summarizes a cache-aside run: every request must resolve with `expected(index)`. */
export function summarizeServed<V>(
  samples: readonly Sample<Served<V>>[],
  window: FaultWindow,
  expected: (index: number) => V,
): ServedSummary {
  const statuses: Record<string, number> = {};
  const wrongExamples: ServedSummary["wrongExamples"] = [];
  const rejectedExamples: string[] = [];
  let answered = 0;
  let wrong = 0;
  let rejected = 0;
  let recoveryMs: number | null = null;
  for (const sample of samples) {
    const { result, index } = sample;
    if (result.status === "rejected") {
      rejected++;
      if (rejectedExamples.length < 5) rejectedExamples.push(String(result.reason));
      continue;
    }
    const { status, value } = result.value;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (isDeepStrictEqual(value, expected(index))) answered++;
    else {
      wrong++;
      if (wrongExamples.length < 5) {
        wrongExamples.push({ index, status, value, expected: expected(index) });
      }
    }
    if (status === "HIT" && sample.startMs >= window.offMs) {
      const recovered = sample.endMs - window.offMs;
      if (recoveryMs === null || recovered < recoveryMs) recoveryMs = recovered;
    }
  }
  const latencies = samples.map((s) => s.endMs - s.startMs);
  const duringFault = samples
    .filter((s) => s.startMs >= window.onMs && s.startMs < window.offMs)
    .map((s) => s.endMs - s.startMs);
  return {
    sent: samples.length,
    answered,
    wrong,
    rejected,
    statuses,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: percentile(latencies, 1),
    p99DuringFaultMs: percentile(duringFault, 0.99),
    recoveryMs,
    wrongExamples,
    rejectedExamples,
  };
}
