// The reference app's cache, built once per Lambda environment at module scope (cold start) and
// reused by every invocation: sockets open lazily on first use and stay open while warm.

import {
  CacheAside,
  type CounterClient,
  cacheConfigFromEnv,
  clientStore,
  FallbackStore,
  fallbackCounters,
} from "../../lib/cache/index.ts";
import { MemcacheClient } from "../../lib/index.ts";
import { recordCacheEvent, recordOldClusterError, recordUndecodable } from "./metrics.ts";

/** The cache variables, parsed strictly: a bad one stops the function here, at init. */
export const cacheConfig = cacheConfigFromEnv();

const timeouts = {
  timeoutMs: cacheConfig.timeoutMs,
  connectTimeoutMs: cacheConfig.connectTimeoutMs,
  // A value another service stored in a format we never decode (a pickle): a miss, and a metric.
  onUndecodable: recordUndecodable,
};

/** The cluster reads and writes go to. */
export const newClient = new MemcacheClient({
  ...cacheConfig.newCluster,
  ...cacheConfig.newConnection,
  ...timeouts,
});

/** The cluster being moved away from (cutover phase only). */
export const oldClient =
  cacheConfig.oldCluster === undefined
    ? undefined
    : new MemcacheClient({
        ...cacheConfig.oldCluster,
        ...cacheConfig.oldConnection,
        ...timeouts,
      });

// With an old cluster configured (the cutover phase), reads fall back to it and invalidations
// reach both; see lib/cache/fallback.ts.
const store =
  oldClient === undefined
    ? clientStore(newClient)
    : new FallbackStore(newClient, oldClient, { onOldError: recordOldClusterError });

export const cache = new CacheAside(store, { onEvent: recordCacheEvent });

/** Where counters live: new, seeded once from old during a cutover. */
export const counterClient: CounterClient =
  oldClient === undefined ? newClient : fallbackCounters(newClient, oldClient);
