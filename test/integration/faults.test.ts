// Cache-aside, the cutover fallback and CAS counters under network faults: a fault proxy
// (tools/fault-proxy.ts) between the client and a real memcached delays, black-holes,
// resets, half-closes, splits, corrupts or silently drops while paced traffic flows. Cache-aside
// must answer every request with the right value (BYPASS when the cache is unavailable) within a
// bounded time and hit the cache again soon after the fault clears; counters may fail during a
// fault but never lose or double an update. Then the frozen-and-thawed Lambda: a socket that sat
// idle while its peer went away without a FIN.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { CacheAside } from "../../lib/cache/cacheAside.ts";
import { type CounterClient, casUpdate } from "../../lib/cache/counters.ts";
import { FallbackStore } from "../../lib/cache/fallback.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { type ClientOptions, MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheIllegalInputError,
  MemcacheNodeDeadError,
  MemcacheTimeoutError,
} from "../../lib/memcache/errors.ts";
import {
  type Fault,
  type FaultProxy,
  type FaultWindow,
  faultWindow,
  runTraffic,
  type Sample,
  type Served,
  type ServedSummary,
  startFaultProxy,
  summarizeServed,
} from "../../tools/fault-proxy.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { rejection, timed } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

const timeoutMs = 100;
const connectTimeoutMs = 200;
const deadRetryMs = 500;
/** Slack for a loaded machine (other test files run in parallel). */
const marginMs = 200;

const traffic = {
  /** Requests per workload and fault. */
  requests: 300,
  durationMs: 2_500,
  concurrency: 4,
  /** After the warm-up (every key loaded once) ... */
  faultOnAtMs: 600,
  /** ... until mid-run, leaving more than deadRetryMs + 500 ms to see the recovery. */
  faultOffAtMs: 1_200,
  /** Distinct keys per workload. */
  keys: 16,
};

/** "new", the server behind the fault proxies: the file's `memcached` fixture. */
let newServer: MemcachedProcess;
/** Direct to "new" (no proxy): to verify what the server holds. */
let direct: MemcacheClient;
/** Direct to "old" (the `oldMemcached` fixture): the fallback's old cluster, never faulted. */
let oldDirect: MemcacheClient;
const clients: MemcacheClient[] = [];
const proxies: FaultProxy[] = [];

// Every client writes and reads checksummed values (ClientOptions.checksums): memcached's text
// protocol has no checksum, and a byte corrupted inside a value would otherwise still parse.
function newClient(servers: string, options: Partial<ClientOptions> = {}): MemcacheClient {
  const client = new MemcacheClient({
    servers,
    timeoutMs,
    connectTimeoutMs,
    deadRetryMs,
    checksums: true,
    ...options,
  });
  clients.push(client);
  return client;
}

async function newProxy(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(newServer);
  proxies.push(proxy);
  return proxy;
}

it.beforeAll(({ memcached, oldMemcached }) => {
  newServer = memcached;
  direct = newClient(memcached.endpoint, { timeoutMs: 2_000 });
  oldDirect = newClient(oldMemcached.endpoint);
});

afterAll(async () => {
  for (const client of clients.splice(0)) client.close();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/** The origin's value for a key: what every cache-aside answer must equal. */
function product(key: string): { id: string; name: string; price: number; tags: string[] } {
  return { id: key, name: `product ${key}`, price: key.length * 100 + 99, tags: ["a", "b"] };
}

/**
 * A counter view that notes writes (add / cas) which failed after they may have reached the
 * server: their outcome is unknown, so each may or may not be in the count.
 */
function recordingCounters(client: MemcacheClient): {
  counters: CounterClient;
  unknownWrites: () => number;
} {
  let unknown = 0;
  const noteFailure = (error: unknown): never => {
    // Refused before sending: certainly not applied.
    if (!(error instanceof MemcacheNodeDeadError || error instanceof MemcacheIllegalInputError))
      unknown++;
    throw error;
  };
  return {
    counters: {
      gets: (key) => client.gets(key),
      cas: (key, value, cas, options) => client.cas(key, value, cas, options).catch(noteFailure),
      add: (key, value, options) => client.add(key, value, options).catch(noteFailure),
      incr: (key, delta) => client.incr(key, delta),
      decr: (key, delta) => client.decr(key, delta),
    },
    unknownWrites: () => unknown,
  };
}

interface CounterRun {
  resolved: number;
  rejected: number;
  unknownWrites: number;
  /** The counter's value on the server after the run (0 when absent). */
  final: number;
}

interface FaultRun {
  window: FaultWindow;
  aside: ServedSummary;
  fallback: ServedSummary;
  counter: CounterRun;
}

/** All three workloads at once through one proxy, the fault on from 600 to 1,200 ms. */
async function runThroughFault(name: string, fault: Fault): Promise<FaultRun> {
  const proxy = await newProxy();
  const cache = new CacheAside(clientStore(newClient(proxy.endpoint)));
  const fallback = new CacheAside(new FallbackStore(newClient(proxy.endpoint), oldDirect));
  const recorded = recordingCounters(newClient(proxy.endpoint));

  const asideKey = (i: number) => `faults:${name}:aside:${i % traffic.keys}`;
  const fallbackKey = (i: number) => `faults:${name}:fallback:${i % traffic.keys}`;
  const counterKey = `faults:${name}:counter`;
  // Old holds every other key, so during the fault the fallback serves some from old.
  for (let i = 0; i < traffic.keys; i += 2) {
    await oldDirect.set(fallbackKey(i), product(fallbackKey(i)), { ttlSeconds: 300 });
  }

  const serve = (cacheAside: CacheAside, key: string): Promise<Served<unknown>> =>
    cacheAside.getOrLoad(key, async () => product(key));
  const startedAt = performance.now();
  const paced = { ...traffic, startedAt };
  const [window, asideSamples, fallbackSamples, counterSamples] = await Promise.all([
    faultWindow(proxy, fault, {
      startedAt,
      onAtMs: traffic.faultOnAtMs,
      offAtMs: traffic.faultOffAtMs,
    }),
    runTraffic({ ...paced, call: (i) => serve(cache, asideKey(i)) }),
    runTraffic({ ...paced, call: (i) => serve(fallback, fallbackKey(i)) }),
    runTraffic({
      ...paced,
      call: () => casUpdate<number>(recorded.counters, counterKey, (n) => (n ?? 0) + 1),
    }),
  ]);
  const final = await direct.get(counterKey);
  return {
    window,
    aside: summarizeServed(asideSamples, window, (i) => product(asideKey(i))),
    fallback: summarizeServed(fallbackSamples, window, (i) => product(fallbackKey(i))),
    counter: {
      resolved: count(counterSamples, "fulfilled"),
      rejected: count(counterSamples, "rejected"),
      unknownWrites: recorded.unknownWrites(),
      final: typeof final === "number" ? final : 0,
    },
  };
}

function count(samples: readonly Sample<unknown>[], status: "fulfilled" | "rejected"): number {
  return samples.filter((sample) => sample.result.status === status).length;
}

/** Evidence, per fault, that it was in force during the window (else the run proves nothing). */
const faults: Array<{ name: string; fault: Fault; bit: (run: FaultRun) => void }> = [
  {
    name: "delay 50 ms",
    fault: { kind: "delay", ms: 50 },
    bit: (run) => expect(run.aside.p99DuringFaultMs).toBeGreaterThanOrEqual(50),
  },
  {
    name: "blackhole",
    fault: { kind: "blackhole" },
    bit: (run) => expect(run.aside.statuses.BYPASS ?? 0).toBeGreaterThan(0),
  },
  {
    name: "reset",
    fault: { kind: "reset" },
    bit: (run) => expect(run.aside.statuses.BYPASS ?? 0).toBeGreaterThan(0),
  },
  {
    name: "half-close",
    fault: { kind: "half-close" },
    bit: (run) => expect(run.aside.statuses.BYPASS ?? 0).toBeGreaterThan(0),
  },
  {
    name: "split",
    fault: { kind: "split" },
    // Single bytes do not fail anything; every request must still be served from the cache.
    bit: (run) => expect(run.aside.statuses.HIT ?? 0).toBeGreaterThan(traffic.requests / 2),
  },
  {
    name: "corrupt 1%",
    fault: { kind: "corrupt", probability: 0.01 },
    bit: (run) =>
      expect(
        (run.aside.statuses.BYPASS ?? 0) + run.aside.wrong + run.fallback.wrong,
      ).toBeGreaterThan(0),
  },
  {
    name: "silent-drop",
    fault: { kind: "silent-drop" },
    bit: (run) => expect(run.aside.statuses.BYPASS ?? 0).toBeGreaterThan(0),
  },
];

describe.each(faults)("under fault: $name", ({ name, fault, bit }) => {
  let run: FaultRun;

  beforeAll(async () => {
    run = await runThroughFault(name.replace(/\W+/g, "-"), fault);
  });

  it("was in force while it was on", () => {
    bit(run);
  });

  it("answers every cache-aside request with the origin's value (HIT, MISS or BYPASS)", () => {
    const { aside } = run;
    expect(aside.rejectedExamples).toEqual([]);
    expect(aside.wrongExamples).toEqual([]);
    expect(aside.answered).toBe(aside.sent);
    for (const status of Object.keys(aside.statuses)) {
      expect(["HIT", "MISS", "BYPASS"]).toContain(status);
    }
  });

  it("answers every fallback request with the origin's value (old serves while new fails)", () => {
    const { fallback } = run;
    expect(fallback.rejectedExamples).toEqual([]);
    expect(fallback.wrongExamples).toEqual([]);
    expect(fallback.answered).toBe(fallback.sent);
    for (const status of Object.keys(fallback.statuses)) {
      expect(["HIT", "HIT-FALLBACK", "MISS", "BYPASS"]).toContain(status);
    }
  });

  it(`keeps p99 latency under timeoutMs + connectTimeoutMs + ${marginMs} ms`, () => {
    const bound = timeoutMs + connectTimeoutMs + marginMs;
    expect(run.aside.p99Ms).toBeLessThan(bound);
    expect(run.fallback.p99Ms).toBeLessThan(bound);
  });

  it("hits the cache again within deadRetryMs + 500 ms of the fault clearing", () => {
    expect(run.aside.recoveryMs).not.toBeNull();
    expect(run.aside.recoveryMs!).toBeLessThanOrEqual(deadRetryMs + 500);
    expect(run.fallback.recoveryMs).not.toBeNull();
    expect(run.fallback.recoveryMs!).toBeLessThanOrEqual(deadRetryMs + 500);
  });

  it("loses no counter update and counts none twice: resolved <= final <= resolved + unknown", () => {
    const { counter } = run;
    expect(counter.resolved).toBeGreaterThan(0);
    // Every casUpdate that resolved is in the count ...
    expect(counter.final).toBeGreaterThanOrEqual(counter.resolved);
    // ... and beyond those only writes whose reply was lost to the fault (outcome unknown).
    expect(counter.final).toBeLessThanOrEqual(counter.resolved + counter.unknownWrites);
  });
});

// The fault runs above leave a corrupting fault on for 600 ms, much of which the node spends
// marked dead. Here every request reaches the wire (the node is never marked dead), so a
// corrupted reply that still parses is all but certain to show.
describe("replies corrupted in flight (1% of bytes, 300 requests, node never marked dead)", () => {
  const corruptRun = { requests: 300, durationMs: 1_500, concurrency: 4 };

  /** A client through `proxy` (the test's `faultProxy`), which corrupts from now on. */
  function corruptedClient(proxy: FaultProxy): MemcacheClient {
    const client = newClient(proxy.endpoint, { failuresBeforeDead: 1_000_000 });
    proxy.setFault({ kind: "corrupt", probability: 0.01 });
    return client;
  }

  it("never answers a cache-aside request with a value other than the origin's", async ({
    faultProxy,
  }) => {
    const cache = new CacheAside(clientStore(corruptedClient(faultProxy)));
    const key = (i: number) => `corrupted:aside:${i % traffic.keys}`;
    for (let i = 0; i < traffic.keys; i++) await direct.set(key(i), product(key(i)));

    const samples = await runTraffic({
      ...corruptRun,
      startedAt: performance.now(),
      call: (i) => cache.getOrLoad(key(i), async () => product(key(i))),
    });

    const summary = summarizeServed(samples, { onMs: 0, offMs: Infinity }, (i) => product(key(i)));
    expect(summary.statuses.BYPASS ?? 0).toBeGreaterThan(0); // the fault bit
    expect(summary.wrongExamples).toEqual([]);
    expect(summary.answered).toBe(summary.sent);
  });

  it("loses no casUpdate: resolved <= final <= resolved + unknown", async ({ faultProxy }) => {
    const recorded = recordingCounters(corruptedClient(faultProxy));
    const key = "corrupted:counter";

    const samples = await runTraffic({
      ...corruptRun,
      startedAt: performance.now(),
      call: () => casUpdate<number>(recorded.counters, key, (n) => (n ?? 0) + 1),
    });

    const resolved = count(samples, "fulfilled");
    const final = await direct.get<number>(key);
    expect(count(samples, "rejected")).toBeGreaterThan(0); // the fault bit
    expect(final).toBeGreaterThanOrEqual(resolved);
    expect(final).toBeLessThanOrEqual(resolved + recorded.unknownWrites());
  });
});

describe("a socket that sat idle while its peer went away without a FIN (thawed Lambda)", () => {
  const staleSocketMs = 200;
  let client: MemcacheClient;

  /** A client through `proxy` (the test's `faultProxy`), its socket open and then idle longer than staleSocketMs. */
  async function frozenAndThawed(proxy: FaultProxy, key: string): Promise<void> {
    client = newClient(proxy.endpoint, { staleSocketMs });
    expect(await client.get(key)).toBe("v1"); // the socket is open
    proxy.setFault({ kind: "silent-drop" });
    await delay(staleSocketMs + 50); // the idle time is the condition under test
  }

  it("detects the dead socket within timeoutMs, reconnects and retries a get once", async ({
    faultProxy: proxy,
  }) => {
    await direct.set("thawed:get", "v1");
    await frozenAndThawed(proxy, "thawed:get");
    const connectionsBefore = proxy.connections;

    const { ms, result } = await timed(() => client.get("thawed:get"));

    expect(result).toEqual({ status: "fulfilled", value: "v1" });
    expect(ms).toBeLessThan(timeoutMs + 100);
    expect(client.nodes[0]!.staleRetries).toBe(1);
    expect(proxy.connections).toBe(connectionsBefore + 1);
  });

  it("does not retry an incr: it rejects with MemcacheTimeoutError and the server counted it at most once", async ({
    faultProxy: proxy,
  }) => {
    // incr works on plain decimal values; a checksummed value carries a CRC trailer.
    const plain = newClient(newServer.endpoint, { timeoutMs: 2_000, checksums: false });
    await plain.set("thawed:incr", 10);
    await direct.set("thawed:incr-probe", "v1");
    await frozenAndThawed(proxy, "thawed:incr-probe");
    const connectionsBefore = proxy.connections;

    const { ms, result } = await timed(() => client.incr("thawed:incr", 1));

    expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
    expect(ms).toBeLessThan(timeoutMs + 100);
    expect(client.nodes[0]!.staleRetries).toBe(0);
    expect(proxy.connections).toBe(connectionsBefore); // nothing was sent again
    const onServer = await plain.get<number>("thawed:incr");
    expect(onServer).toBeGreaterThanOrEqual(10);
    expect(onServer).toBeLessThanOrEqual(11);
    // The next call reconnects and counts once.
    expect(await client.incr("thawed:incr", 1)).toBe(onServer! + 1);
  });

  it("does not retry a set: it rejects with MemcacheTimeoutError and the server kept its value", async ({
    faultProxy: proxy,
  }) => {
    await direct.set("thawed:set", "v1");
    await frozenAndThawed(proxy, "thawed:set");
    const connectionsBefore = proxy.connections;

    const { result } = await timed(() => client.set("thawed:set", "v2"));

    expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
    expect(client.nodes[0]!.staleRetries).toBe(0);
    expect(proxy.connections).toBe(connectionsBefore);
    expect(await direct.get("thawed:set")).toBe("v1");
  });
});
