// The narrow interface the cache-aside core needs from "the cache". A single memcached client
// is adapted by clientStore(); the cutover fallback (new cluster, then old) implements the same
// interface, so the core and the middleware never know which one they talk to. Every store has
// leases: the "off" mode is an implementation like the others (plainLeases), not a missing one.

import type { MemcacheClient } from "../memcache/client.ts";
import { checkOptions, countRule, type OptionRules, oneOfRule } from "../memcache/options.ts";
import { DEFAULT_INVALIDATE_ATTEMPTS, deletePart, invalidateEverywhere } from "./invalidation.ts";
import {
  LEASE_MODES,
  type LeaseMode,
  type LeaseOptions,
  type LeaseRead,
  leaseResolver,
} from "./leases.ts";

export interface StoreHit<T = unknown> {
  value: T;
  /** True when the value came from the old cluster during a cutover (x-cache: HIT-FALLBACK). */
  fallback: boolean;
}

/** Every method may throw (a MemcacheError); the cache-aside core turns that into a miss. */
export interface CacheStore {
  read<T = unknown>(key: string): Promise<StoreHit<T> | undefined>;
  write(key: string, value: unknown, ttlSeconds: number): Promise<void>;
  /**
   * Removes the key everywhere a reader could find it; resolves only when every cluster
   * acknowledged it, else throws MemcacheIncompleteInvalidationError (see invalidation.ts).
   */
  invalidate(key: string): Promise<void>;
  /**
   * Reads with stampede protection (see leases.ts): a hit, a won Lease (load, then end it), or
   * wait. A store without protection answers every miss with a win.
   */
  readLease<T = unknown>(key: string, options: LeaseOptions): Promise<LeaseRead<T>>;
  /** Marks the key stale (served while one reader refreshes it); false when not possible. */
  markStale(key: string, staleSeconds: number): Promise<boolean>;
}

export interface ClientStoreOptions {
  /**
   * Lease implementation: "auto" (meta protocol where the server has it, else lock), "meta",
   * "lock", or "off" (no stampede protection). Default "auto".
   */
  leaseMode: LeaseMode;
  /** Attempts of an invalidation's delete before it is reported incomplete. Default 3. */
  invalidateAttempts: number;
}

export const clientStoreDefaults: ClientStoreOptions = {
  leaseMode: "auto",
  invalidateAttempts: DEFAULT_INVALIDATE_ATTEMPTS,
};

export const leaseModeRule = oneOfRule(...LEASE_MODES);

export const invalidateAttemptsRule = countRule(1, 100);

const clientStoreRules: OptionRules<ClientStoreOptions> = {
  leaseMode: leaseModeRule,
  invalidateAttempts: invalidateAttemptsRule,
};

/** A CacheStore over one memcached client (one cluster). */
export function clientStore(
  client: MemcacheClient,
  options: Partial<ClientStoreOptions> = {},
): CacheStore {
  const checked = checkOptions("clientStore", options, clientStoreRules, clientStoreDefaults);
  const { invalidateAttempts } = checked;
  const leases = leaseResolver(client, checked.leaseMode);
  return {
    async read<T>(key: string): Promise<StoreHit<T> | undefined> {
      const value = await client.get<T>(key);
      return value === undefined ? undefined : { value, fallback: false };
    },
    async write(key: string, value: unknown, ttlSeconds: number): Promise<void> {
      await client.set(key, value, { ttlSeconds });
    },
    async invalidate(key: string): Promise<void> {
      await invalidateEverywhere(key, [deletePart(client, key, "cache")], invalidateAttempts);
    },
    async readLease<T>(key: string, leaseOptions: LeaseOptions): Promise<LeaseRead<T>> {
      return (await leases()).readLease<T>(key, leaseOptions);
    },
    async markStale(key: string, staleSeconds: number): Promise<boolean> {
      return (await leases()).markStale(key, staleSeconds);
    },
  };
}
