// Cache-aside over any CacheStore: read, on a miss load from the origin, write back with a TTL.
// Cache errors never fail the caller: a read error is a BYPASS (served from the origin), a
// write or invalidation error is reported through onEvent and otherwise ignored.
//
// Stampede protection (the store's leases, see leases.ts): of many callers that miss the same
// key at once, one wins and loads; the others wait for its value, polling with a short backoff,
// at most maxWaitMs and never past the caller's deadline (e.g. the Lambda's end), then load
// themselves. An item marked stale, or close to expiry with recacheSeconds set, is served to
// everyone while the one winner refreshes it; if that refresh fails, the winner is served the
// stale value too (serveStaleOnError).
//
// A miss hands the caller a PendingLoad: the one object that owns the lease won (if any) until
// it ends, exactly once — fill(value), abandon(), or fail(error) (Powertools' idempotency
// handler owns its in-progress record the same way, from before to after/onError).

import {
  booleanRule,
  checkOptions,
  functionRule,
  msRule,
  numberRule,
  type OptionRules,
  secondsRule,
} from "../memcache/options.ts";
import type { Lease, LeaseOptions, LeaseRead } from "./leases.ts";
import type { CacheStore } from "./store.ts";

/** How a request was served, as the x-cache header reports it. */
export type CacheStatus = "HIT" | "HIT-FALLBACK" | "MISS" | "BYPASS";

export interface CacheEvent {
  type:
    | "hit"
    | "hit-fallback"
    | "hit-stale"
    | "miss"
    | "refresh"
    | "wait-timeout"
    | "stale-on-error"
    | "bypass"
    | "write"
    | "write-error"
    | "invalidate"
    | "invalidate-error";
  key: string;
  /** Time spent on the cache operation (including any wait for another caller), in ms. */
  durationMs: number;
  error?: unknown;
}

export interface CacheAsideOptions {
  /** Default TTL for written values, in seconds. Default 300. */
  ttlSeconds: number;
  /** Observability hook: called for every cache outcome. Must not throw. Default: none. */
  onEvent: ((event: CacheEvent) => void) | undefined;
  /** How long a winner may take to fill before another caller may win, in seconds. Default 3. */
  leaseTtlSeconds: number;
  /** Early refresh when an item has fewer seconds left than this (meta protocol). 0 = off. Default 0. */
  recacheSeconds: number;
  /** Longest a caller waits for another caller's load, in ms. Default 2,000. */
  maxWaitMs: number;
  /** When a refresh of a stale value fails, serve the stale value instead of failing. Default true. */
  serveStaleOnError: boolean;
  /** How long invalidate(key, { stale: true }) keeps serving the old value, in seconds. Default 30. */
  staleSeconds: number;
}

export const cacheAsideDefaults: CacheAsideOptions = {
  ttlSeconds: 300,
  onEvent: undefined,
  leaseTtlSeconds: 3,
  recacheSeconds: 0,
  maxWaitMs: 2_000,
  serveStaleOnError: true,
  staleSeconds: 30,
};

const cacheAsideRules: OptionRules<CacheAsideOptions> = {
  ttlSeconds: secondsRule(0),
  onEvent: functionRule,
  leaseTtlSeconds: secondsRule(1),
  recacheSeconds: secondsRule(0),
  maxWaitMs: msRule(0),
  serveStaleOnError: booleanRule,
  staleSeconds: secondsRule(1),
};

export interface CacheRead<T> {
  status: CacheStatus;
  /** Present when status is HIT or HIT-FALLBACK. */
  value?: T;
}

/** What acquire() found: a value to serve, or a load to do (and end: see PendingLoad). */
export type Acquired<T> =
  | { status: "HIT" | "HIT-FALLBACK"; value: T }
  | { status: "MISS" | "BYPASS"; load: PendingLoad<T> };

export interface AcquireOptions {
  /**
   * Stop waiting for another caller's load at this time (ms since the epoch, as Date.now()),
   * e.g. the Lambda's end minus a margin. Default: only maxWaitMs bounds the wait.
   */
  deadline?: number;
  /**
   * Whether a cached value is usable (e.g. has the shape the caller stores). One that is not
   * counts as a miss, and the load's fill overwrites it. Default: every value is.
   */
  accept?: (value: unknown) => boolean;
}

export interface LoadOptions<T> extends AcquireOptions {
  /** TTL of the loaded value, in seconds. Default: the cache's ttlSeconds. */
  ttlSeconds?: number;
  /** Whether a loaded value may be cached (e.g. only 2xx responses). Default: always. */
  shouldCache?: (value: T) => boolean;
}

const deadlineRule = numberRule(0, Number.MAX_SAFE_INTEGER, "ms since the epoch");
const acquireDefaults: AcquireOptions = { deadline: undefined, accept: undefined };
const acquireRules: OptionRules<AcquireOptions> = { deadline: deadlineRule, accept: functionRule };
const loadDefaults: LoadOptions<unknown> = {
  ...acquireDefaults,
  ttlSeconds: undefined,
  shouldCache: undefined,
};
const loadRules: OptionRules<LoadOptions<unknown>> = {
  ...acquireRules,
  ttlSeconds: secondsRule(0),
  shouldCache: functionRule,
};
const invalidateDefaults: { stale?: boolean } = { stale: false };
const invalidateRules: OptionRules<{ stale?: boolean }> = { stale: booleanRule };
const NO_OPTIONS = {};

export class CacheAside {
  readonly store: CacheStore;
  readonly options: CacheAsideOptions;

  constructor(store: CacheStore, options: Partial<CacheAsideOptions> = {}) {
    this.store = store;
    this.options = checkOptions("CacheAside", options, cacheAsideRules, cacheAsideDefaults);
  }

  /** Reads `key` without leases; never throws: a cache failure reads as BYPASS. */
  async read<T>(key: string): Promise<CacheRead<T>> {
    const started = performance.now();
    try {
      const hit = await this.store.read<T>(key);
      if (hit === undefined) {
        this.emit("miss", key, started);
        return { status: "MISS" };
      }
      this.emit(hit.fallback ? "hit-fallback" : "hit", key, started);
      return { status: hit.fallback ? "HIT-FALLBACK" : "HIT", value: hit.value };
    } catch (error) {
      this.emit("bypass", key, started, error);
      return { status: "BYPASS" };
    }
  }

  /**
   * Reads `key` with stampede protection: a value to serve (HIT / HIT-FALLBACK), or MISS /
   * BYPASS with the load to do — which the caller must end (see PendingLoad). Never throws on a
   * cache failure.
   */
  async acquire<T>(key: string, options: AcquireOptions = NO_OPTIONS): Promise<Acquired<T>> {
    const checked =
      options === NO_OPTIONS
        ? options
        : checkOptions("acquire", options, acquireRules, acquireDefaults);
    return this.acquireBy(key, checked);
  }

  private async acquireBy<T>(key: string, options: AcquireOptions): Promise<Acquired<T>> {
    const { deadline, accept } = options;
    const started = performance.now();
    const waitMs = Math.min(
      this.options.maxWaitMs,
      deadline === undefined ? Number.POSITIVE_INFINITY : deadline - Date.now(),
    );
    const leaseOptions: LeaseOptions = {
      leaseTtlSeconds: this.options.leaseTtlSeconds,
      recacheSeconds: this.options.recacheSeconds,
      accept,
    };
    let pauseMs = 5;
    for (;;) {
      let read: LeaseRead<T>;
      try {
        read = await this.store.readLease<T>(key, leaseOptions);
      } catch (error) {
        this.emit("bypass", key, started, error);
        return { status: "BYPASS", load: this.pending(key, "BYPASS", undefined) };
      }
      switch (read.status) {
        case "hit": {
          const status = read.fallback ? "HIT-FALLBACK" : "HIT";
          this.emit(
            read.stale ? "hit-stale" : read.fallback ? "hit-fallback" : "hit",
            key,
            started,
          );
          return { status, value: read.value };
        }
        case "win":
          this.emit(read.lease.stale === undefined ? "miss" : "refresh", key, started);
          return { status: "MISS", load: this.pending(key, "MISS", read.lease) };
        case "wait":
          // Someone else is loading. Timeline with a 100 ms origin:
          //   0 ms  A wins, loads        B, C: wait (poll after ~5, 10, 20, 20, 20 ms ...)
          //   100   A fills              B, C: next poll (within ~20 ms) hits
          if (performance.now() - started + pauseMs > waitMs) {
            // Load without the lease: the fill is conditional on what this read saw, so it
            // loses against the other caller's fill and against an invalidation made since.
            this.emit("wait-timeout", key, started);
            return { status: "MISS", load: this.pending(key, "MISS", read.giveUp) };
          }
          // Jittered and capped at 20 ms, so waiters neither poll in lockstep nor see the
          // winner's value much later than it lands.
          await sleep(pauseMs * (0.5 + Math.random()));
          pauseMs = Math.min(pauseMs * 2, 20);
      }
    }
  }

  /** Writes `value` under `key`; never throws. Resolves false when the write failed. */
  async write(key: string, value: unknown, ttlSeconds = this.options.ttlSeconds): Promise<boolean> {
    const started = performance.now();
    try {
      await this.store.write(key, value, ttlSeconds);
      this.emit("write", key, started);
      return true;
    } catch (error) {
      this.emit("write-error", key, started, error);
      return false;
    }
  }

  /**
   * Removes `key` from every cluster a reader could find it in; never throws. True when the
   * invalidation is complete: every such cluster acknowledged it (after the store's retries), so
   * no read that starts now returns the value from before it. False when it is incomplete (a
   * cluster failed): readers may get the older value until it expires there; the
   * `invalidate-error` event carries a MemcacheIncompleteInvalidationError naming the clusters.
   * With `stale: true` the item is kept for staleSeconds, marked stale: readers are served it
   * while exactly one refreshes it (meta protocol, where the store supports it; elsewhere this is
   * the plain invalidation) — the old value is served on purpose then, outside the rule above.
   */
  async invalidate(key: string, options: { stale?: boolean } = NO_OPTIONS): Promise<boolean> {
    const { stale } = checkOptions("invalidate", options, invalidateRules, invalidateDefaults);
    const started = performance.now();
    try {
      const markedStale =
        stale === true && (await this.store.markStale(key, this.options.staleSeconds));
      if (!markedStale) await this.store.invalidate(key);
      this.emit("invalidate", key, started);
      return true;
    } catch (error) {
      this.emit("invalidate-error", key, started, error);
      return false;
    }
  }

  /**
   * The value for `key`: from the cache, or from `loader` (then written back unless
   * shouldCache says no, or the cache is unavailable). Loader errors propagate unchanged, unless
   * a stale value may be served instead.
   */
  async getOrLoad<T>(
    key: string,
    loader: () => Promise<T>,
    options: LoadOptions<T> = NO_OPTIONS,
  ): Promise<{ value: T; status: CacheStatus }> {
    const checked =
      options === NO_OPTIONS
        ? options
        : checkOptions("getOrLoad", options, loadRules, loadDefaults);
    const { ttlSeconds, shouldCache } = checked;
    const acquired = await this.acquireBy<T>(key, checked);
    if (!("load" in acquired)) return { value: acquired.value, status: acquired.status };
    const load = acquired.load;
    let value: T;
    try {
      value = await loader();
    } catch (error) {
      const stale = await load.fail(error);
      if (stale !== undefined) return { value: stale, status: "HIT" };
      throw error;
    }
    // After a BYPASS the cache just failed: skip the write rather than wait on it again.
    const cacheable =
      load.status === "MISS" &&
      ((shouldCache as ((value: T) => boolean) | undefined)?.(value) ?? true);
    if (cacheable) await load.fill(value, ttlSeconds);
    else await load.abandon();
    return { value, status: load.status };
  }

  private pending<T>(
    key: string,
    status: "MISS" | "BYPASS",
    lease: Lease<T> | undefined,
  ): PendingLoad<T> {
    return new PendingLoad(key, status, lease, this.options);
  }

  private emit(type: CacheEvent["type"], key: string, started: number, error?: unknown): void {
    emitEvent(this.options.onEvent, type, key, started, error);
  }
}

/**
 * The load a caller owes after a miss. It owns the lease the caller won (if any) and ends
 * exactly once, by one of:
 *   fill(value)   store the loaded value (through the lease: it loses against an invalidation
 *                 made meanwhile, and against a fresher value); after a BYPASS nothing is
 *                 written (the cache just failed)
 *   abandon()     the loaded value is not to be cached: give the lease up for the next reader
 *   fail(error)   the load failed: give the lease up, or, when this caller was refreshing a stale
 *                 value and serveStaleOnError allows, keep that value served (marked stale anew,
 *                 so the next reader retries the refresh) and return it to serve now
 * The first ending is the only one that reaches the cache; later calls resolve false/undefined
 * and send nothing. None of them throws: cache failures become events.
 */
export class PendingLoad<T> {
  readonly key: string;
  readonly status: "MISS" | "BYPASS";
  #lease: Lease<T> | undefined;
  #ended = false;
  readonly #options: CacheAsideOptions;

  constructor(
    key: string,
    status: "MISS" | "BYPASS",
    lease: Lease<T> | undefined,
    options: CacheAsideOptions,
  ) {
    this.key = key;
    this.status = status;
    this.#lease = lease;
    this.#options = options;
  }

  /** The value being refreshed, when this load refreshes a stale one. */
  get stale(): T | undefined {
    return this.#lease?.stale;
  }

  /** True once fill(), abandon() or fail() was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Stores the loaded value. Resolves true when stored; false otherwise (or already ended). */
  async fill(value: T, ttlSeconds: number = this.#options.ttlSeconds): Promise<boolean> {
    const lease = this.#end();
    if (lease === false || this.status === "BYPASS") return false;
    const started = performance.now();
    // A load without a lease (none here: a MISS always carries one) is never written with a
    // plain set: that could put an older value over an invalidation made during the load.
    if (lease === undefined) return false;
    try {
      const stored = await lease.fill(value, ttlSeconds);
      this.#emit("write", started);
      return stored;
    } catch (error) {
      this.#emit("write-error", started, error);
      return false;
    }
  }

  /** Gives the lease up without a value (the loaded value is not to be cached). */
  async abandon(): Promise<void> {
    const lease = this.#end();
    if (lease === false) return;
    await releaseQuietly(lease);
  }

  /**
   * The load failed: gives the lease up and returns undefined, or returns the stale value to
   * serve instead (see the class comment).
   */
  async fail(error: unknown): Promise<T | undefined> {
    const lease = this.#end();
    if (lease === false) return undefined;
    const stale = lease?.stale;
    if (stale === undefined || !this.#options.serveStaleOnError) {
      await releaseQuietly(lease);
      return undefined;
    }
    this.#emit("stale-on-error", performance.now(), error);
    await releaseQuietly(lease, this.#options.staleSeconds);
    return stale;
  }

  /** Ends the load: its lease (undefined when none was won), or false when already ended. */
  #end(): Lease<T> | undefined | false {
    if (this.#ended) return false;
    this.#ended = true;
    const lease = this.#lease;
    this.#lease = undefined;
    return lease;
  }

  #emit(type: CacheEvent["type"], started: number, error?: unknown): void {
    emitEvent(this.#options.onEvent, type, this.key, started, error);
  }
}

async function releaseQuietly(lease: Lease | undefined, keepStaleSeconds?: number): Promise<void> {
  try {
    await lease?.release(keepStaleSeconds === undefined ? {} : { keepStaleSeconds });
  } catch {
    // The lease expires by itself after leaseTtlSeconds (a stale item after its own TTL).
  }
}

function emitEvent(
  onEvent: CacheAsideOptions["onEvent"],
  type: CacheEvent["type"],
  key: string,
  started: number,
  error?: unknown,
): void {
  if (onEvent === undefined) return;
  const event: CacheEvent = { type, key, durationMs: performance.now() - started };
  if (error !== undefined) event.error = error;
  try {
    onEvent(event);
  } catch {
    // An observer must never break a request.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
