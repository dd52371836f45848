// The reference app's cache, built once per Lambda environment at module scope (cold start) and
// reused by every invocation: sockets open lazily on first use and stay open while warm.

import { CacheAside } from "../../lib/cache/cacheAside.ts";
import { cacheConfigFromEnv } from "../../lib/cache/config.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { recordCacheEvent } from "./metrics.ts";

export const cacheConfig = cacheConfigFromEnv();

const timeouts = {
  timeoutMs: Number(process.env.CACHE_TIMEOUT_MS ?? 100),
  connectTimeoutMs: Number(process.env.CACHE_CONNECT_TIMEOUT_MS ?? 200),
};

/** The cluster reads and writes go to. */
export const newClient = new MemcacheClient({ servers: cacheConfig.newServers, ...timeouts });

/** The cluster being moved away from (cutover phase only). */
export const oldClient =
  cacheConfig.oldServers.length > 0
    ? new MemcacheClient({ servers: cacheConfig.oldServers, ...timeouts })
    : undefined;

export const cache = new CacheAside(clientStore(newClient), { onEvent: recordCacheEvent });
