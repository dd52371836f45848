// The package's cache entry (`lambda-memcache/cache`): cache-aside with stampede protection, the
// stores it reads through (one cluster, or each cutover phase's: cacheForPhase), counters (and
// the cutover's counter views),
// configuration from the environment (strict parsers a service can use for its own variables),
// HTTP response caching without Middy, and an adapter from cache events to Powertools Metrics.
// What is not exported here is internal. The errors are exported by the root entry.

export type {
  Acquired,
  AcquireOptions,
  CacheAsideOptions,
  CacheEvent,
  CacheRead,
  CacheStatus,
  LoadOptions,
  PendingLoad,
} from "./cacheAside.ts";
export { CacheAside } from "./cacheAside.ts";
export type {
  CacheConfig,
  ClusterConnection,
  ClusterEndpoint,
  CutoverPhase,
  Env,
} from "./config.ts";
export {
  booleanFromEnv,
  CUTOVER_PHASES,
  cacheConfigFromEnv,
  choiceFromEnv,
  clusterAddresses,
  envError,
  integerFromEnv,
  msFromEnv,
  secondsFromEnv,
  urlFromEnv,
} from "./config.ts";
export type {
  CasUpdateOptions,
  CounterClient,
  CounterValue,
  IncrementOptions,
} from "./counters.ts";
export { casIncrement, casUpdate, increment, readCounter } from "./counters.ts";
export { MOVED_FLAGS, movingCounters, prepareCounters } from "./cutoverCounters.ts";
export type { FallbackOptions } from "./fallback.ts";
export { FallbackStore } from "./fallback.ts";
export type { HttpCacheOptions, HttpEvent, HttpLookup, HttpResult } from "./httpCache.ts";
export {
  defaultIsCacheableRequest,
  defaultIsCacheableResponse,
  HttpCache,
  withHttpCache,
} from "./httpCache.ts";
export { tombstoneSecondsFor } from "./invalidation.ts";
export type { Lease, LeaseMode, LeaseOptions, LeaseRead } from "./leases.ts";
export { PLACEHOLDER_FLAGS, TOMBSTONE_FLAGS } from "./leases.ts";
export type { CacheEventMetricsOptions, MetricsSink } from "./metrics.ts";
export { cacheEventMetrics } from "./metrics.ts";
export type { PhaseCache, PhaseCacheOptions } from "./phases.ts";
export { cacheForPhase } from "./phases.ts";
export type { CacheStore, ClientStoreOptions, StoreHit } from "./store.ts";
export { clientStore } from "./store.ts";
