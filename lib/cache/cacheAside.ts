// Cache-aside over any CacheStore: read, on a miss load from the origin, write back with a TTL.
// Cache errors never fail the caller: a read error is a BYPASS (served from the origin), a
// write or invalidation error is reported through onEvent and otherwise ignored.

import type { CacheStore } from "./store.ts";

/** How a request was served, as the x-cache header reports it. */
export type CacheStatus = "HIT" | "HIT-FALLBACK" | "MISS" | "BYPASS";

export interface CacheEvent {
  type:
    | "hit"
    | "hit-fallback"
    | "miss"
    | "bypass"
    | "write"
    | "write-error"
    | "invalidate"
    | "invalidate-error";
  key: string;
  /** Time spent on the cache operation, in milliseconds. */
  durationMs: number;
  error?: unknown;
}

export interface CacheAsideOptions {
  /** Default TTL for written values, in seconds. Default 300. */
  ttlSeconds: number;
  /** Observability hook: called for every cache outcome. Must not throw. Default: none. */
  onEvent: ((event: CacheEvent) => void) | undefined;
}

export const cacheAsideDefaults: CacheAsideOptions = {
  ttlSeconds: 300,
  onEvent: undefined,
};

export interface CacheRead<T> {
  status: CacheStatus;
  /** Present when status is HIT or HIT-FALLBACK. */
  value?: T;
}

export interface LoadOptions<T> {
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
  }

  /** Reads `key`; never throws: a cache failure reads as BYPASS. */
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

  /** Removes `key` from every cluster a reader could see; never throws. False when it failed. */
  async invalidate(key: string): Promise<boolean> {
    const started = performance.now();
    try {
      await this.store.invalidate(key);
      this.emit("invalidate", key, started);
      return true;
    } catch (error) {
      this.emit("invalidate-error", key, started, error);
      return false;
    }
  }

  /**
   * The value for `key`: from the cache, or from `loader` (then written back unless
   * shouldCache says no, or the cache is unavailable). Loader errors propagate unchanged.
   */
  async getOrLoad<T>(
    key: string,
    loader: () => Promise<T>,
    options: LoadOptions<T> = {},
  ): Promise<{ value: T; status: CacheStatus }> {
    const cached = await this.read<T>(key);
    if (cached.status === "HIT" || cached.status === "HIT-FALLBACK") {
      return { value: cached.value as T, status: cached.status };
    }
    const value = await loader();
    // After a BYPASS the cache just failed: skip the write rather than wait on it again.
    if (cached.status === "MISS" && (options.shouldCache?.(value) ?? true)) {
      await this.write(key, value, options.ttlSeconds ?? this.options.ttlSeconds);
    }
    return { value, status: cached.status };
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
