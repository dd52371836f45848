// The cutover's "fallback" phase: moving from an old memcached cluster to a new one without a
// cold cache (phases.ts builds the other phases' stores).
//
//   operation   | new cluster                      | old cluster
//   ------------|----------------------------------|-------------------------------------------
//   read        | first                            | only on a miss or error in new; a hit is
//               |                                  | copied into new with add, keeping its
//               |                                  | remaining TTL where mg ... t reports it
//   write       | yes                              | no
//   invalidate  | yes (a tombstone, see below)     | yes: else a stale copy resurfaces
//   counter     | see cutoverCounters.ts           |
//   errors      | fail open (origin answers)       | reads: never surface, count as a miss;
//               |                                  | invalidations: incomplete (reported)
//
// Invalidation leaves a tombstone in new instead of deleting there. It closes the race where a
// reader copies an old value into new just after a writer invalidated it:
//   reader: get new -> miss; get old -> v1 (stale soon)
//   writer: origin := v2; invalidate new + old
//   reader: add new v1  -> with a plain delete this succeeds and v1 lives on in new;
//                          with the tombstone present, add fails and v1 is dropped.
// A reader that finds a tombstone treats it as a miss and does not fall back to old (whatever
// old holds for that key is older than the invalidation); it lives tombstoneSeconds, longer
// than any copy old can still hold (phases.ts). The next fill replaces it with the fresh value.
// An invalidation is complete only when both clusters acknowledged it (invalidation.ts): a
// version in phase "prepare" beside this one still reads old.

import type { MemcacheClient } from "../memcache/client.ts";
import { checkOptions, functionRule, type OptionRules, secondsRule } from "../memcache/options.ts";
import { ttlLeft } from "../memcache/protocol.ts";
import {
  DEFAULT_INVALIDATE_ATTEMPTS,
  deletePart,
  invalidateEverywhere,
  tombstonePart,
  tombstoneSecondsFor,
} from "./invalidation.ts";
import {
  isVivifiedPlaceholder,
  type LeaseMode,
  type LeaseOptions,
  type LeaseRead,
  type Leases,
  leaseResolver,
  TOMBSTONE_FLAGS,
} from "./leases.ts";
import { type CacheStore, invalidateAttemptsRule, leaseModeRule, type StoreHit } from "./store.ts";

export interface FallbackOptions {
  /** TTL for values copied from old when old cannot tell the remaining TTL, in seconds. Default 300. */
  copyTtlSeconds: number;
  /**
   * How long an invalidation's tombstone stays in new, in seconds (0: no expiry). It must outlive
   * every copy old can still hold: longer than the longest TTL any version of the app writes
   * (tombstoneSecondsFor). Default 310 (CacheAside's default TTL, 300, plus 10).
   */
  tombstoneSeconds: number;
  /** Called when a read of the old cluster failed (never surfaced otherwise). Default: none. */
  onOldError: ((operation: string, key: string, error: unknown) => void) | undefined;
  /** Stampede leases in the new cluster (see leases.ts and ClientStoreOptions). Default "auto". */
  leaseMode: LeaseMode;
  /** Attempts of each cluster's part of an invalidation before it is incomplete. Default 3. */
  invalidateAttempts: number;
}

export const fallbackDefaults: FallbackOptions = {
  copyTtlSeconds: 300,
  tombstoneSeconds: tombstoneSecondsFor(300),
  onOldError: undefined,
  leaseMode: "auto",
  invalidateAttempts: DEFAULT_INVALIDATE_ATTEMPTS,
};

const fallbackRules: OptionRules<FallbackOptions> = {
  copyTtlSeconds: secondsRule(0),
  tombstoneSeconds: secondsRule(0),
  onOldError: functionRule,
  leaseMode: leaseModeRule,
  invalidateAttempts: invalidateAttemptsRule,
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
      if (old === undefined || !(options.accept?.(old.value) ?? true)) throw error;
      return { status: "hit", value: old.value as T, stale: false, fallback: true };
    }
    if (read.status !== "win" || read.lease.stale !== undefined || read.lease.tombstone) {
      return read;
    }
    const old = await this.readOld(key);
    if (old === undefined || !(options.accept?.(old.value) ?? true)) return read;
    try {
      await read.lease.fill(old.value, old.ttlSeconds ?? this.options.copyTtlSeconds);
    } catch {
      // Best effort: served either way (the lease gave itself up).
    }
    return { status: "hit", value: old.value as T, stale: false, fallback: true };
  }

  /**
   * Marks stale in new and deletes in old (else old's copy returns once new's stale copy ends).
   * False when either failed: CacheAside then runs the full invalidation, which reports itself.
   */
  async markStale(key: string, staleSeconds: number): Promise<boolean> {
    const [marked, deleted] = await Promise.all([
      this.leases().then((leases) => leases.markStale(key, staleSeconds)),
      invalidateEverywhere(key, [deletePart(this.oldClient, key, "old")], this.attempts).then(
        () => true,
        () => false,
      ),
    ]);
    return marked && deleted;
  }

  async write(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    await this.newClient.set(key, value, { ttlSeconds });
  }

  /** Tombstone in new, delete in old; complete only when both acknowledged (invalidation.ts). */
  async invalidate(key: string): Promise<void> {
    await invalidateEverywhere(
      key,
      [
        tombstonePart(this.newClient, key, this.options.tombstoneSeconds, this.leases),
        deletePart(this.oldClient, key, "old"),
      ],
      this.attempts,
    );
  }

  private get attempts(): number {
    return this.options.invalidateAttempts;
  }

  private async readOld(key: string): Promise<OldRead | undefined> {
    try {
      if (await this.oldClient.hasMeta(key)) {
        const reply = await this.oldClient.metaGet(key, ["v", "f", "t"]);
        // Not values to serve or copy: another version's load in progress in old (a `prepare`
        // reader's meta lease), or an item marked stale there (its refresh is due: copied into
        // new it would be served as fresh).
        if (isVivifiedPlaceholder(reply) || "X" in reply.flags) return undefined;
        const value = this.oldClient.decodeMeta(reply, key);
        if (value === undefined) return undefined;
        return { value, ttlSeconds: ttlLeft(reply.flags.t) };
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
