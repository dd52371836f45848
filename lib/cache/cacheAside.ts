// Cache-aside over any CacheStore: read, on a miss load from the origin, write back with a TTL.
// Cache errors never fail the caller: a read error is a BYPASS (served from the origin), a
// write or invalidation error is reported through onEvent and otherwise ignored.
//
// Stampede protection (when the store offers leases, see leases.ts): of many callers that miss
// the same key at once, one wins and loads; the others wait for its value, polling with a short
// backoff, at most maxWaitMs and never past the caller's deadline (a Lambda's remaining time),
// then load themselves. An item marked stale, or close to expiry with recacheSeconds set, is
// served to everyone while the one winner refreshes it; if that refresh fails, the winner is
// served the stale value too (serveStaleOnError).

import type { LeaseOptions } from "./leases.ts";
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
  /** Use the store's leases against stampedes when it has them. Default true. */
  leases: boolean;
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
  leases: true,
  leaseTtlSeconds: 3,
  recacheSeconds: 0,
  maxWaitMs: 2_000,
  serveStaleOnError: true,
  staleSeconds: 30,
};

export interface CacheRead<T> {
  status: CacheStatus;
  /** Present when status is HIT or HIT-FALLBACK. */
  value?: T;
}

/** The right to fill a key, won by acquire(); hand it back through complete() or abandon(). */
export interface Lease<T = unknown> {
  key: string;
  token: string;
  /** The stale value this caller may serve if its load fails. */
  stale?: T;
}

/** What acquire() found: a value to serve, or the go-ahead to load (with a lease, if won). */
export interface Acquired<T> extends CacheRead<T> {
  lease?: Lease<T>;
}

export interface AcquireOptions {
  /** Wait no longer than this many ms from now (e.g. the Lambda's remaining time minus a margin). */
  deadlineMs?: number;
}

export interface LoadOptions<T> extends AcquireOptions {
  ttlSeconds?: number;
  /** Whether a loaded value may be cached (e.g. only 2xx responses). Default: always. */
  shouldCache?: (value: T) => boolean;
}

export class CacheAside {
  readonly store: CacheStore;
  readonly options: CacheAsideOptions;

  constructor(store: CacheStore, options: Partial<CacheAsideOptions> = {}) {
    this.store = store;
    this.options = { ...cacheAsideDefaults, ...options };
    for (const [name, min] of [
      ["ttlSeconds", 0],
      ["leaseTtlSeconds", 1],
      ["recacheSeconds", 0],
      ["staleSeconds", 1],
    ] as const) {
      const value = this.options[name];
      if (!Number.isSafeInteger(value) || value < min) {
        throw new TypeError(
          `CacheAside option ${name} must be a whole number of seconds >= ${min}, got ${value}`,
        );
      }
    }
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
   * Reads `key` with stampede protection: a value to serve (HIT / HIT-FALLBACK), or MISS / BYPASS
   * telling the caller to load — with a lease when it won one. Never throws.
   */
  async acquire<T>(key: string, options: AcquireOptions = {}): Promise<Acquired<T>> {
    const store = this.store;
    if (!this.options.leases || store.readLease === undefined) return this.read<T>(key);
    const started = performance.now();
    const waitMs = Math.min(this.options.maxWaitMs, options.deadlineMs ?? Number.POSITIVE_INFINITY);
    const leaseOptions: LeaseOptions = {
      leaseTtlSeconds: this.options.leaseTtlSeconds,
      recacheSeconds: this.options.recacheSeconds,
    };
    let pauseMs = 5;
    for (;;) {
      let read: Awaited<ReturnType<NonNullable<CacheStore["readLease"]>>>;
      try {
        read = await store.readLease<T>(key, leaseOptions);
      } catch (error) {
        this.emit("bypass", key, started, error);
        return { status: "BYPASS" };
      }
      switch (read.status) {
        case "hit": {
          const status = read.fallback ? "HIT-FALLBACK" : "HIT";
          this.emit(
            read.stale ? "hit-stale" : read.fallback ? "hit-fallback" : "hit",
            key,
            started,
          );
          return { status, value: read.value as T };
        }
        case "win": {
          this.emit(read.stale === undefined ? "miss" : "refresh", key, started);
          const lease: Lease<T> = { key, token: read.token };
          if (read.stale !== undefined) lease.stale = read.stale as T;
          return { status: "MISS", lease };
        }
        case "miss":
          this.emit("miss", key, started);
          return { status: "MISS" };
        case "wait":
          // Someone else is loading. Timeline with a 100 ms origin:
          //   0 ms  A wins, loads        B, C: wait (poll after ~5, 10, 20, 20, 20 ms ...)
          //   100   A fills              B, C: next poll (within ~20 ms) hits
          if (performance.now() - started + pauseMs > waitMs) {
            this.emit("wait-timeout", key, started);
            return { status: "MISS" };
          }
          // Jittered and capped at 20 ms, so waiters neither poll in lockstep nor see the
          // winner's value much later than it lands.
          await sleep(pauseMs * (0.5 + Math.random()));
          pauseMs = Math.min(pauseMs * 2, 20);
      }
    }
  }

  /** Stores a loaded value: through the lease if one was won, else a plain write. Never throws. */
  async complete(
    key: string,
    lease: Lease | undefined,
    value: unknown,
    ttlSeconds = this.options.ttlSeconds,
  ): Promise<boolean> {
    if (lease === undefined || this.store.fill === undefined) {
      return this.write(key, value, ttlSeconds);
    }
    const started = performance.now();
    try {
      const stored = await this.store.fill(key, value, ttlSeconds, lease.token);
      this.emit("write", key, started);
      return stored;
    } catch (error) {
      this.emit("write-error", key, started, error);
      // Nothing was stored (too large, refused, timed out): let the next caller in at once
      // instead of waiting out the lease.
      await this.release(lease);
      return false;
    }
  }

  /**
   * The load failed: gives the lease up (waiters need not wait for its TTL) and returns the stale
   * value to serve instead, when there is one and serveStaleOnError allows. Never throws.
   */
  async abandon<T>(lease: Lease<T> | undefined, error: unknown): Promise<T | undefined> {
    if (lease === undefined) return undefined;
    const started = performance.now();
    if (lease.stale !== undefined && this.options.serveStaleOnError) {
      // Keep the stale item (others go on being served while it lasts) and mark it stale anew,
      // which hands the refresh to the next reader instead of nobody until it expires.
      this.emit("stale-on-error", lease.key, started, error);
      try {
        await this.store.markStale?.(lease.key, this.options.staleSeconds);
      } catch {
        // The stale item still expires on its own.
      }
      return lease.stale;
    }
    await this.release(lease);
    return undefined;
  }

  /** Gives a lease up without a value. Never throws. */
  async release(lease: Lease): Promise<void> {
    try {
      await this.store.release?.(lease.key, lease.token);
    } catch {
      // The lease expires by itself after leaseTtlSeconds.
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
   * Removes `key` from every cluster a reader could see; never throws. False when it failed.
   * With `stale: true` the item is kept for staleSeconds, marked stale: readers are served it
   * while exactly one refreshes it (meta protocol; elsewhere this is a plain delete).
   */
  async invalidate(key: string, options: { stale?: boolean } = {}): Promise<boolean> {
    const started = performance.now();
    try {
      const markedStale =
        options.stale === true &&
        this.store.markStale !== undefined &&
        (await this.store.markStale(key, this.options.staleSeconds));
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
    options: LoadOptions<T> = {},
  ): Promise<{ value: T; status: CacheStatus }> {
    const acquired = await this.acquire<T>(key, options);
    if (acquired.status === "HIT" || acquired.status === "HIT-FALLBACK") {
      return { value: acquired.value as T, status: acquired.status };
    }
    let value: T;
    try {
      value = await loader();
    } catch (error) {
      const stale = await this.abandon(acquired.lease, error);
      if (stale !== undefined) return { value: stale, status: "HIT" };
      throw error;
    }
    // After a BYPASS the cache just failed: skip the write rather than wait on it again.
    if (acquired.status === "MISS") {
      if (options.shouldCache?.(value) ?? true) {
        await this.complete(
          key,
          acquired.lease,
          value,
          options.ttlSeconds ?? this.options.ttlSeconds,
        );
      } else if (acquired.lease !== undefined) {
        await this.release(acquired.lease);
      }
    }
    return { value, status: acquired.status };
  }

  private emit(type: CacheEvent["type"], key: string, started: number, error?: unknown): void {
    const onEvent = this.options.onEvent;
    if (onEvent === undefined) return;
    const event: CacheEvent = { type, key, durationMs: performance.now() - started };
    if (error !== undefined) event.error = error;
    try {
      onEvent(event);
    } catch {
      // An observer must never break a request.
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
