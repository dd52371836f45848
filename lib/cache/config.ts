// Configuration from the environment, parsed strictly once at cold start: a value that is not
// what its variable takes stops the function at init with a TypeError naming the variable,
// instead of running with timeouts off (`CACHE_TIMEOUT_MS=100ms` is NaN) or caching off.
//
//   CACHE_NEW_ENDPOINT        host:port[,host:port...] (required): the cluster in use
//   CACHE_NEW_DISCOVERY       "true": CACHE_NEW_ENDPOINT is one ElastiCache configuration
//                             endpoint and the nodes come from Auto Discovery. Default "false".
//   CACHE_OLD_ENDPOINT        host:port[,host:port...] (optional): the cluster being moved away
//                             from; set (non-empty, not "none") = cutover phase.
//   CACHE_OLD_DISCOVERY       like CACHE_NEW_DISCOVERY, for the old cluster.
//   CACHE_TIMEOUT_MS          per-request timeout of both clients, ms (default 100)
//   CACHE_CONNECT_TIMEOUT_MS  connect timeout of both clients, ms (default 200)
//
// Auto Discovery is never guessed from the host name: a `.cfg.` endpoint without
// CACHE_*_DISCOVERY=true is used as a plain node. An empty variable counts as not set.
// The helpers below (msFromEnv, secondsFromEnv, ...) parse an application's own variables the same way.

import { type NodeAddress, sameAddress, toAddressList } from "../memcache/address.ts";
import { MAX_SECONDS, MAX_TIMER_MS } from "../memcache/options.ts";

/** Where one cluster's nodes are: a fixed list, or an Auto Discovery configuration endpoint. */
export type ClusterEndpoint =
  | { readonly servers: readonly NodeAddress[] }
  | { readonly configEndpoint: NodeAddress };

export interface CacheConfig {
  /** "single" with one cluster, "cutover" while the old cluster is still read. */
  phase: "single" | "cutover";
  newCluster: ClusterEndpoint;
  /** The cluster being moved away from; undefined outside a cutover. */
  oldCluster: ClusterEndpoint | undefined;
  /** Per-request timeout for the clients, ms. */
  timeoutMs: number;
  /** Connect timeout for the clients, ms. */
  connectTimeoutMs: number;
}

/** An environment: process.env, or a plain object in tests. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Parses and checks the cache variables; throws TypeError naming the variable at fault. */
export function cacheConfigFromEnv(env: Env = process.env): CacheConfig {
  const newCluster = clusterFromEnv(env, "CACHE_NEW_ENDPOINT", "CACHE_NEW_DISCOVERY");
  if (newCluster === undefined) {
    throw envError(
      "CACHE_NEW_ENDPOINT",
      'is not set: give the cache as "host:port[,host:port...]" (or a configuration endpoint with CACHE_NEW_DISCOVERY=true)',
    );
  }
  const oldCluster = clusterFromEnv(env, "CACHE_OLD_ENDPOINT", "CACHE_OLD_DISCOVERY");
  if (oldCluster !== undefined) {
    const newNodes = clusterAddresses(newCluster);
    const shared = clusterAddresses(oldCluster).filter((old) =>
      newNodes.some((node) => sameAddress(node, old)),
    );
    if (shared.length > 0) {
      throw envError(
        "CACHE_OLD_ENDPOINT",
        `shares ${shared.map((a) => `${a.host}:${a.port}`).join(", ")} with CACHE_NEW_ENDPOINT: the old cluster must be a different one`,
      );
    }
  }
  return {
    phase: oldCluster === undefined ? "single" : "cutover",
    newCluster,
    oldCluster,
    timeoutMs: integerFromEnv(env, "CACHE_TIMEOUT_MS", {
      fallback: 100,
      min: 1,
      max: MAX_TIMER_MS,
    }),
    connectTimeoutMs: integerFromEnv(env, "CACHE_CONNECT_TIMEOUT_MS", {
      fallback: 200,
      min: 1,
      max: MAX_TIMER_MS,
    }),
  };
}

/** The addresses a cluster endpoint names (its nodes, or its configuration endpoint). */
export function clusterAddresses(cluster: ClusterEndpoint): readonly NodeAddress[] {
  return "servers" in cluster ? cluster.servers : [cluster.configEndpoint];
}

function clusterFromEnv(
  env: Env,
  endpointName: string,
  discoveryName: string,
): ClusterEndpoint | undefined {
  const text = (env[endpointName] ?? "").trim();
  const discovery = booleanFromEnv(env, discoveryName, false);
  if (text === "" || text === "none") return undefined;
  let addresses: NodeAddress[];
  try {
    addresses = toAddressList(text);
  } catch (error) {
    throw envError(
      endpointName,
      `has ${(error as Error).message}; give "host:port[,host:port...]" (example: "cache.abc123.cfg.use1.cache.amazonaws.com:11211")`,
    );
  }
  if (!discovery) return { servers: addresses };
  if (addresses.length !== 1) {
    throw envError(
      endpointName,
      `lists ${addresses.length} servers, but ${discoveryName}=true takes one configuration endpoint`,
    );
  }
  return { configEndpoint: addresses[0]! };
}

// ---- strict parsers for single variables ----

/** The TypeError a bad environment value throws. */
export function envError(name: string, complaint: string): TypeError {
  return new TypeError(`lambda-memcache: environment variable ${name} ${complaint}`);
}

/**
 * A whole number in min..max from `env[name]` (digits only: "100ms", "5m", "1e3", "-1" and
 * "1.5" are refused); `fallback` when unset or empty.
 */
export function integerFromEnv(
  env: Env,
  name: string,
  range: { fallback: number; min: number; max: number },
): number {
  const text = (env[name] ?? "").trim();
  if (text === "") return range.fallback;
  const value = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= range.min && value <= range.max)) {
    throw envError(
      name,
      `must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(env[name])}`,
    );
  }
  return value;
}

/** A duration a timer can wait, whole ms in 1..2^31-1, from `env[name]`; `fallback` when unset. */
export function msFromEnv(env: Env, name: string, fallback: number): number {
  return integerFromEnv(env, name, { fallback, min: 1, max: MAX_TIMER_MS });
}

/** Whole seconds in 0..2^31-1 (a TTL), from `env[name]`; `fallback` when unset. */
export function secondsFromEnv(env: Env, name: string, fallback: number): number {
  return integerFromEnv(env, name, { fallback, min: 0, max: MAX_SECONDS });
}

/** "true" or "false" from `env[name]`; `fallback` when unset or empty. */
export function booleanFromEnv(env: Env, name: string, fallback: boolean): boolean {
  return choiceFromEnv(env, name, ["true", "false"], fallback ? "true" : "false") === "true";
}

/** One of `choices` from `env[name]`; `fallback` when unset or empty. */
export function choiceFromEnv<C extends string>(
  env: Env,
  name: string,
  choices: readonly C[],
  fallback: C,
): C {
  const text = (env[name] ?? "").trim();
  if (text === "") return fallback;
  if (!(choices as readonly string[]).includes(text)) {
    throw envError(
      name,
      `must be one of ${choices.map((c) => `"${c}"`).join(", ")}, got ${JSON.stringify(env[name])}`,
    );
  }
  return text as C;
}

/** An http(s) URL from `env[name]`; `fallback` when unset or empty. */
export function urlFromEnv(env: Env, name: string, fallback: string): URL {
  const text = (env[name] ?? "").trim() || fallback;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw envError(name, `must be an http:// or https:// URL, got ${JSON.stringify(env[name])}`);
  }
  return url;
}
