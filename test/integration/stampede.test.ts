// Stampede protection against real memcached processes. Many concurrent callers miss one key;
// each caller uses one of CLIENTS separate MemcacheClient instances (own socket), as separate
// Lambda environments would. Every shared behaviour runs twice: with the meta protocol leases
// (`mg ... N`) and with the forced `add`-lock path; serve-stale and early refresh are meta only.
// Origins are counting loaders with a fixed latency (the latency is what they simulate, not a
// wait for a condition). Also: the cutover fallback layer (leases live in new) and the Middy
// middleware with a deadline from the Lambda context.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { setTimeout as delay } from "node:timers/promises";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import { afterAll, describe, expect, vi } from "vitest";
import {
  CacheAside,
  type CacheAsideOptions,
  type CacheEvent,
  type CacheStatus,
  type LoadOptions,
} from "../../lib/cache/cacheAside.ts";
import { FallbackStore } from "../../lib/cache/fallback.ts";
import type { HttpEvent, HttpResult } from "../../lib/cache/httpCache.ts";
import {
  type LeaseOptions,
  type LeaseRead,
  lockKeyFor,
  PLACEHOLDER_FLAGS,
} from "../../lib/cache/leases.ts";
import { type CacheStore, clientStore } from "../../lib/cache/store.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import type { MetaReply } from "../../lib/memcache/protocol.ts";
import { httpCacheMiddleware } from "../../lib/middleware/httpCache.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { counters } from "../helpers/client.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";

/** Latency of the simulated origin, in ms. */
const ORIGIN_DELAY_MS = 100;
/** Concurrent cold readers of one key. */
const CALLERS = 200;
/** Separate clients (sockets) the callers are spread over, round-robin. */
const CLIENTS = 8;
/**
 * A reader that waited on the origin takes about ORIGIN_DELAY_MS; one served from the cache
 * answers in a few ms. Latency checks compare against the origin delay rather than a tighter
 * bound: on a busy 2-CPU machine one scheduling stall delays all ~100 in-flight readers by
 * 60-70 ms at once (observed), which says nothing about the cache. That a reader never waited
 * is checked directly instead: no lease read of it answered "wait" (see lambdas()).
 */
const SERVED_MS = ORIGIN_DELAY_MS;

type Mode = "meta" | "lock";

// Three memcached processes from the fixtures: `memcached` for the single-cluster tests,
// `newMemcached` and `oldMemcached` for the cutover; the probes are the fixtures' clients.
/** CLIENTS clients on `memcached`; `probe` inspects it without taking part. */
let clients: MemcacheClient[];
let probe: MemcacheClient;
let newClients: MemcacheClient[];
let oldClients: MemcacheClient[];
let newProbe: MemcacheClient;
let oldProbe: MemcacheClient;
const opened: MemcacheClient[] = [];
let keyCount = 0;

function client(endpoint: string): MemcacheClient {
  // Generous timeouts: 200 requests in flight on a busy machine must not turn into BYPASS.
  const created = new MemcacheClient({
    servers: endpoint,
    timeoutMs: patientTimeoutMs,
    connectTimeoutMs: patientTimeoutMs,
  });
  opened.push(created);
  return created;
}

const clientsOf = (memcached: MemcachedProcess) =>
  Array.from({ length: CLIENTS }, () => client(memcached.endpoint));

it.beforeAll(({ memcached, newMemcached, oldMemcached, client, newClient, oldClient }) => {
  clients = clientsOf(memcached);
  newClients = clientsOf(newMemcached);
  oldClients = clientsOf(oldMemcached);
  [probe, newProbe, oldProbe] = [client, newClient, oldClient];
});

afterAll(() => {
  for (const c of opened) c.close();
});

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `stampede:${keyCount}:${name}`;
}

/** A counting origin: every call takes `delayMs`, then resolves with `value`. */
function slowOrigin<T>(value: T, delayMs = ORIGIN_DELAY_MS) {
  return vi.fn(async (): Promise<T> => {
    await delay(delayMs);
    return value;
  });
}

type LeaseOutcome = LeaseRead<unknown>["status"];

/** `store`, with the outcome of every lease read appended to `outcomes` ("wait" = had to wait). */
function recordingLeases(store: CacheStore, outcomes: LeaseOutcome[]): CacheStore {
  return {
    ...store,
    readLease: async <T>(k: string, options: LeaseOptions) => {
      const read = await store.readLease<T>(k, options);
      outcomes.push(read.status);
      return read;
    },
  };
}

/**
 * One CacheAside per client over clientStore(client, { leaseMode: mode }): one per "Lambda". With
 * `outcomes`, every lease read's outcome is recorded there.
 */
function lambdas(
  mode: Mode,
  options: Partial<CacheAsideOptions> = {},
  outcomes?: LeaseOutcome[],
): CacheAside[] {
  return clients.map((c) => {
    const store = clientStore(c, { leaseMode: mode });
    return new CacheAside(outcomes ? recordingLeases(store, outcomes) : store, options);
  });
}

function countOf<T>(items: readonly T[], item: T): number {
  return items.filter((i) => i === item).length;
}

interface Call<T> {
  /** performance.now() at the call and when it settled. */
  start: number;
  end: number;
  ms: number;
  value: T;
  status: CacheStatus;
}

/** Runs one getOrLoad and reports when it ran and what it returned. */
async function call<T>(
  cache: CacheAside,
  k: string,
  loader: () => Promise<T>,
  options: LoadOptions<T> = {},
): Promise<Call<T>> {
  const start = performance.now();
  const { value, status } = await cache.getOrLoad(k, loader, options);
  const end = performance.now();
  return { start, end, ms: end - start, value, status };
}

/** `n` concurrent getOrLoad calls of one key, spread round-robin over `caches`. */
function stampede<T>(
  caches: readonly CacheAside[],
  k: string,
  n: number,
  loader: () => Promise<T>,
  options: LoadOptions<T> = {},
): Promise<Array<Call<T>>> {
  return Promise.all(
    Array.from({ length: n }, (_, i) => call(caches[i % caches.length]!, k, loader, options)),
  );
}

function statusCounts(calls: ReadonlyArray<{ status: CacheStatus }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { status } of calls) out[status] = (out[status] ?? 0) + 1;
  return out;
}

/** Remaining TTL in seconds that memcached reports for `k` (mg t), or undefined on a miss. */
async function remainingTtl(c: MemcacheClient, k: string): Promise<number | undefined> {
  const reply = await c.metaGet(k, ["t"]);
  return reply.code === "EN" ? undefined : Number(reply.flags.t);
}

/**
 * Resolves just after memcached's clock (whole seconds) ticked, so a 1 s TTL set now lasts
 * about a full second instead of possibly expiring at the next tick a moment later.
 */
async function afterServerTick(c: MemcacheClient): Promise<void> {
  const serverTime = async () => (await counters(c, ["time"])).time;
  const before = await serverTime();
  await vi.waitFor(async () => expect(await serverTime()).toBeGreaterThan(before), {
    timeout: 2_000,
    interval: 5,
  });
}

/**
 * What `c` holds as the lease for `k` in `mode`: the lock lease's placeholder under the key, or
 * the vivified placeholder (an empty item whose win token was handed out: Z). A plain mg without
 * N or R never takes the win.
 */
async function leaseIn(c: MemcacheClient, k: string, mode: Mode): Promise<boolean> {
  if (mode === "lock") return (await c.gets(k))?.flags === PLACEHOLDER_FLAGS;
  const reply: MetaReply = await c.metaGet(k, ["v", "f"]);
  return reply.code === "VA" && reply.value?.length === 0 && "Z" in reply.flags;
}

describe("without leases (naive cache-aside, for contrast)", () => {
  it("lets nearly every one of 200 concurrent cold readers hit the origin", async () => {
    const caches = clients.map((c) => new CacheAside(clientStore(c, { leaseMode: "off" })));
    const k = key("naive");
    const origin = slowOrigin("v1");

    const calls = await stampede(caches, k, CALLERS, origin);

    expect(calls.every((c) => c.value === "v1")).toBe(true);
    expect(origin.mock.calls.length).toBeGreaterThan(100);
  });
});

describe.each<Mode>(["meta", "lock"])("%s leases", (mode) => {
  it("lets at most 2 of 200 concurrent cold readers reach a 100 ms origin, and serves all of them", async () => {
    const caches = lambdas(mode);
    const k = key("cold");
    const origin = slowOrigin({ id: 1, name: "hot item" });

    const calls = await stampede(caches, k, CALLERS, origin);

    expect(origin.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(origin.mock.calls.length).toBeLessThanOrEqual(2);
    expect(calls.map((c) => c.value)).toEqual(calls.map(() => ({ id: 1, name: "hot item" })));
    // The winners report MISS; everyone else was served from the cache after waiting.
    expect(statusCounts(calls)).toEqual({
      MISS: origin.mock.calls.length,
      HIT: CALLERS - origin.mock.calls.length,
    });
    expect(await probe.get(k)).toEqual({ id: 1, name: "hot item" });
  });

  it("serves the waiters about 20 ms after the value lands: a median within 60 ms of the winner's fill", async () => {
    // README: waiters get the value "~20 ms" after the load (they poll every 5-20 ms, jittered).
    // Measured from the winner's fill being acknowledged (its "write" event) to each waiter's
    // answer: a stall of this process or of memcached while the value lands delays both, so the
    // difference is the polling. The median of ~199 waiters, so one stall of the loaded machine
    // (this file's load, above) after the landing does not decide it either. Measured with two
    // CPU-bound processes and three other test files beside it: medians 3-12 ms, 39 ms once (a
    // stall after the fill); with waiters polling every 200 ms: 93-109 ms.
    let filledAt = Number.POSITIVE_INFINITY;
    const caches = lambdas(mode, {
      onEvent: (event) => {
        if (event.type === "write") filledAt = performance.now();
      },
    });
    const k = key("waiter-lag");
    const origin = slowOrigin("v1", 600); // long enough for the waiters' pauses to reach their longest

    const calls = await stampede(caches, k, CALLERS, origin);

    expect(origin).toHaveBeenCalledTimes(1);
    const lags = calls
      .filter((c) => c.status === "HIT")
      .map((c) => c.end - filledAt)
      .sort((a, b) => a - b);
    expect(lags.length).toBe(CALLERS - 1);
    const median = lags[Math.floor(lags.length / 2)]!;
    expect(median).toBeLessThan(60);
  });

  it("recovers within the lease TTL when the winner crashes without filling", async () => {
    // maxWaitMs far above the bound below: recovery must come from the lease expiring, not from
    // the waiters giving up.
    const caches = lambdas(mode, { leaseTtlSeconds: 1, maxWaitMs: 5_000 });
    const k = key("crash");
    await afterServerTick(probe);
    const crashed = await caches[0]!.acquire(k); // wins the lease and never ends it
    expect(crashed.status).toBe("MISS");
    // Server side: the lease's placeholder exists under the key with the 1 s lease TTL.
    expect(await leaseIn(probe, k, mode)).toBe(true);
    expect(await remainingTtl(probe, k)).toBe(1);

    const origin = slowOrigin("recovered");
    const calls = await stampede(caches, k, 20, origin);

    expect(calls.every((c) => c.value === "recovered")).toBe(true);
    expect(Math.max(...calls.map((c) => c.ms))).toBeLessThan(1_000 + 1_500);
    expect(origin.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(origin.mock.calls.length).toBeLessThanOrEqual(2);
    expect(await probe.get(k)).toBe("recovered");
    expect(await leaseIn(probe, k, mode)).toBe(false);
  });

  it("bounds the wait by maxWaitMs: waiters load themselves after about 300 ms", async () => {
    const caches = lambdas(mode, { maxWaitMs: 300 });
    const k = key("bounded");
    const crashed = await caches[0]!.acquire(k); // holds the lease for 3 s, never fills
    expect(crashed.status).toBe("MISS");
    expect(await leaseIn(probe, k, mode)).toBe(true);

    const calls = await stampede(caches, k, 8, async () => "self-loaded");

    for (const c of calls) {
      expect(c.value).toBe("self-loaded");
      expect(c.ms).toBeGreaterThanOrEqual(250);
      expect(c.ms).toBeLessThan(300 + 250);
    }
    // The first to give up loads and writes; a later one may find that value instead.
    expect(statusCounts(calls).MISS).toBeGreaterThanOrEqual(1);
  });

  it("shortens the wait to the deadline when that comes before maxWaitMs", async () => {
    const caches = lambdas(mode, { maxWaitMs: 300 });
    const k = key("deadline");
    expect((await caches[0]!.acquire(k)).status).toBe("MISS");
    expect(await leaseIn(probe, k, mode)).toBe(true);
    const origin = vi.fn(async () => "self-loaded");

    const calls = await stampede(caches, k, 8, origin, { deadline: Date.now() + 100 });

    for (const c of calls) {
      expect(c.value).toBe("self-loaded");
      expect(c.ms).toBeGreaterThanOrEqual(50);
      // Well below the 250 ms that maxWaitMs alone allows; the slack is for a busy machine.
      expect(c.ms).toBeLessThan(100 + 100);
    }
    expect(origin).toHaveBeenCalled();
  });

  /** The load of a fresh miss won on clients[0], and spies on every command a lease ending sends. */
  async function wonLoad(k: string) {
    const acquired = await lambdas(mode)[0]!.acquire<string>(k);
    if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);
    const c = clients[0]!;
    const commands = (["metaSet", "metaDelete", "add", "cas", "get", "delete"] as const).map(
      (method) => vi.spyOn(c, method),
    );
    const sent = () => commands.reduce((total, spy) => total + spy.mock.calls.length, 0);
    const restore = () => {
      for (const spy of commands) spy.mockRestore();
    };
    return { load: acquired.load, sent, restore };
  }

  it("ends a won lease once: after the fill, abandon, fail and a second fill send nothing", async () => {
    const k = key("ends-once-fill");
    const { load, sent, restore } = await wonLoad(k);
    try {
      expect(await load.fill("v1", 60)).toBe(true);
      const afterFill = sent();
      expect(afterFill).toBeGreaterThan(0);

      await load.abandon();
      expect(await load.fail(new Error("late"))).toBeUndefined();
      expect(await load.fill("v2", 60)).toBe(false);

      expect(sent()).toBe(afterFill);
    } finally {
      restore();
    }
    expect(await probe.get(k)).toBe("v1");
    expect(await leaseIn(probe, k, mode)).toBe(false);
  });

  it("ends a won lease once: after abandon, a fill stores nothing and the next reader wins", async () => {
    const k = key("ends-once-abandon");
    const { load, sent, restore } = await wonLoad(k);
    try {
      await load.abandon();
      const afterAbandon = sent();
      expect(await load.fill("v1", 60)).toBe(false);
      await load.abandon();
      expect(sent()).toBe(afterAbandon);
    } finally {
      restore();
    }
    expect(await probe.get(k)).toBeUndefined();
    expect(await leaseIn(probe, k, mode)).toBe(false);
    const next = await lambdas(mode)[1]!.acquire(k);
    expect(next.status).toBe("MISS");
  });

  it("releases the lease when the winner's load fails, so the next caller wins at once", async () => {
    const caches = lambdas(mode); // lease TTL 3 s, maxWaitMs 2 s
    const k = key("loader-error");
    const failing = vi.fn(async () => {
      await delay(ORIGIN_DELAY_MS);
      throw new Error("origin down");
    });

    await expect(caches[0]!.getOrLoad(k, failing)).rejects.toThrow("origin down");
    expect(await leaseIn(probe, k, mode)).toBe(false);

    const origin = slowOrigin("v1");
    const next = await call(caches[1]!, k, origin);
    expect(next).toMatchObject({ value: "v1", status: "MISS" });
    expect(origin).toHaveBeenCalledTimes(1);
    // Won at once: the origin's 100 ms plus round trips, nowhere near the 2 s wait or 3 s TTL.
    expect(next.ms).toBeLessThan(ORIGIN_DELAY_MS + 400);
  });

  it("hands the lease to a waiter as soon as the winner's load fails", async () => {
    const caches = lambdas(mode);
    const k = key("loader-error-waiters");
    let attempt = 0;
    const origin = vi.fn(async () => {
      attempt++;
      const failing = attempt === 1;
      await delay(ORIGIN_DELAY_MS);
      if (failing) throw new Error("origin down");
      return "v1";
    });

    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => call(caches[i % caches.length]!, k, origin)),
    );

    const failed = settled.filter((s) => s.status === "rejected");
    const served = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    expect(failed).toHaveLength(1);
    expect(served.every((c) => c.value === "v1")).toBe(true);
    // 0 ms winner fails at 100, releases; a waiter wins at its next poll (<= 50 ms later) and
    // fills at ~250: far from the 2 s wait limit and the 3 s lease TTL.
    expect(Math.max(...served.map((c) => c.ms))).toBeLessThan(800);
    expect(origin.mock.calls.length).toBeLessThanOrEqual(3);
  });

  describe("through the cutover fallback layer (leases live in new)", () => {
    const cutoverLambdas = () =>
      newClients.map(
        (c, i) => new CacheAside(new FallbackStore(c, oldClients[i]!, { leaseMode: mode })),
      );
    const writesIn = (c: MemcacheClient) =>
      counters(c, ["cmd_set", "cmd_touch", "total_items", "curr_items"]);

    it("serves 200 concurrent cold readers from old without the origin, and copies into new", async () => {
      const caches = cutoverLambdas();
      const k = key("fallback-old-warm");
      await oldProbe.set(k, { from: "old" }, { ttlSeconds: 600 });
      const oldBefore = await writesIn(oldProbe);
      const oldHitsBefore = (await counters(oldProbe, ["get_hits"])).get_hits;
      const origin = slowOrigin({ from: "origin" });

      const calls = await stampede(caches, k, CALLERS, origin);

      expect(origin).not.toHaveBeenCalled();
      expect(calls.every((c) => (c.value as { from: string }).from === "old")).toBe(true);
      expect(statusCounts(calls)["HIT-FALLBACK"]).toBeGreaterThanOrEqual(1);
      expect(await newProbe.get(k)).toEqual({ from: "old" });
      // The copy kept old's remaining TTL (about 600 s), not a default.
      expect(await remainingTtl(newProbe, k)).toBeGreaterThan(590);
      // Only the lease winner(s) read old; the others waited for the copy in new.
      const oldHits = (await counters(oldProbe, ["get_hits"])).get_hits - oldHitsBefore;
      expect(oldHits).toBeGreaterThanOrEqual(1);
      expect(oldHits).toBeLessThanOrEqual(2);
      // Nothing was written to old: no lease, no lock key, no placeholder.
      expect(await writesIn(oldProbe)).toEqual(oldBefore);
      expect(await oldProbe.get(lockKeyFor(k))).toBeUndefined();
    });

    it("lets at most 2 of 200 concurrent cold readers reach the origin when neither cluster holds the key, with the lease in new", async () => {
      const caches = cutoverLambdas();
      const k = key("fallback-cold");
      const oldBefore = await writesIn(oldProbe);
      const newBefore = await writesIn(newProbe);
      const leaseSeen: Array<{ inNew: boolean; inOld: boolean }> = [];
      const origin = vi.fn(async () => {
        // While the winner loads, its lease is held: look for it in both clusters.
        leaseSeen.push({
          inNew: await leaseIn(newProbe, k, mode),
          inOld: await leaseIn(oldProbe, k, mode),
        });
        await delay(ORIGIN_DELAY_MS);
        return "v1";
      });

      const calls = await stampede(caches, k, CALLERS, origin);

      expect(origin.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(origin.mock.calls.length).toBeLessThanOrEqual(2);
      expect(calls.every((c) => c.value === "v1")).toBe(true);
      expect(leaseSeen[0]).toEqual({ inNew: true, inOld: false });
      expect(await newProbe.get(k)).toBe("v1");
      expect(await oldProbe.get(k)).toBeUndefined();
      expect(await writesIn(oldProbe)).toEqual(oldBefore);
      // new got the lease and the value.
      const newAfter = await writesIn(newProbe);
      expect(newAfter.total_items - newBefore.total_items).toBeGreaterThanOrEqual(2);
    });
  });

  describe("through the Middy middleware", () => {
    /** A Lambda context with 1,200 ms left: with deadlineMarginMs 1,000 a waiter may wait 200 ms. */
    const context = {
      getRemainingTimeInMillis: () => 1_200,
    } as Context;

    function getEvent(path: string): APIGatewayProxyEventV2 {
      return {
        version: "2.0",
        routeKey: "GET /products/{id}",
        rawPath: path,
        rawQueryString: "",
        headers: { host: "api.example.com" },
        requestContext: {
          http: { method: "GET", path, protocol: "HTTP/1.1", sourceIp: "203.0.113.7" },
        } as APIGatewayProxyEventV2["requestContext"],
        isBase64Encoded: false,
      };
    }

    /** A handler taking `delayMs` that records when (ms after t0) each run started. */
    function slowHandler(delayMs: number, t0: () => number) {
      const starts: number[] = [];
      const handler = vi.fn(async (event: HttpEvent, _context: Context): Promise<HttpResult> => {
        starts.push(performance.now() - t0());
        await delay(delayMs);
        return {
          statusCode: 200,
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ path: (event as APIGatewayProxyEventV2).rawPath }),
        };
      });
      return { handler, starts };
    }

    /** `n` concurrent invocations, one middy function per client (one per "Lambda"). */
    async function invokeConcurrently(
      handler: ReturnType<typeof slowHandler>["handler"],
      path: string,
      n: number,
    ): Promise<HttpResult[]> {
      const functions = lambdas(mode).map((cache) =>
        middy(handler).use(httpCacheMiddleware({ cache, deadlineMarginMs: 1_000 })),
      );
      return Promise.all(
        Array.from({ length: n }, (_, i) =>
          functions[i % functions.length]!(getEvent(path), context),
        ),
      );
    }

    it("runs the handler at most twice for 50 concurrent cold GETs and answers all with one body", async () => {
      let t0 = 0;
      const path = `/products/${key("middy")}`;
      const { handler } = slowHandler(ORIGIN_DELAY_MS, () => t0);
      t0 = performance.now();

      const responses = await invokeConcurrently(handler, path, 50);

      expect(handler.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(handler.mock.calls.length).toBeLessThanOrEqual(2);
      expect(responses.every((r) => r.statusCode === 200)).toBe(true);
      expect(new Set(responses.map((r) => r.body))).toEqual(new Set([JSON.stringify({ path })]));
      const xCache = responses.map((r) => r.headers?.["x-cache"]);
      expect(xCache.filter((s) => s === "MISS")).toHaveLength(handler.mock.calls.length);
      expect(xCache.filter((s) => s === "HIT")).toHaveLength(50 - handler.mock.calls.length);
    });

    it("bounds the wait by the Lambda's remaining time minus deadlineMarginMs", async () => {
      // The winner's handler takes 600 ms; without the 200 ms deadline the waiters would wait
      // for it (maxWaitMs is 2 s). With it, each gives up by ~200 ms and runs the handler itself.
      let t0 = 0;
      const path = `/products/${key("middy-deadline")}`;
      const { handler, starts } = slowHandler(600, () => t0);
      t0 = performance.now();

      const responses = await invokeConcurrently(handler, path, 20);

      expect(responses.every((r) => r.statusCode === 200)).toBe(true);
      const sorted = [...starts].sort((a, b) => a - b);
      expect(sorted[0]).toBeLessThan(100); // the winner, at once
      const waiters = sorted.slice(1);
      expect(waiters.length).toBeGreaterThan(0);
      for (const start of waiters) {
        expect(start).toBeGreaterThanOrEqual(100);
        // Without the deadline: 600 ms (the winner's fill). The slack is for a busy machine.
        expect(start).toBeLessThan(200 + 100);
      }
    });
  });
});

describe("meta leases only", () => {
  it("serves the old value to every reader while exactly one refreshes an item invalidated under load", async () => {
    const outcomes: LeaseOutcome[] = [];
    const caches = lambdas("meta", {}, outcomes);
    const k = key("serve-stale");
    await caches[0]!.write(k, "v1");
    let refreshStartedAt = Number.POSITIVE_INFINITY;
    let refreshLandedAt = Number.POSITIVE_INFINITY;
    const origin = vi.fn(async () => {
      refreshStartedAt = performance.now();
      await delay(ORIGIN_DELAY_MS);
      refreshLandedAt = performance.now(); // the fill follows right after
      return "v2";
    });
    const calls: Array<Call<string>> = [];
    let stop = false;
    // 100 readers, each in a loop: constant load before, during and after the invalidation.
    const readers = Array.from({ length: 100 }, async (_, i) => {
      while (!stop) calls.push(await call(caches[i % caches.length]!, k, origin));
    });

    await vi.waitFor(() => expect(calls.length).toBeGreaterThanOrEqual(500), { timeout: 5_000 });
    const invalidatedAt = performance.now();
    expect(await caches[0]!.invalidate(k, { stale: true })).toBe(true);
    await vi.waitFor(
      () => expect(calls.filter((c) => c.start > refreshLandedAt).length).toBeGreaterThan(500),
      { timeout: 5_000 },
    );
    stop = true;
    await Promise.all(readers);

    // The origin saw one refresh, by the one reader that won it.
    expect(origin).toHaveBeenCalledTimes(1);
    expect(countOf(outcomes, "win")).toBe(1);
    const refreshers = calls.filter((c) => c.status === "MISS");
    expect(refreshers).toHaveLength(1);
    expect(refreshers[0]!.value).toBe("v2");
    // No reader waited on the origin: not one lease read answered "wait", every other call was
    // a HIT faster than the origin, and readers kept being served while the refresh ran.
    expect(countOf(outcomes, "wait")).toBe(0);
    expect(calls.filter((c) => c.ms >= SERVED_MS)).toEqual(refreshers);
    const servedDuringRefresh = calls.filter(
      (c) => c.start > refreshStartedAt && c.end < refreshLandedAt,
    );
    expect(servedDuringRefresh.length).toBeGreaterThan(100);
    expect(servedDuringRefresh.every((c) => c.status === "HIT" && c.value === "v1")).toBe(true);
    // Old value until the refresh landed, new value after.
    expect(calls.filter((c) => c.end < invalidatedAt).every((c) => c.value === "v1")).toBe(true);
    expect(calls.filter((c) => c.end < refreshLandedAt).every((c) => c.value === "v1")).toBe(true);
    expect(calls.filter((c) => c.start > refreshers[0]!.end).every((c) => c.value === "v2")).toBe(
      true,
    );
    expect(await probe.get(k)).toBe("v2");
  });

  it("serves the stale value (HIT, event stale-on-error) when the refresh of an invalidated item fails", async () => {
    const events: CacheEvent[] = [];
    const cache = new CacheAside(clientStore(clients[0]!, { leaseMode: "meta" }), {
      onEvent: (event) => events.push(event),
    });
    const k = key("stale-on-error");
    await cache.write(k, "v1");
    expect(await cache.invalidate(k, { stale: true })).toBe(true);
    const originError = new Error("origin down");

    const result = await cache.getOrLoad(k, async () => {
      throw originError;
    });

    expect(result).toEqual({ value: "v1", status: "HIT" });
    const staleOnError = events.filter((e) => e.type === "stale-on-error");
    expect(staleOnError).toHaveLength(1);
    expect(staleOnError[0]).toMatchObject({ key: k, error: originError });
  });

  it("throws the origin error when the refresh of an invalidated item fails and serveStaleOnError is false", async () => {
    const events: CacheEvent[] = [];
    const cache = new CacheAside(clientStore(clients[0]!, { leaseMode: "meta" }), {
      serveStaleOnError: false,
      onEvent: (event) => events.push(event),
    });
    const k = key("no-stale-on-error");
    await cache.write(k, "v1");
    expect(await cache.invalidate(k, { stale: true })).toBe(true);

    await expect(
      cache.getOrLoad(k, async () => {
        throw new Error("origin down");
      }),
    ).rejects.toThrow("origin down");
    expect(events.some((e) => e.type === "stale-on-error")).toBe(false);
  });

  it("serves a cached empty Buffer as a HIT without waiting", async () => {
    // An empty Buffer is stored with flags 0 and no data: exactly what the vivified placeholder
    // looks like, so readers must tell them apart by the win token (W / Z), not by the bytes.
    const cache = lambdas("meta")[0]!;
    const k = key("empty-buffer");
    await cache.getOrLoad(k, async () => Buffer.alloc(0));
    const origin = vi.fn(async () => Buffer.alloc(0));

    const second = await call(cache, k, origin);

    expect(second.status).toBe("HIT");
    expect(origin).not.toHaveBeenCalled();
    expect(second.ms).toBeLessThan(SERVED_MS); // not maxWaitMs (2 s) of waiting
  });

  it("lets a later reader retry the refresh after a refresh of an invalidated item failed", async () => {
    // Timeline (staleSeconds 30):
    //   0 ms   invalidate(k, { stale: true })     item stale, win token free
    //   1      A reads: W + X, loads              origin fails; A is served v1 (stale-on-error)
    //   2      B reads                            should win the refresh now that A gave up,
    //                                             not be served v1 for the next 30 s
    const cache = new CacheAside(clientStore(clients[0]!, { leaseMode: "meta" }));
    const k = key("stale-retry");
    await cache.write(k, "v1");
    await cache.invalidate(k, { stale: true });
    expect(
      await cache.getOrLoad(k, async () => {
        throw new Error("origin down");
      }),
    ).toEqual({ value: "v1", status: "HIT" });
    const origin = vi.fn(async () => "v2");

    const next = await cache.getOrLoad(k, origin);

    expect(origin).toHaveBeenCalledTimes(1);
    expect(next).toEqual({ value: "v2", status: "MISS" });
  });

  it("refreshes a hot item close to expiry through exactly one reader while the others get the old value at once", async () => {
    const outcomes: LeaseOutcome[] = [];
    const caches = lambdas("meta", { recacheSeconds: 2 }, outcomes);
    const k = key("early-refresh");
    await caches[0]!.write(k, "v1", 3);
    const origin = slowOrigin("v2");

    // With 3 s left (above recacheSeconds) nobody refreshes.
    expect(await call(caches[1]!, k, origin)).toMatchObject({ value: "v1", status: "HIT" });
    expect(origin).not.toHaveBeenCalled();

    await vi.waitFor(async () => expect(await remainingTtl(probe, k)).toBeLessThan(2), {
      timeout: 4_000,
      interval: 50,
    });
    outcomes.length = 0;
    const calls = await stampede(caches, k, 50, origin);

    expect(origin).toHaveBeenCalledTimes(1);
    expect(countOf(outcomes, "win")).toBe(1);
    const refreshers = calls.filter((c) => c.status === "MISS");
    expect(refreshers).toHaveLength(1);
    expect(refreshers[0]!.value).toBe("v2");
    // The others: served the old value by their first read, none had to wait.
    expect(countOf(outcomes, "wait")).toBe(0);
    expect(outcomes).toHaveLength(50);
    const others = calls.filter((c) => c.status === "HIT");
    expect(others).toHaveLength(49);
    expect(others.every((c) => c.value === "v1" && c.ms < SERVED_MS)).toBe(true);
    expect(await probe.get(k)).toBe("v2");
    expect(await remainingTtl(probe, k)).toBeGreaterThan(3); // refilled with the default 300 s
  });
});

describe("lock leases only", () => {
  it("turns invalidate(key, { stale: true }) into a plain delete: the next read is a MISS", async () => {
    const cache = lambdas("lock")[0]!;
    const k = key("lock-invalidate");
    await cache.getOrLoad(k, async () => "v1");
    expect(await cache.read(k)).toEqual({ status: "HIT", value: "v1" });

    expect(await cache.invalidate(k, { stale: true })).toBe(true);

    expect(await cache.read(k)).toEqual({ status: "MISS" });
    expect(await probe.get(k)).toBeUndefined();
    const origin = vi.fn(async () => "v2");
    expect(await cache.getOrLoad(k, origin)).toEqual({ value: "v2", status: "MISS" });
    expect(origin).toHaveBeenCalledTimes(1);
  });
});
