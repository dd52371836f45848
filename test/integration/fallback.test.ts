// The cutover fallback against two real memcached processes, "old" and "new", with CacheAside
// over FallbackStore as the reference app runs it: a warm old cluster spares the origin, copies
// into new keep the remaining TTL and never overwrite a fresher value, writes stay in new,
// invalidation reaches both (also across the reader/writer race), old read failures never surface
// nor make anyone wait past the dead-node rule, an invalidation old did not acknowledge is
// reported incomplete, and a failing new cluster fails open.
// getOrLoad takes its stampede lease in new (FallbackStore.readLease): the cutover guarantees are
// checked with each lease implementation — meta (mg N / ms C, the default on this memcached),
// lock (a placeholder added under the key, used where new lacks the meta protocol) and off (no
// waiting; fills still conditional).
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { afterAll, describe, expect, vi } from "vitest";
import {
  CacheAside,
  type CacheAsideOptions,
  type CacheEvent,
  type CacheStatus,
} from "../../lib/cache/cacheAside.ts";
import { type FallbackOptions, FallbackStore } from "../../lib/cache/fallback.ts";
import type { LeaseMode, LeaseOptions } from "../../lib/cache/leases.ts";
import { TOMBSTONE_FLAGS } from "../../lib/cache/leases.ts";
import { type ClientOptions, MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheConnectionClosedError,
  MemcacheError,
  MemcacheIncompleteInvalidationError,
} from "../../lib/memcache/errors.ts";
import { counters, timed } from "../helpers/client.ts";
import { test } from "../helpers/fixtures.ts";

// The clusters (newMemcached, oldMemcached) and a client of each with patient timeouts (newClient,
// oldClient: these tests are not about slowness) come from the fixtures.
let keyCount = 0;
const clients: MemcacheClient[] = [];
/** The lease implementations getOrLoad can run with over FallbackStore. */
const leaseModes: readonly LeaseMode[] = ["meta", "lock", "off"];

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `fallback:${keyCount}:${name}`;
}

function client(servers: string, options: Partial<ClientOptions> = {}): MemcacheClient {
  const created = new MemcacheClient({ servers, timeoutMs: 2_000, ...options });
  clients.push(created);
  return created;
}

/** CacheAside over FallbackStore(newC, oldC), with every old-cluster error collected. */
function cutover(
  newC: MemcacheClient,
  oldC: MemcacheClient,
  options: Partial<FallbackOptions> = {},
  cacheOptions: Partial<CacheAsideOptions> = {},
) {
  const oldErrors: Array<{ operation: string; key: string; error: unknown }> = [];
  const store = new FallbackStore(newC, oldC, {
    onOldError: (operation, k, error) => oldErrors.push({ operation, key: k, error }),
    ...options,
  });
  return { store, cache: new CacheAside(store, cacheOptions), oldErrors };
}

/** A loader that counts its calls and resolves with `value`. */
function countingLoader<T>(value: T) {
  return vi.fn(async () => value);
}

/** A promise the test resolves when it chooses. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * The fixtures, and `heldOldClient()`: an old-cluster client whose reads (mg and get) fetch the
 * reply from the server, then report `reached` and hold it until `release` opens: the reader is
 * frozen between its read of old and its copy into new, where the races are.
 */
const it = test.extend("heldOldClient", async ({ oldMemcached }) => () => {
  const held = client(oldMemcached.endpoint);
  const reached = gate();
  const release = gate();
  const metaGet = held.metaGet.bind(held);
  const get = held.get.bind(held);
  held.metaGet = async (k, flags) => {
    const reply = await metaGet(k, flags);
    reached.open();
    await release.promise;
    return reply;
  };
  held.get = async <T>(k: string) => {
    const value = await get<T>(k);
    reached.open();
    await release.promise;
    return value;
  };
  return { held, reached: reached.promise, release: release.open };
});

afterAll(() => {
  for (const c of clients.splice(0)) c.close();
});

describe.each(leaseModes)("reads during a cutover (leases: %s)", (mode) => {
  it("serves 500 keys warmed in old without one origin call: HIT-FALLBACK first, HIT after, all copied into new", async ({
    newClient,
    oldClient,
  }) => {
    const keys = Array.from({ length: 500 }, (_, i) => key(`warm-${i}`));
    const productFor = (k: string) => ({ key: k, name: `product ${k}`, price: 9.99 });
    await Promise.all(keys.map((k) => oldClient.set(k, productFor(k), { ttlSeconds: 300 })));
    expect((await newClient.getMany(keys)).size).toBe(0);
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });
    const loader = countingLoader({ from: "origin" });

    const first = await Promise.all(keys.map((k) => cache.getOrLoad(k, loader)));
    const second = await Promise.all(keys.map((k) => cache.getOrLoad(k, loader)));

    expect(loader).not.toHaveBeenCalled();
    expect(first.map((r) => r.status)).toEqual(keys.map(() => "HIT-FALLBACK"));
    expect(first.map((r) => r.value)).toEqual(keys.map(productFor));
    expect(second.map((r) => r.status)).toEqual(keys.map(() => "HIT"));
    expect(second.map((r) => r.value)).toEqual(keys.map(productFor));
    const inNew = await newClient.getMany(keys);
    expect(inNew.size).toBe(500);
    for (const k of keys) expect(inNew.get(k)).toEqual(productFor(k));
  });

  it("copies a value into new with the TTL it has left in old", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("ttl-100");
    await oldClient.set(k, "v", { ttlSeconds: 100 });
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });

    expect(await cache.getOrLoad(k, countingLoader("origin"))).toEqual({
      value: "v",
      status: "HIT-FALLBACK",
    });

    const reply = await newClient.metaGet(k, ["t", "v", "f"]);
    expect(newClient.decodeMeta(reply)).toBe("v");
    const t = Number(reply.flags.t);
    // Not copyTtlSeconds (300), nor the write-back TTL (300), nor "never" (-1): what old had left.
    expect(t).toBeGreaterThan(0);
    expect(t).toBeLessThanOrEqual(100);
  });

  it("copies a value that never expires in old as one that never expires in new", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("ttl-none");
    await oldClient.set(k, "v"); // ttlSeconds 0
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });

    expect((await cache.getOrLoad(k, countingLoader("origin"))).status).toBe("HIT-FALLBACK");

    const reply = await newClient.metaGet(k, ["t", "v", "f"]);
    expect(newClient.decodeMeta(reply)).toBe("v");
    expect(reply.flags.t).toBe("-1");
  });

  // A remaining TTL over 30 days must go on the wire as an absolute time; sent as a relative
  // number, memcached would read it as a date in 1970 and the copy would expire at once.
  it("copies a remaining TTL of more than 30 days without expiring the copy", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("ttl-40d");
    const fortyDays = 40 * 24 * 3600;
    await oldClient.set(k, "v", { ttlSeconds: fortyDays });
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });

    expect((await cache.getOrLoad(k, countingLoader("origin"))).status).toBe("HIT-FALLBACK");

    expect(await newClient.get(k)).toBe("v");
    const t = Number((await newClient.metaGet(k, ["t"])).flags.t);
    expect(t).toBeGreaterThan(fortyDays - 60);
    // An absolute exptime is taken against memcached's own clock, which ticks once a second and
    // may trail the wall clock by a tick or two: t can read up to 2 s over the TTL sent.
    expect(t).toBeLessThanOrEqual(fortyDays + 2);
  });

  it("prefers new over old when both hold the key", async ({ newClient, oldClient }) => {
    const k = key("both");
    await oldClient.set(k, "old value");
    await newClient.set(k, "new value");
    const { store, cache } = cutover(newClient, oldClient, { leaseMode: mode });

    expect(await store.read(k)).toEqual({ value: "new value", fallback: false });
    expect(await cache.getOrLoad(k, countingLoader("origin"))).toEqual({
      value: "new value",
      status: "HIT",
    });
  });

  // timeline:
  //   reader: miss in new (meta: placeholder + lease; lock: lock key); mg old -> "stale"  (held)
  //   writer: set new "fresh"
  //   reader: copy "stale" into new -> must lose (add: NOT_STORED; meta fill: ms C<cas> -> EX)
  it("never overwrites a value written to new while the copy from old was on its way", async ({
    newClient,
    oldClient,
    heldOldClient,
  }) => {
    const k = key("add-race");
    await oldClient.set(k, "stale");
    const { held, reached, release } = heldOldClient();
    const reader = cutover(newClient, held, { leaseMode: mode });
    const writer = cutover(newClient, oldClient, { leaseMode: mode });

    const reading = reader.cache.getOrLoad(k, countingLoader("unused"));
    await reached;
    expect(await writer.cache.write(k, "fresh")).toBe(true);
    release();

    expect(await reading).toEqual({ value: "stale", status: "HIT-FALLBACK" });
    expect(await newClient.get(k)).toBe("fresh");
  });
});

describe("writes during a cutover", () => {
  it("writes to new only: old's cmd_set does not move and old never holds the written keys", async ({
    newClient,
    oldClient,
  }) => {
    const loaded = key("loaded");
    const written = key("written");
    const storeWritten = key("store-written");
    const copied = key("copied");
    await oldClient.set(copied, "from old");
    const { store, cache } = cutover(newClient, oldClient);
    const before = await counters(oldClient, ["cmd_set"]);

    expect((await cache.getOrLoad(loaded, countingLoader("loaded value"))).status).toBe("MISS");
    expect(await cache.write(written, "written value")).toBe(true);
    await store.write(storeWritten, "store value", 60);
    expect((await cache.getOrLoad(copied, countingLoader("origin"))).status).toBe("HIT-FALLBACK");

    expect(await counters(oldClient, ["cmd_set"])).toEqual(before);
    expect(await oldClient.getMany([loaded, written, storeWritten])).toEqual(new Map());
    expect(await newClient.get(loaded)).toBe("loaded value");
    expect(await newClient.get(written)).toBe("written value");
    expect(await newClient.get(storeWritten)).toBe("store value");
  });
});

describe.each(leaseModes)("invalidation during a cutover (leases: %s)", (mode) => {
  it("removes the key from old, and the next read is a MISS that loads the new value", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("invalidate");
    await oldClient.set(k, "v1");
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });
    expect((await cache.getOrLoad(k, countingLoader("unused"))).status).toBe("HIT-FALLBACK");

    expect(await cache.invalidate(k)).toBe(true);

    expect(await oldClient.get(k)).toBeUndefined();
    const loader = countingLoader("v2");
    expect(await cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "MISS" });
    expect(loader).toHaveBeenCalledTimes(1);
    expect(await cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "HIT" });
  });

  // The PUT handler invalidates; if only new were cleared, a flush of new (or its tombstone
  // expiring) would let old's v1 resurface through the fallback.
  it("serves the origin, not old's stale value, after an invalidation followed by a flush of new", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("put-then-flush");
    await oldClient.set(k, "v1");
    await newClient.set(k, "v1");
    const { cache } = cutover(newClient, oldClient, { leaseMode: mode });

    expect(await cache.invalidate(k)).toBe(true);
    await newClient.flushAll();

    const loader = countingLoader("v2");
    expect(await cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "MISS" });
    expect(loader).toHaveBeenCalledTimes(1);
  });

  // The race fallback.ts describes, made deterministic by holding the reader:
  //   reader: miss in new; mg old -> v1                     (held here)
  //   writer: origin := v2; invalidate: tombstone new, delete old
  //   reader: copy v1 into new -> refused by the tombstone  v1 does not live on in new
  //   next reader: tombstone -> MISS -> origin v2
  it("does not let a reader holding old's value copy it into new after a concurrent invalidation", async ({
    newClient,
    oldClient,
    heldOldClient,
  }) => {
    const k = key("invalidate-race");
    await oldClient.set(k, "v1");
    const { held, reached, release } = heldOldClient();
    const reader = cutover(newClient, held, { leaseMode: mode });
    const writer = cutover(newClient, oldClient, { leaseMode: mode });

    const reading = reader.cache.getOrLoad(k, countingLoader("unused"));
    await reached;
    expect(await writer.cache.invalidate(k)).toBe(true);
    release();
    // The held reader read before the invalidation; serving v1 to it once is expected.
    expect(await reading).toEqual({ value: "v1", status: "HIT-FALLBACK" });

    const inNew = await newClient.gets(k);
    expect(inNew?.value).not.toBe("v1");
    expect(inNew?.flags).toBe(TOMBSTONE_FLAGS);
    const loader = countingLoader("v2");
    expect(await writer.cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "MISS" });
    expect(loader).toHaveBeenCalledTimes(1);
  });

  it("reports the invalidation incomplete when old keeps dropping the delete, and still does not fall back to old behind the tombstone", async ({
    newClient,
    oldClient,
    oldMemcached,
  }) => {
    const k = key("tombstone-old-kept");
    await oldClient.set(k, "v1");
    const failingOld = client(oldMemcached.endpoint);
    const deletes = vi.fn(() =>
      Promise.reject(new MemcacheConnectionClosedError("test: old cluster dropped the delete")),
    );
    failingOld.delete = deletes;
    const events: CacheEvent[] = [];
    const { store, cache } = cutover(
      newClient,
      failingOld,
      { leaseMode: mode },
      { onEvent: (event) => events.push(event) },
    );

    expect(await cache.invalidate(k)).toBe(false); // incomplete: never answered as done

    expect(deletes).toHaveBeenCalledTimes(3); // retried within the request
    const failed = events.filter((e) => e.type === "invalidate-error");
    expect(failed.map((e) => e.key)).toEqual([k]);
    expect(failed[0]!.error).toBeInstanceOf(MemcacheIncompleteInvalidationError);
    expect((failed[0]!.error as MemcacheIncompleteInvalidationError).clusters).toEqual(["old"]);
    expect(await oldClient.get(k)).toBe("v1");
    expect(await store.read(k)).toBeUndefined();
    const loader = countingLoader("v2");
    expect(await cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "MISS" });
    expect(loader).toHaveBeenCalledTimes(1);
  });
});

// invalidate(key, { stale: true }) keeps serving new's copy for staleSeconds while one reader
// refreshes it (md I, meta protocol only). Old must still be cleared: once the stale copy in new
// ends, a reader would otherwise fall back to old's v1.
describe("invalidation marked stale during a cutover (leases: meta)", () => {
  it("deletes the key in old, so old's value does not return once new's stale copy has expired", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("invalidate-stale");
    await oldClient.set(k, "v1");
    await newClient.set(k, "v1", { ttlSeconds: 300 });
    const { cache } = cutover(newClient, oldClient, { leaseMode: "meta" }, { staleSeconds: 1 });

    expect(await cache.invalidate(k, { stale: true })).toBe(true);

    expect(await oldClient.get(k)).toBeUndefined();
    await vi.waitFor(async () => expect((await newClient.metaGet(k, [])).code).toBe("EN"), {
      timeout: 5_000,
      interval: 50,
    });
    const loader = countingLoader("v2");
    expect(await cache.getOrLoad(k, loader)).toEqual({ value: "v2", status: "MISS" });
    expect(loader).toHaveBeenCalledTimes(1);
  });
});

// DESIGN.md: "when many callers miss the same key at once, one loads it". Right after an
// invalidation (a PUT) is when a hot key is missed by many callers at once; with only new in use
// (clientStore) the delete lets mg N elect one loader, and the cutover must not do worse.
describe.each(["meta", "lock"] as const)("stampede after an invalidation (leases: %s)", (mode) => {
  it("lets one of 20 concurrent readers load an invalidated key from the origin", async ({
    newClient,
    oldClient,
  }) => {
    const k = key("stampede-after-invalidate");
    await oldClient.set(k, "v1");
    await newClient.set(k, "v1");
    const { store, cache } = cutover(newClient, oldClient, { leaseMode: mode });
    expect(await cache.invalidate(k)).toBe(true);
    // Count lease reads answered by new, to know when every reader has been told win/wait/miss.
    let answered = 0;
    const readLease = store.readLease.bind(store);
    store.readLease = async <T>(leaseKey: string, options: LeaseOptions) => {
      const read = await readLease<T>(leaseKey, options);
      answered++;
      return read;
    };
    const loaded = gate();
    let loads = 0;
    const loader = async () => {
      loads++;
      await loaded.promise;
      return "v2";
    };

    const readers = Array.from({ length: 20 }, () => cache.getOrLoad(k, loader));
    // timeline: all 20 ask new; one may load (held until every reader had its answer), the
    // others must wait for its fill.
    await vi.waitFor(() => expect(answered).toBeGreaterThanOrEqual(20));
    loaded.open();
    const results = await Promise.all(readers);

    expect(results.map((r) => r.value)).toEqual(results.map(() => "v2"));
    expect(loads).toBe(1);
  });
});

describe("when the old cluster fails", () => {
  const timeoutMs = 100;
  const failuresBeforeDead = 2;
  const fastMs = 20;

  /**
   * The fixtures, and `brokenOldSetup(name, count)`: a private old memcached (this test breaks
   * it), its keys warmed and its client connected.
   */
  const it = test.extend("brokenOldSetup", async ({ spawnMemcached, newClient }) => {
    return async (name: string, count: number) => {
      const server = await spawnMemcached();
      const oldC = client(server.endpoint, {
        timeoutMs,
        connectTimeoutMs: timeoutMs,
        failuresBeforeDead,
        deadRetryMs: 1_000,
      });
      const keys = Array.from({ length: count }, (_, i) => key(`${name}-${i}`));
      await Promise.all(keys.map((k) => oldC.set(k, `old ${k}`)));
      const setup = cutover(newClient, oldC);
      // One read through the fallback opens the socket and probes meta support, as in steady state.
      const warm = key(`${name}-warm`);
      await oldC.set(warm, "warm");
      expect((await setup.cache.read(warm)).status).toBe("HIT-FALLBACK");
      return { server, keys, ...setup };
    };
  });

  /** Reads every key in turn through getOrLoad, timing each. */
  async function readAll(cache: CacheAside, keys: readonly string[]) {
    const loader = vi.fn(async () => "origin");
    const reads: Array<{ ms: number; status: CacheStatus | "threw" }> = [];
    for (const k of keys) {
      const { ms, result } = await timed(() => cache.getOrLoad(k, loader));
      reads.push({ ms, status: result.status === "fulfilled" ? result.value.status : "threw" });
    }
    return { loader, reads };
  }

  it("reads keys missing in new as MISS from the origin once old is killed, waiting at most on failuresBeforeDead reads", async ({
    brokenOldSetup,
  }) => {
    const { server, keys, cache, oldErrors } = await brokenOldSetup("killed", 50);
    try {
      await server.kill("SIGKILL");

      const { loader, reads } = await readAll(cache, keys);

      expect(reads.map((r) => r.status)).toEqual(keys.map(() => "MISS"));
      expect(loader).toHaveBeenCalledTimes(50);
      const slow = reads.filter((r) => r.ms > fastMs);
      expect(slow.length).toBeLessThanOrEqual(failuresBeforeDead);
      expect(Math.max(...reads.map((r) => r.ms))).toBeLessThanOrEqual(timeoutMs + 50);
      // onOldError saw every failed read of old, each a typed client error.
      expect(oldErrors.length).toBe(50);
      for (const [i, e] of oldErrors.entries()) {
        expect(e.operation).toBe("read");
        expect(e.key).toBe(keys[i]);
        expect(e.error).toBeInstanceOf(MemcacheError);
      }
    } finally {
      await server.stop();
    }
  });

  // timeline (black hole: the port accepts, nothing answers):
  //   read 1: mg old ... timeoutMs -> failure 1 (socket destroyed)
  //   read 2: mg old on a new socket ... timeoutMs -> failure 2 -> old marked dead for 1 s
  //   read 3..50: old refused at once (MemcacheNodeDeadError) -> MISS without waiting
  it("reads keys as MISS while old is a black hole, only the first failuresBeforeDead reads waiting timeoutMs", async ({
    brokenOldSetup,
  }) => {
    const { server, keys, cache, oldErrors } = await brokenOldSetup("paused", 50);
    try {
      await server.pause();

      const { loader, reads } = await readAll(cache, keys);

      expect(reads.map((r) => r.status)).toEqual(keys.map(() => "MISS"));
      expect(loader).toHaveBeenCalledTimes(50);
      const slowIndexes = reads.flatMap((r, i) => (r.ms > fastMs ? [i] : []));
      expect(slowIndexes.length).toBeGreaterThan(0); // the black hole was in effect
      expect(slowIndexes.length).toBeLessThanOrEqual(failuresBeforeDead);
      // The waits come first; once old is marked dead nobody waits on it.
      expect(slowIndexes.every((i) => i < failuresBeforeDead)).toBe(true);
      expect(Math.max(...reads.map((r) => r.ms))).toBeLessThanOrEqual(timeoutMs + 50);
      expect(oldErrors.length).toBe(50);
      expect(oldErrors.every((e) => e.operation === "read")).toBe(true);
    } finally {
      server.resume();
      await server.stop();
    }
  });

  it("leaves the tombstone in new and reports the invalidation incomplete when old is dead", async ({
    newClient,
    brokenOldSetup,
  }) => {
    const { server, keys, cache, oldErrors } = await brokenOldSetup("invalidate-killed", 1);
    const k = keys[0]!;
    try {
      await server.kill("SIGKILL");

      const { ms, result } = await timed(() => cache.invalidate(k));

      expect(result).toEqual({ status: "fulfilled", value: false });
      expect(ms).toBeLessThan(timeoutMs * 3 + 100); // three attempts at most, each refused fast
      expect(oldErrors).toEqual([]); // onOldError reports reads; invalidations report themselves
      expect((await newClient.gets(k))?.flags).toBe(TOMBSTONE_FLAGS);
    } finally {
      await server.stop();
    }
  });
});

describe.each(leaseModes)("when the new cluster fails (leases: %s)", (mode) => {
  it("fails open while new is a black hole: old's value as HIT-FALLBACK without a copy, else BYPASS from the origin", async ({
    oldClient,
    spawnMemcached,
  }) => {
    const server = await spawnMemcached();
    const newC = client(server.endpoint, {
      timeoutMs: 100,
      connectTimeoutMs: 100,
      failuresBeforeDead: 2,
      deadRetryMs: 1_000,
    });
    const present = key("new-down-present");
    const absent = key("new-down-absent");
    await oldClient.set(present, "old value");
    const { cache } = cutover(newC, oldClient, { leaseMode: mode });
    // One request through the cutover first: socket open, meta support probed, as in steady state.
    await cache.getOrLoad(key("new-down-warm"), countingLoader("warm"));
    const copies = [vi.spyOn(newC, "add"), vi.spyOn(newC, "set"), vi.spyOn(newC, "metaSet")];
    try {
      await server.pause();

      const presentLoader = countingLoader("origin present");
      const absentLoader = countingLoader("origin absent");
      const results = [];
      for (let round = 0; round < 3; round++) {
        results.push(await cache.getOrLoad(present, presentLoader));
        results.push(await cache.getOrLoad(absent, absentLoader));
      }

      // Early rounds wait on new's timeout, later ones find it marked dead: same answers.
      for (let round = 0; round < 3; round++) {
        expect(results[2 * round]).toEqual({ value: "old value", status: "HIT-FALLBACK" });
        expect(results[2 * round + 1]).toEqual({ value: "origin absent", status: "BYPASS" });
      }
      expect(presentLoader).not.toHaveBeenCalled();
      expect(absentLoader).toHaveBeenCalledTimes(3);
      for (const copy of copies) expect(copy).not.toHaveBeenCalled();
    } finally {
      server.resume();
    }
    try {
      // No copy was queued for new while it was down (reads sent then may still land).
      const check = client(server.endpoint);
      expect(await check.get(present)).not.toBe("old value");
    } finally {
      await server.stop();
    }
  });
});
