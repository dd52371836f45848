// The cache of one deployed function, built from its configuration (config.ts) for its cutover
// phase: the clients, the store CacheAside reads and writes through, and the counter view. Every
// user gets the same thing the reference app gets (functions/shared/cache.ts calls this).
//
//   phase     | store: reads, fills            | invalidation (all parts acknowledged,  | counters
//             |                                | else incomplete: invalidation.ts)      |
//   ----------|--------------------------------|----------------------------------------|-------------------
//   single    | the one cluster                | delete                                 | the one cluster
//   prepare   | old                            | delete in old + tombstone in new       | prepareCounters
//   fallback  | new, old on a miss (copied)    | tombstone in new + delete in old       | movingCounters
//   new       | new                            | tombstone in new (+ delete in old      | movingCounters
//             |                                | while it is configured)                | (new only, once
//             |                                |                                        | old is removed)
//
// Why each is safe beside its neighbours (Lambda shifts traffic between versions gradually):
// - single + prepare: both read and fill old; nobody reads new yet. Only yet: once a fallback
//   version ran, new holds copies single's deletes miss and counters single cannot count (it
//   refuses old's marks), so the runbook rolls prepare back to single only before any fallback
//   (README "Rolling back"; status says so, infra/cutoverPhases.ts).
// - prepare + fallback: fallback reads new first; prepare's tombstone in new stops a fallback
//   reader from reading old's value behind it or copying a value it read before it into new.
//   Prepare fills old through leases whose fill loses against a delete made during the load.
// - fallback + new: new writes tombstones too, so a fallback reader still finds the
//   invalidation in new and does not read old behind it; and while old is configured, new
//   deletes there as well, so a tombstone new loses (flush, restart, eviction) leaves nothing in
//   old to read. (The contract's table says "new" for new's invalidations: with the old cluster
//   configured, deleting there too is what keeps the rule when new loses data; once old is
//   removed, new only.)
// Tombstones live tombstoneSeconds, derived from the longest TTL the app writes (or
// CACHE_TOMBSTONE_SECONDS): longer than any copy old can still hold, so that where old's delete
// failed (an incomplete invalidation, reported) a fallback reader still does not read old's copy
// while the tombstone lives. The limit: a key another service wrote into old without expiry (or
// for longer) outlives the tombstone, and is read again by a fallback version if old's delete
// failed and new lost the tombstone, or once the tombstone expired.
// Counters: see cutoverCounters.ts.

import { type ClientOptions, MemcacheClient } from "../memcache/client.ts";
import { checkOptions, functionRule, type OptionRules, secondsRule } from "../memcache/options.ts";
import { type CacheConfig, type CutoverPhase, envError } from "./config.ts";
import type { CounterClient } from "./counters.ts";
import { movingCounters, prepareCounters } from "./cutoverCounters.ts";
import { type FallbackOptions, FallbackStore } from "./fallback.ts";
import {
  DEFAULT_INVALIDATE_ATTEMPTS,
  deletePart,
  type InvalidationPart,
  invalidateEverywhere,
  tombstonePart,
  tombstoneSecondsFor,
} from "./invalidation.ts";
import { type LeaseMode, leaseResolver } from "./leases.ts";
import { type CacheStore, clientStore } from "./store.ts";

export interface PhaseCacheOptions {
  /**
   * The longest TTL any version of the app writes cached values with, in seconds (0: some never
   * expire). Tombstones live longer (tombstoneSecondsFor), unless CACHE_TOMBSTONE_SECONDS says
   * how long. Required.
   */
  longestTtlSeconds: number;
  /** More client options for both clients (e.g. onUndecodable). Default: none. */
  clientOptions: Partial<ClientOptions> | undefined;
  /** Reports a failed read of the old cluster in the fallback phase. Default: none. */
  onOldError: FallbackOptions["onOldError"];
}

const phaseCacheDefaults: Omit<PhaseCacheOptions, "longestTtlSeconds"> = {
  clientOptions: undefined,
  onOldError: undefined,
};

const phaseCacheRules: OptionRules<PhaseCacheOptions> = {
  longestTtlSeconds: secondsRule(0),
  clientOptions: (value) =>
    value === undefined || (typeof value === "object" && value !== null)
      ? undefined
      : "must be an object of client options",
  onOldError: functionRule,
};

export interface PhaseCache {
  phase: CutoverPhase;
  /** The cluster moved to (the only one outside a cutover). */
  newClient: MemcacheClient;
  /** The cluster moved away from; undefined with one cluster. */
  oldClient: MemcacheClient | undefined;
  /** What CacheAside reads and writes through in this phase. */
  store: CacheStore;
  /** Where counters are counted in this phase. */
  counters: CounterClient;
  /** How long an invalidation's tombstone lives in new (0: no expiry). */
  tombstoneSeconds: number;
  /** Closes both clients. */
  close(): void;
}

/** The clients, store and counter view of `config.phase` (see the table above). */
export function cacheForPhase(
  config: CacheConfig,
  options: Partial<PhaseCacheOptions> & Pick<PhaseCacheOptions, "longestTtlSeconds">,
): PhaseCache {
  // longestTtlSeconds has no default: checkOptions requires it.
  const checked = checkOptions("cacheForPhase", options, phaseCacheRules, phaseCacheDefaults);
  const tombstoneSeconds = tombstoneLifetime(config, checked.longestTtlSeconds);
  const clientOptions = {
    ...checked.clientOptions,
    timeoutMs: config.timeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
  };
  const newClient = new MemcacheClient({
    ...clientOptions,
    ...config.newCluster,
    ...config.newConnection,
  });
  const oldClient =
    config.oldCluster === undefined
      ? undefined
      : new MemcacheClient({ ...clientOptions, ...config.oldCluster, ...config.oldConnection });
  const shared = { phase: config.phase, newClient, oldClient, tombstoneSeconds };
  const close = () => {
    newClient.close();
    oldClient?.close();
  };
  const { leaseMode } = config;
  if (oldClient === undefined) {
    const store =
      config.phase === "new"
        ? newPhaseStore(newClient, undefined, leaseMode, tombstoneSeconds)
        : clientStore(newClient, { leaseMode });
    return { ...shared, store, counters: newClient, close };
  }
  switch (config.phase) {
    case "prepare":
      return {
        ...shared,
        store: prepareStore(newClient, oldClient, leaseMode, tombstoneSeconds),
        counters: prepareCounters(newClient, oldClient),
        close,
      };
    case "new":
      return {
        ...shared,
        store: newPhaseStore(newClient, oldClient, leaseMode, tombstoneSeconds),
        counters: movingCounters(newClient, oldClient),
        close,
      };
    default: {
      const store = new FallbackStore(newClient, oldClient, {
        leaseMode,
        tombstoneSeconds,
        onOldError: checked.onOldError,
      });
      return { ...shared, store, counters: movingCounters(newClient, oldClient), close };
    }
  }
}

/**
 * CACHE_TOMBSTONE_SECONDS, or the lifetime derived from the longest TTL; a configured one shorter
 * than that TTL could let old's copy be read again, so it stops the function at init.
 */
function tombstoneLifetime(config: CacheConfig, longestTtlSeconds: number): number {
  const derived = tombstoneSecondsFor(longestTtlSeconds);
  const configured = config.tombstoneSeconds;
  if (configured === undefined) return derived;
  const tooShort = configured !== 0 && (longestTtlSeconds === 0 || configured <= longestTtlSeconds);
  if (tooShort) {
    throw envError(
      "CACHE_TOMBSTONE_SECONDS",
      `is ${configured}, not longer than the longest TTL the app writes (${longestTtlSeconds || "no expiry"}): a tombstone must outlive every copy the old cluster can hold (give more, or 0 for no expiry)`,
    );
  }
  return configured;
}

/**
 * "prepare": reads and fills in old (its leases make a fill lose against a delete made during
 * the load); every invalidation deletes in old and leaves a tombstone in new, where fallback
 * versions read. Stale marking is not offered: it would leave new without a tombstone.
 */
function prepareStore(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
  leaseMode: LeaseMode,
  tombstoneSeconds: number,
): CacheStore {
  const reads = clientStore(oldClient, { leaseMode });
  const newLeases = leaseResolver(newClient, leaseMode);
  return withInvalidation(reads, (key) => [
    deletePart(oldClient, key, "old"),
    tombstonePart(newClient, key, tombstoneSeconds, newLeases),
  ]);
}

/**
 * "new": reads and fills in new; every invalidation leaves a tombstone there (not a delete), so a
 * fallback version beside this one does not read old behind it, and — while the old cluster is
 * still configured — deletes in old too, so that a tombstone new loses (a flush, a restart, an
 * eviction) does not hand that version old's copy. No stale marking: once the mark ended, a
 * fallback reader would read old again.
 */
function newPhaseStore(
  newClient: MemcacheClient,
  oldClient: MemcacheClient | undefined,
  leaseMode: LeaseMode,
  tombstoneSeconds: number,
): CacheStore {
  const leases = leaseResolver(newClient, leaseMode);
  return withInvalidation(clientStore(newClient, { leaseMode }), (key) => {
    const tombstone = tombstonePart(newClient, key, tombstoneSeconds, leases);
    return oldClient === undefined ? [tombstone] : [tombstone, deletePart(oldClient, key, "old")];
  });
}

/** `reads` with its invalidation made of `parts` (retried, complete or reported) and no stale marking. */
function withInvalidation(
  reads: CacheStore,
  parts: (key: string) => InvalidationPart[],
): CacheStore {
  return {
    read: reads.read,
    write: reads.write,
    readLease: reads.readLease,
    markStale: async () => false,
    invalidate: (key) => invalidateEverywhere(key, parts(key), DEFAULT_INVALIDATE_ATTEMPTS),
  };
}
