// The package's cache entry (`lambda-memcache/cache`): cache-aside with stampede protection, the
// stores it reads through (one cluster, or the cutover's new-then-old fallback), counters,
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
export type { CacheConfig, ClusterConnection, ClusterEndpoint, Env } from "./config.ts";
export {
  booleanFromEnv,
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
export type { FallbackOptions } from "./fallback.ts";
export { FallbackStore, fallbackCounters } from "./fallback.ts";
export type { HttpCacheOptions, HttpEvent, HttpLookup, HttpResult } from "./httpCache.ts";
export {
  defaultIsCacheableRequest,
  defaultIsCacheableResponse,
  HttpCache,
  withHttpCache,
} from "./httpCache.ts";
export type { Lease, LeaseMode, LeaseOptions, LeaseRead } from "./leases.ts";
export type { CacheEventMetricsOptions, MetricsSink } from "./metrics.ts";
export { cacheEventMetrics } from "./metrics.ts";
export type { CacheStore, ClientStoreOptions, StoreHit } from "./store.ts";
export { clientStore } from "./store.ts";
