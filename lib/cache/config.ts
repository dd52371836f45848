// Cache configuration from the environment, validated once at cold start:
//   CACHE_NEW_ENDPOINT  host:port[,host:port...]  (required) the cluster in use
//   CACHE_OLD_ENDPOINT  host:port[,host:port...]  (optional) the cluster being moved away from;
//                       set (non-empty) = cutover phase: reads fall back to it.
// An ElastiCache configuration endpoint (`*.cfg.*`) is one host:port.

import { parseServer } from "../memcache/client.ts";
import { MemcacheIllegalInputError } from "../memcache/errors.ts";

export interface CacheConfig {
  /** "single" with one cluster, "cutover" while the old cluster is still read. */
  phase: "single" | "cutover";
  newServers: string[];
  oldServers: string[];
}

/** Parses and validates the cache endpoints; throws MemcacheIllegalInputError naming the variable. */
export function cacheConfigFromEnv(
  env: Record<string, string | undefined> = process.env,
): CacheConfig {
  const newServers = parseEndpoint("CACHE_NEW_ENDPOINT", env.CACHE_NEW_ENDPOINT);
  if (newServers.length === 0) {
    throw new MemcacheIllegalInputError(
      'CACHE_NEW_ENDPOINT is not set: give the cache as "host:port[,host:port...]"',
    );
  }
  const oldServers = parseEndpoint("CACHE_OLD_ENDPOINT", env.CACHE_OLD_ENDPOINT);
  const lowerNew = newServers.map((server) => server.toLowerCase());
  const overlap = oldServers.filter((server) => lowerNew.includes(server.toLowerCase()));
  if (overlap.length > 0) {
    throw new MemcacheIllegalInputError(
      `CACHE_OLD_ENDPOINT and CACHE_NEW_ENDPOINT share ${overlap.join(", ")}: the old cluster must be a different one`,
    );
  }
  return { phase: oldServers.length > 0 ? "cutover" : "single", newServers, oldServers };
}

function parseEndpoint(name: string, value: string | undefined): string[] {
  const text = (value ?? "").trim();
  if (text === "" || text === "none") return [];
  return text.split(",").map((part) => {
    try {
      const { host, port } = parseServer(part);
      return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    } catch {
      throw new MemcacheIllegalInputError(
        `${name} has "${part.trim()}", which is not host:port (example: "cache.abc123.cfg.use1.cache.amazonaws.com:11211")`,
      );
    }
  });
}
