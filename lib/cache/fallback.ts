// The cutover layer: moving from an old memcached cluster to a new one without a cold cache.
//
//   operation   | new cluster                      | old cluster
//   ------------|----------------------------------|-------------------------------------------
//   read        | first                            | only on a miss or error in new; a hit is
//               |                                  | copied into new with add, keeping its
//               |                                  | remaining TTL where mg ... t reports it
//   write       | yes                              | no
//   invalidate  | yes (a tombstone, see below)     | yes: else a stale copy resurfaces
//   counter     | CAS / incr; seeded once from old | read only
//   errors      | fail open (origin answers)       | never surface; count as a miss
//
// Invalidation leaves a short-lived tombstone in new instead of deleting there. It closes the
// race where a reader copies an old value into new just after a writer invalidated it:
//   reader: get new -> miss; get old -> v1 (stale soon)
//   writer: origin := v2; invalidate new + old
//   reader: add new v1  -> with a plain delete this succeeds and v1 lives on in new;
//                          with the tombstone present, add fails and v1 is dropped.
// A reader that finds a tombstone treats it as a miss and does not fall back to old (whatever
// old holds for that key is older than the invalidation). The next cache-aside write (set)
// replaces the tombstone with the fresh value.

import type { CasItem, MemcacheClient } from "../memcache/client.ts";
import { checkOptions, functionRule, type OptionRules, secondsRule } from "../memcache/options.ts";
import type { CounterClient } from "./counters.ts";
import {
  type LeaseMode,
  type LeaseOptions,
  type LeaseRead,
  type Leases,
  leaseResolver,
  TOMBSTONE_FLAGS,
} from "./leases.ts";
import { type CacheStore, leaseModeRule, type StoreHit } from "./store.ts";

const TOMBSTONE = Buffer.from("invalidated");

export interface FallbackOptions {
  /** TTL for values copied from old when old cannot tell the remaining TTL, in seconds. Default 300. */
  copyTtlSeconds: number;
  /** How long an invalidation's tombstone stays in new, in seconds. Default 300. */
  tombstoneSeconds: number;
  /** Called when the old cluster failed (never surfaced otherwise). Default: none. */
  onOldError: ((operation: string, key: string, error: unknown) => void) | undefined;
  /** Stampede leases in the new cluster (see leases.ts and ClientStoreOptions). Default "auto". */
  leaseMode: LeaseMode;
}

export const fallbackDefaults: FallbackOptions = {
  copyTtlSeconds: 300,
  tombstoneSeconds: 300,
  onOldError: undefined,
  leaseMode: "auto",
};

const fallbackRules: OptionRules<FallbackOptions> = {
  copyTtlSeconds: secondsRule(0),
  tombstoneSeconds: secondsRule(1),
  onOldError: functionRule,
  leaseMode: leaseModeRule,
};

interface OldRead {
  value: unknown;
  /** Remaining TTL in seconds (0 = none) when the server reports it, else undefined. */
  ttlSeconds: number | undefined;
}

export class FallbackStore implements CacheStore {
  readonly newClient: MemcacheClient;
  readonly oldClient: MemcacheClient;
  readonly options: FallbackOptions;
  private readonly leases: () => Promise<Leases>;

  constructor(
    newClient: MemcacheClient,
    oldClient: MemcacheClient,
    options: Partial<FallbackOptions> = {},
  ) {
    this.newClient = newClient;
    this.oldClient = oldClient;
    this.options = checkOptions("FallbackStore", options, fallbackRules, fallbackDefaults);
    this.leases = leaseResolver(newClient, this.options.leaseMode);
  }

  async read<T>(key: string): Promise<StoreHit<T> | undefined> {
    let newError: unknown;
    try {
      const item = await this.newClient.gets<T>(key);
      if (item !== undefined) {
        if (item.flags === TOMBSTONE_FLAGS) return undefined; // invalidated: old is stale too
        if (item.value !== undefined) return { value: item.value, fallback: false };
      }
    } catch (error) {
      newError = error;
    }
    const old = await this.readOld(key);
    if (old === undefined) {
      if (newError !== undefined) throw newError; // new failed and old had nothing: BYPASS
      return undefined;
    }
    if (newError === undefined) await this.copyIntoNew(key, old);
    return { value: old.value as T, fallback: true };
  }

  /**
   * Leases live in new. A caller that wins a miss in new looks in old before loading from the
   * origin: an old hit fills new through the lease (TTL kept; the fill is conditional, so a value
   * or tombstone written to new meanwhile wins) and is served as HIT-FALLBACK, so the waiters get
   * it from new. If new fails, old is read instead (fail open).
   */
  async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
    let read: LeaseRead<T>;
    try {
      read = await (await this.leases()).readLease<T>(key, options);
    } catch (error) {
      const old = await this.readOld(key);
      if (old === undefined) throw error;
      return { status: "hit", value: old.value as T, stale: false, fallback: true };
    }
    if (read.status !== "win" || read.lease.stale !== undefined || read.lease.tombstone) {
      return read;
    }
    const old = await this.readOld(key);
    if (old === undefined) return read;
    try {
      await read.lease.fill(old.value, old.ttlSeconds ?? this.options.copyTtlSeconds);
    } catch {
      // Best effort: served either way (the lease gave itself up).
    }
    return { status: "hit", value: old.value as T, stale: false, fallback: true };
  }

  /** Marks stale in new and deletes in old (else old's copy returns once new's stale copy ends). */
  async markStale(key: string, staleSeconds: number): Promise<boolean> {
    const [marked] = await Promise.all([
      this.leases().then((leases) => leases.markStale(key, staleSeconds)),
      this.oldClient.delete(key).catch((error) => this.oldFailed("invalidate", key, error)),
    ]);
    return marked;
  }

  async write(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    await this.newClient.set(key, value, { ttlSeconds });
  }

  /** Tombstone in new, delete in old; a failure in new throws, in old is reported only. */
  async invalidate(key: string): Promise<void> {
    const [inNew] = await Promise.allSettled([
      this.tombstone(key),
      this.oldClient.delete(key).catch((error) => this.oldFailed("invalidate", key, error)),
    ]);
    if (inNew.status === "rejected") throw inNew.reason;
  }

  /**
   * Leaves the tombstone in new. With meta leases it is also marked stale (md I), so of the
   * readers that come next exactly one wins the reload and the rest wait for it.
   */
  private async tombstone(key: string): Promise<void> {
    await this.newClient.set(key, TOMBSTONE, {
      ttlSeconds: this.options.tombstoneSeconds,
      flags: TOMBSTONE_FLAGS,
    });
    const leases = await this.leases();
    await leases.markStale(key, this.options.tombstoneSeconds); // false without I/O for lock
  }

  private async readOld(key: string): Promise<OldRead | undefined> {
    try {
      if (await this.oldClient.hasMeta(key)) {
        const reply = await this.oldClient.metaGet(key, ["v", "f", "t"]);
        const value = this.oldClient.decodeMeta(reply, key);
        if (value === undefined) return undefined;
        const t = Number(reply.flags.t);
        // t is the remaining TTL in seconds, -1 for "no expiry".
        const ttlSeconds = t === -1 ? 0 : Number.isFinite(t) ? Math.max(1, t) : undefined;
        return { value, ttlSeconds };
      }
      const value = await this.oldClient.get(key);
      return value === undefined ? undefined : { value, ttlSeconds: undefined };
    } catch (error) {
      this.oldFailed("read", key, error);
      return undefined;
    }
  }

  /** add, not set: a fresher value written to new meanwhile (or a tombstone) must win. */
  private async copyIntoNew(key: string, old: OldRead): Promise<void> {
    try {
      await this.newClient.add(key, old.value, {
        ttlSeconds: old.ttlSeconds ?? this.options.copyTtlSeconds,
      });
    } catch {
      // Best effort: the value is served either way; the next read tries again.
    }
  }

  private oldFailed(operation: string, key: string, error: unknown): void {
    try {
      this.options.onOldError?.(operation, key, error);
    } catch {
      // An observer must never break a request.
    }
  }
}

/**
 * The counter view during a cutover: counts in new; a counter missing in new continues from
 * old's value, which is read, never written.
 *   - gets: new's item; when new has none, old's item with the CAS token "0" (memcached never
 *     hands out 0), so a read (readCounter) writes nothing, and the cas that follows a
 *     read-modify-write (casUpdate, casIncrement) becomes an add in new: of concurrent updaters
 *     one add wins with old's value + its own step, the others find new's value and go on with
 *     CAS. Old's value is counted once.
 *   - incr/decr: new's; when new has none, old's stored bytes and flags are copied into new with
 *     add (one seeder wins), and the incr is sent again.
 * Counters follow the counter rule (counters.ts): decimal text under any flags, so a counter a
 * Python service kept in old (pymemcache flags 0 or 2, pylibmc 4) continues in new exactly.
 */
export function fallbackCounters(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
): CounterClient {
  const readOld = async <T>(key: string): Promise<CasItem<T> | undefined> => {
    try {
      return await oldClient.gets<T>(key);
    } catch {
      return undefined; // old never surfaces errors
    }
  };
  const seed = async (key: string): Promise<boolean> => {
    const old = await readOld(key);
    if (old === undefined) return false;
    // The bytes as old holds them (a copy: they may share the socket's read buffer).
    await newClient.add(key, Buffer.from(old.data), { flags: old.flags }); // false: another seeder won
    return true;
  };
  return {
    gets: async <T>(key: string) => {
      const item = await newClient.gets<T>(key);
      if (item !== undefined) return item;
      const old = await readOld<T>(key);
      return old === undefined ? undefined : { ...old, cas: NOT_IN_NEW };
    },
    cas: async (key, value, cas, options) => {
      if (cas !== NOT_IN_NEW) return newClient.cas(key, value, cas, options);
      return (await newClient.add(key, value, options)) ? "stored" : "exists";
    },
    add: (key, value, options) => newClient.add(key, value, options),
    incr: async (key, delta) => {
      const value = await newClient.incr(key, delta);
      if (value !== undefined || !(await seed(key))) return value;
      return newClient.incr(key, delta);
    },
    decr: async (key, delta) => {
      const value = await newClient.decr(key, delta);
      if (value !== undefined || !(await seed(key))) return value;
      return newClient.decr(key, delta);
    },
  };
}

/** The CAS token of an item read from old: the counter is not in new yet (see fallbackCounters). */
const NOT_IN_NEW = "0";
