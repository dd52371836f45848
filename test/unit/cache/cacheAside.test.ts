// CacheAside over an in-memory CacheStore that records every call and can be told to fail:
// hits, misses and write-back with the TTL, cache failures that never reach the caller, loader
// errors that do, and the onEvent hook.

import { describe, expect, it, vi } from "vitest";
import { CacheAside, type CacheEvent } from "../../../lib/cache/cacheAside.ts";
import { Lease, type LeaseRead } from "../../../lib/cache/leases.ts";
import type { CacheStore, StoreHit } from "../../../lib/cache/store.ts";
import { MemcacheTimeoutError } from "../../../lib/memcache/errors.ts";

interface WriteCall {
  key: string;
  value: unknown;
  ttlSeconds: number;
}

/** A Map-backed CacheStore; each operation can be switched to throw, like a cache that is down. */
class FakeStore implements CacheStore {
  readonly entries = new Map<string, unknown>();
  /** Keys read back with `fallback: true` (as if found in the old cluster). */
  readonly fallbackKeys = new Set<string>();
  readonly reads: string[] = [];
  readonly writes: WriteCall[] = [];
  readonly invalidations: string[] = [];
  failReads = false;
  failWrites = false;
  failInvalidations = false;

  async read<T>(key: string): Promise<StoreHit<T> | undefined> {
    this.reads.push(key);
    if (this.failReads) throw new MemcacheTimeoutError("fake store: read timed out");
    if (!this.entries.has(key)) return undefined;
    return { value: this.entries.get(key) as T, fallback: this.fallbackKeys.has(key) };
  }

  async write(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    this.writes.push({ key, value, ttlSeconds });
    if (this.failWrites) throw new MemcacheTimeoutError("fake store: write timed out");
    this.entries.set(key, value);
  }

  async invalidate(key: string): Promise<void> {
    this.invalidations.push(key);
    if (this.failInvalidations) throw new MemcacheTimeoutError("fake store: delete timed out");
    this.entries.delete(key);
  }

  /** No stampede protection: a hit, or a win whose fill is a write. */
  async readLease<T>(key: string): Promise<LeaseRead<T>> {
    const hit = await this.read<T>(key);
    if (hit !== undefined) return { status: "hit", stale: false, ...hit };
    const lease = new Lease<T>(
      key,
      { kind: "plain", cas: undefined },
      {
        fill: async (value, ttlSeconds) => {
          await this.write(key, value, ttlSeconds);
          return true;
        },
        release: async () => {},
      },
    );
    return { status: "win", lease };
  }

  async markStale(): Promise<boolean> {
    return false;
  }
}

/** A CacheAside over a fresh FakeStore, with every event it emits collected. */
function setup(options: { ttlSeconds?: number } = {}) {
  const store = new FakeStore();
  const events: CacheEvent[] = [];
  const cache = new CacheAside(store, { ...options, onEvent: (event) => events.push(event) });
  return { store, events, cache };
}

/** A loader that counts its calls and resolves with `value`. */
function countingLoader<T>(value: T) {
  return vi.fn(async () => value);
}

describe("getOrLoad", () => {
  it("calls the loader once on a miss and writes its value with the TTL given", async () => {
    const { store, cache } = setup();
    const loader = countingLoader({ id: 1, name: "pen" });

    const result = await cache.getOrLoad("product:1", loader, { ttlSeconds: 42 });

    expect(result).toEqual({ status: "MISS", value: { id: 1, name: "pen" } });
    expect(loader).toHaveBeenCalledTimes(1);
    expect(store.writes).toEqual([
      { key: "product:1", value: { id: 1, name: "pen" }, ttlSeconds: 42 },
    ]);
  });

  it("writes with the cache's default TTL when the call gives none", async () => {
    const { store, cache } = setup({ ttlSeconds: 7 });
    await cache.getOrLoad("product:2", countingLoader("v"));
    expect(store.writes).toEqual([{ key: "product:2", value: "v", ttlSeconds: 7 }]);
  });

  it("uses 300 seconds when neither the call nor the cache sets a TTL", async () => {
    const { store, cache } = setup();
    await cache.getOrLoad("product:3", countingLoader("v"));
    expect(store.writes[0]?.ttlSeconds).toBe(300);
  });

  it("serves the second call from the cache without calling the loader", async () => {
    const { store, cache } = setup();
    const loader = countingLoader("fresh");

    await cache.getOrLoad("k", loader, { ttlSeconds: 60 });
    const second = await cache.getOrLoad("k", loader, { ttlSeconds: 60 });

    expect(second).toEqual({ status: "HIT", value: "fresh" });
    expect(loader).toHaveBeenCalledTimes(1);
    expect(store.writes).toHaveLength(1);
  });

  it("returns the loader's value as BYPASS and writes nothing when the store cannot be read", async () => {
    const { store, cache } = setup();
    store.failReads = true;
    const loader = countingLoader("from origin");

    const result = await cache.getOrLoad("k", loader);

    expect(result).toEqual({ status: "BYPASS", value: "from origin" });
    expect(loader).toHaveBeenCalledTimes(1);
    expect(store.reads).toEqual(["k"]);
    expect(store.writes).toEqual([]);
  });

  it("still returns the value when the write fails, and reports write-error", async () => {
    const { store, events, cache } = setup();
    store.failWrites = true;

    const result = await cache.getOrLoad("k", countingLoader("value"));

    expect(result).toEqual({ status: "MISS", value: "value" });
    expect(store.writes).toHaveLength(1); // the write was attempted
    const writeError = events.find((event) => event.type === "write-error");
    expect(writeError).toMatchObject({ key: "k" });
    expect(writeError?.error).toBeInstanceOf(MemcacheTimeoutError);
  });

  it("does not write a value that shouldCache refuses", async () => {
    const { store, cache } = setup();
    const shouldCache = vi.fn((value: { status: number }) => value.status === 200);

    const result = await cache.getOrLoad("k", countingLoader({ status: 404 }), { shouldCache });

    expect(result).toEqual({ status: "MISS", value: { status: 404 } });
    expect(shouldCache).toHaveBeenCalledWith({ status: 404 });
    expect(store.writes).toEqual([]);
  });

  it("writes a value that shouldCache accepts", async () => {
    const { store, cache } = setup();
    await cache.getOrLoad("k", countingLoader({ status: 200 }), {
      shouldCache: (value) => value.status === 200,
    });
    expect(store.writes.map((w) => w.value)).toEqual([{ status: 200 }]);
  });

  it("reports HIT-FALLBACK for a value the store found in the old cluster", async () => {
    const { store, events, cache } = setup();
    store.entries.set("k", "old copy");
    store.fallbackKeys.add("k");
    const loader = countingLoader("origin");

    const result = await cache.getOrLoad("k", loader);

    expect(result).toEqual({ status: "HIT-FALLBACK", value: "old copy" });
    expect(loader).not.toHaveBeenCalled();
    expect(store.writes).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(["hit-fallback"]);
  });

  it("serves falsy cached values (0, empty string, false, null) as hits", async () => {
    const { store, cache } = setup();
    for (const [key, value] of [
      ["zero", 0],
      ["empty", ""],
      ["false", false],
      ["null", null],
    ] as const) {
      store.entries.set(key, value);
      const loader = countingLoader("origin");
      expect(await cache.getOrLoad(key, loader)).toEqual({ status: "HIT", value });
      expect(loader).not.toHaveBeenCalled();
    }
  });

  it("propagates the loader's error unchanged and writes nothing", async () => {
    const { store, cache } = setup();
    const failure = new Error("origin down");

    await expect(
      cache.getOrLoad("k", async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(store.writes).toEqual([]);
    expect(store.entries.has("k")).toBe(false);
  });

  it("propagates the loader's error unchanged when the cache is also down", async () => {
    const { store, cache } = setup();
    store.failReads = true;
    const failure = new RangeError("bad id");

    await expect(
      cache.getOrLoad("k", async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(store.writes).toEqual([]);
  });
});

describe("onEvent", () => {
  it("reports miss then write, then hit, each with the key and a duration >= 0", async () => {
    const { events, cache } = setup();

    await cache.getOrLoad("k", countingLoader("v"));
    await cache.getOrLoad("k", countingLoader("v"));

    expect(events.map((e) => [e.type, e.key])).toEqual([
      ["miss", "k"],
      ["write", "k"],
      ["hit", "k"],
    ]);
    for (const event of events) {
      expect(event.durationMs).toBeGreaterThanOrEqual(0);
      expect(event.error).toBeUndefined();
    }
  });

  it("reports bypass with the store's error and a duration >= 0", async () => {
    const { store, events, cache } = setup();
    store.failReads = true;

    await cache.getOrLoad("k", countingLoader("v"));

    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "bypass", key: "k" });
    expect(events[0]?.error).toBeInstanceOf(MemcacheTimeoutError);
    expect(events[0]?.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("does not break a call when the observer throws", async () => {
    const store = new FakeStore();
    const onEvent = vi.fn((_event: CacheEvent): void => {
      throw new Error("observer bug");
    });
    const cache = new CacheAside(store, { onEvent });

    await expect(cache.getOrLoad("k", countingLoader("v"))).resolves.toEqual({
      status: "MISS",
      value: "v",
    });
    await expect(cache.getOrLoad("k", countingLoader("v"))).resolves.toEqual({
      status: "HIT",
      value: "v",
    });
    await expect(cache.invalidate("k")).resolves.toBe(true);
    expect(onEvent.mock.calls.map(([event]) => event.type)).toEqual([
      "miss",
      "write",
      "hit",
      "invalidate",
    ]);
  });

  it("works without an observer", async () => {
    const cache = new CacheAside(new FakeStore());
    await cache.getOrLoad("k", countingLoader("v"));
    expect(await cache.read("k")).toEqual({ status: "HIT", value: "v" });
  });
});

describe("read, write and invalidate", () => {
  it("read reports MISS, HIT and BYPASS and never throws", async () => {
    const { store, cache } = setup();
    expect(await cache.read("k")).toEqual({ status: "MISS" });
    store.entries.set("k", { a: 1 });
    expect(await cache.read("k")).toEqual({ status: "HIT", value: { a: 1 } });
    store.failReads = true;
    expect(await cache.read("k")).toEqual({ status: "BYPASS" });
  });

  it("write resolves true when stored and false when the store throws", async () => {
    const { store, cache } = setup();
    expect(await cache.write("k", "v", 5)).toBe(true);
    expect(store.entries.get("k")).toBe("v");
    store.failWrites = true;
    expect(await cache.write("k", "w", 5)).toBe(false);
    expect(store.entries.get("k")).toBe("v");
  });

  it("invalidate removes the key and resolves true", async () => {
    const { store, events, cache } = setup();
    store.entries.set("k", "v");

    expect(await cache.invalidate("k")).toBe(true);

    expect(store.entries.has("k")).toBe(false);
    expect(events.map((e) => e.type)).toEqual(["invalidate"]);
  });

  it("invalidate resolves false and emits invalidate-error when the store throws", async () => {
    const { store, events, cache } = setup();
    store.failInvalidations = true;

    expect(await cache.invalidate("k")).toBe(false);

    expect(store.invalidations).toEqual(["k"]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "invalidate-error", key: "k" });
    expect(events[0]?.error).toBeInstanceOf(MemcacheTimeoutError);
    expect(events[0]?.durationMs).toBeGreaterThanOrEqual(0);
  });
});

/**
 * A store whose every read wins a lease (refreshing `stale`, when set) and records what reaches
 * the lease: fills and releases. `failFills` makes the lease's fill throw.
 */
class LeasingStore extends FakeStore {
  readonly leaseCalls: string[] = [];
  stale: unknown;
  failFills = false;

  override async readLease<T>(key: string): Promise<LeaseRead<T>> {
    if (this.failReads) throw new MemcacheTimeoutError("fake store: read timed out");
    const seen = this.stale === undefined ? {} : { stale: this.stale as T };
    const lease = new Lease<T>(
      key,
      { kind: "meta", cas: "1" },
      {
        fill: async (value, ttlSeconds) => {
          this.leaseCalls.push(`fill ${JSON.stringify(value)} ${ttlSeconds}`);
          if (this.failFills) throw new MemcacheTimeoutError("fake store: fill timed out");
          this.entries.set(key, value);
          return true;
        },
        release: async (keepStaleSeconds) => {
          this.leaseCalls.push(`release ${keepStaleSeconds ?? "-"}`);
        },
      },
      seen,
    );
    return { status: "win", lease };
  }
}

function leasing(options: { serveStaleOnError?: boolean; staleSeconds?: number } = {}) {
  const store = new LeasingStore();
  const events: CacheEvent[] = [];
  const cache = new CacheAside(store, { ...options, onEvent: (event) => events.push(event) });
  return { store, events, cache };
}

/** acquire() that must miss: the PendingLoad it hands out. */
async function pendingLoad(cache: CacheAside, key = "k") {
  const acquired = await cache.acquire<string>(key);
  if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);
  return acquired.load;
}

describe("a pending load ends exactly once", () => {
  it("fills through its lease; a later abandon or fail reaches nothing", async () => {
    const { store, cache } = leasing();
    const load = await pendingLoad(cache);

    expect(await load.fill("v", 60)).toBe(true);
    await load.abandon();
    expect(await load.fail(new Error("late"))).toBeUndefined();
    expect(await load.fill("w", 60)).toBe(false);

    expect(load.ended).toBe(true);
    expect(store.leaseCalls).toEqual(['fill "v" 60']);
    expect(store.entries.get("k")).toBe("v");
  });

  it("abandons once; a later fill stores nothing", async () => {
    const { store, cache } = leasing();
    const load = await pendingLoad(cache);

    await load.abandon();
    await load.abandon();
    expect(await load.fill("v", 60)).toBe(false);

    expect(store.leaseCalls).toEqual(["release -"]);
    expect(store.entries.has("k")).toBe(false);
  });

  it("fills with the cache's TTL when the fill gives none", async () => {
    const { store } = leasing();
    const cache = new CacheAside(store, { ttlSeconds: 7 });
    await (await pendingLoad(cache)).fill("v");
    expect(store.leaseCalls).toEqual(['fill "v" 7']);
  });

  it("reports write-error when the fill fails, and the lease is given up once", async () => {
    const { store, events, cache } = leasing();
    store.failFills = true;
    const load = await pendingLoad(cache);

    expect(await load.fill("v", 60)).toBe(false);
    await load.abandon();

    // The lease released itself after the failed fill; abandon() had nothing left to end.
    expect(store.leaseCalls).toEqual(['fill "v" 60', "release -"]);
    expect(events.map((e) => e.type)).toEqual(["miss", "write-error"]);
  });

  it("on a failed refresh keeps the stale value for staleSeconds and returns it to serve", async () => {
    const { store, events, cache } = leasing({ staleSeconds: 45 });
    store.stale = "old";
    const load = await pendingLoad(cache);
    expect(load.stale).toBe("old");

    expect(await load.fail(new Error("origin down"))).toBe("old");
    await load.abandon();

    expect(store.leaseCalls).toEqual(["release 45"]);
    expect(events.map((e) => e.type)).toEqual(["refresh", "stale-on-error"]);
  });

  it("without serveStaleOnError gives the lease up on a failed refresh and serves nothing", async () => {
    const { store, cache } = leasing({ serveStaleOnError: false });
    store.stale = "old";
    const load = await pendingLoad(cache);

    expect(await load.fail(new Error("origin down"))).toBeUndefined();
    expect(store.leaseCalls).toEqual(["release -"]);
  });

  it("writes nothing after a BYPASS", async () => {
    const { store, cache } = leasing();
    store.failReads = true;
    const acquired = await cache.acquire("k");
    expect(acquired.status).toBe("BYPASS");
    if (!("load" in acquired)) throw new Error("expected a load");

    expect(await acquired.load.fill("v", 60)).toBe(false);
    expect(store.writes).toEqual([]);
    expect(store.leaseCalls).toEqual([]);
  });

  it("getOrLoad serves the stale value when the loader fails during a refresh", async () => {
    const { store, cache } = leasing();
    store.stale = "old";
    const result = await cache.getOrLoad("k", async () => {
      throw new Error("origin down");
    });
    expect(result).toEqual({ value: "old", status: "HIT" });
    expect(store.leaseCalls).toEqual(["release 30"]);
  });

  it("getOrLoad gives the lease up when shouldCache refuses the value", async () => {
    const { store, cache } = leasing();
    await cache.getOrLoad("k", async () => "v", { shouldCache: () => false });
    expect(store.leaseCalls).toEqual(["release -"]);
  });
});
