// The narrow interface the cache-aside core needs from "the cache". A single memcached client
// is adapted by clientStore(); the cutover fallback (new cluster, then old) implements the same
// interface, so the core and the middleware never know which one they talk to.

import type { MemcacheClient } from "../memcache/client.ts";

export interface StoreHit<T = unknown> {
  value: T;
  /** True when the value came from the old cluster during a cutover (x-cache: HIT-FALLBACK). */
  fallback: boolean;
}

/** Every method may throw (a MemcacheError); the cache-aside core turns that into a miss. */
export interface CacheStore {
  read<T = unknown>(key: string): Promise<StoreHit<T> | undefined>;
  write(key: string, value: unknown, ttlSeconds: number): Promise<void>;
  /** Removes the key everywhere a reader could find it. */
  invalidate(key: string): Promise<void>;
}

/** A CacheStore over one memcached client (one cluster). */
export function clientStore(client: MemcacheClient): CacheStore {
  return {
    async read<T>(key: string): Promise<StoreHit<T> | undefined> {
      const value = await client.get<T>(key);
      return value === undefined ? undefined : { value, fallback: false };
    },
    async write(key: string, value: unknown, ttlSeconds: number): Promise<void> {
      await client.set(key, value, { ttlSeconds });
    },
    async invalidate(key: string): Promise<void> {
      await client.delete(key);
    },
  };
}
