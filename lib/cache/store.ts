// The narrow interface the cache-aside core needs from "the cache". A single memcached client
// is adapted by clientStore(); the cutover fallback (new cluster, then old) implements the same
// interface, so the core and the middleware never know which one they talk to.

import type { MemcacheClient } from "../memcache/client.ts";
import { type LeaseMode, type LeaseOptions, type LeaseRead, leaseResolver } from "./leases.ts";

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
  /** Stampede protection (see leases.ts); a store without it serves plain read/write. */
  readLease?<T = unknown>(key: string, options: LeaseOptions): Promise<LeaseRead<T>>;
  fill?(key: string, value: unknown, ttlSeconds: number, token: string): Promise<boolean>;
  release?(key: string, token: string): Promise<void>;
  /** Marks the key stale (served while one reader refreshes it); false when not possible. */
  markStale?(key: string, staleSeconds: number): Promise<boolean>;
}

export interface ClientStoreOptions {
  /** Lease implementation: meta protocol where the server has it (auto), lock, or off. */
  leases: LeaseMode;
}

/** A CacheStore over one memcached client (one cluster). */
export function clientStore(
  client: MemcacheClient,
  options: Partial<ClientStoreOptions> = {},
): CacheStore {
  const mode = options.leases ?? "auto";
  const leases = leaseResolver(client, mode);
  const store: CacheStore = {
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
  if (mode === "off") return store;
  store.readLease = async <T>(key: string, leaseOptions: LeaseOptions) =>
    (await leases())!.readLease<T>(key, leaseOptions);
  store.fill = async (key, value, ttlSeconds, token) =>
    (await leases())!.fill(key, value, ttlSeconds, token);
  store.release = async (key, token) => (await leases())!.release(key, token);
  store.markStale = async (key, staleSeconds) => (await leases())!.markStale(key, staleSeconds);
  return store;
}
