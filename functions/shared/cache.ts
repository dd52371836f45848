// The reference app's cache, built once per Lambda environment at module scope (cold start) and
// reused by every invocation: sockets open lazily on first use and stay open while warm. What the
// cache does follows CACHE_CUTOVER_PHASE (cacheForPhase builds it, as for any user).

import { CacheAside, cacheConfigFromEnv, cacheForPhase } from "../../lib/cache/index.ts";
import { appConfig, DEFAULT_PRODUCT_TTL_SECONDS } from "./config.ts";
import { recordCacheEvent, recordOldClusterError, recordUndecodable } from "./metrics.ts";

/** The cache variables, parsed strictly: a bad one stops the function here, at init. */
export const cacheConfig = cacheConfigFromEnv();

/** The clients, store and counter view of this function's phase. */
export const phaseCache = cacheForPhase(cacheConfig, {
  // The only values this app caches are product responses: tombstones outlive their TTL. With
  // PRODUCT_TTL_SECONDS=0 this version caches nothing, but a neighbouring version may, with the
  // default TTL (0 here would mean tombstones that never expire).
  longestTtlSeconds: appConfig.productTtlSeconds || DEFAULT_PRODUCT_TTL_SECONDS,
  // A value another service stored in a format we never decode (a pickle): a miss, and a metric.
  clientOptions: { onUndecodable: recordUndecodable },
  onOldError: recordOldClusterError,
});

export const { newClient, oldClient } = phaseCache;

export const cache = new CacheAside(phaseCache.store, { onEvent: recordCacheEvent });

/** Where counters live in this phase (see lib/cache/cutoverCounters.ts). */
export const counterClient = phaseCache.counters;
