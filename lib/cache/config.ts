// Configuration from the environment, parsed strictly once at cold start: a value that is not
// what its variable takes stops the function at init with a TypeError naming the variable,
// instead of running with timeouts off (`CACHE_TIMEOUT_MS=100ms` is NaN) or caching off.
//
//   CACHE_NEW_ENDPOINT        host:port[,host:port...] (required): the cluster in use
//   CACHE_NEW_DISCOVERY       "true": CACHE_NEW_ENDPOINT is one ElastiCache configuration
//                             endpoint and the nodes come from Auto Discovery. Default "false".
//   CACHE_OLD_ENDPOINT        host:port[,host:port...] (optional): the cluster being moved away
//                             from (set = not empty, not "none").
//   CACHE_OLD_DISCOVERY       like CACHE_NEW_DISCOVERY, for the old cluster.
//   CACHE_NEW_TLS             "true": speak TLS to the new cluster (in-transit encryption).
//                             Default "false", or "true" when CACHE_NEW_KIND=serverless.
//   CACHE_OLD_TLS             like CACHE_NEW_TLS, for the old cluster.
//   CACHE_NEW_KIND            "nodes" (default: a node-based ElastiCache cluster or memcached
//                             processes) or "serverless" (ElastiCache Serverless for Memcached:
//                             TLS only, no Auto Discovery; the client's elastiCacheServerless).
//   CACHE_OLD_KIND            like CACHE_NEW_KIND, for the old cluster.
//   CACHE_TLS_CA_FILE         a PEM file of the CAs to trust instead of Node's public ones, for
//                             every TLS cluster (offline stacks with a local CA; never in AWS).
//   CACHE_CUTOVER_PHASE       what this function does during a cutover (see the table below):
//                             "prepare", "fallback" or "new" ("single" with one cluster).
//                             Unset: "single" with one endpoint, "fallback" with both.
//   CACHE_LEASE_MODE          stampede leases: "auto" (default), "meta", "lock" or "off"
//   CACHE_TOMBSTONE_SECONDS   how long an invalidation's tombstone lives in new, s (default: the
//                             longest TTL the app writes, plus a margin: see phases.ts)
//   CACHE_TIMEOUT_MS          per-request timeout of both clients, ms (default 100)
//   CACHE_CONNECT_TIMEOUT_MS  connect timeout of both clients, ms (default 200)
//
// The phases (the team's design contract, DESIGN.md outside this repository, "Phases of a
// cutover"; lib/cache/phases.ts builds each one's store):
//
//   phase     | endpoints    | reads and writes                  | invalidations | counters
//   ----------|--------------|-----------------------------------|---------------|-------------------
//   single    | new only     | the one cluster                   | the one       | the one
//   prepare   | new and old  | old                               | old and new   | old, moving to new
//   fallback  | new and old  | new first, old on a miss (copied) | new and old   | new, seeded from old
//   new       | new [and old]| new                               | new           | new (seeded from
//             |              |                                   |               | old while it is set)
//
// A phase that needs an endpoint which is missing, or an unknown phase, stops the function at init.
//
// Auto Discovery is never guessed from the host name: a `.cfg.` endpoint without
// CACHE_*_DISCOVERY=true is used as a plain node. An empty variable counts as not set.
// The helpers below (msFromEnv, secondsFromEnv, ...) parse an application's own variables the same way.

import { readFileSync } from "node:fs";
import { type NodeAddress, sameAddress, toAddressList } from "../memcache/address.ts";
import { MAX_SECONDS, MAX_TIMER_MS } from "../memcache/options.ts";
import { LEASE_MODES, type LeaseMode } from "./leases.ts";

/** Where one cluster's nodes are: a fixed list, or an Auto Discovery configuration endpoint. */
export type ClusterEndpoint =
  | { readonly servers: readonly NodeAddress[] }
  | { readonly configEndpoint: NodeAddress };

/** How a client talks to one cluster, as MemcacheClient options. */
export interface ClusterConnection {
  /** false, or TLS: true (Node's public CAs), or `{ ca }` from CACHE_TLS_CA_FILE. */
  readonly tls: false | true | { readonly ca: string };
  /** The cluster is ElastiCache Serverless for Memcached (CACHE_*_KIND=serverless). */
  readonly elastiCacheServerless: boolean;
}

/** What a deployed function does during a cutover (see the table above). */
export type CutoverPhase = "single" | "prepare" | "fallback" | "new";

/** The values CACHE_CUTOVER_PHASE takes, in the order a cutover goes through them. */
export const CUTOVER_PHASES: readonly CutoverPhase[] = ["single", "prepare", "fallback", "new"];

export interface CacheConfig {
  phase: CutoverPhase;
  newCluster: ClusterEndpoint;
  /** The cluster being moved away from; undefined with one cluster (and in "new" once removed). */
  oldCluster: ClusterEndpoint | undefined;
  /** TLS and kind of the new cluster (spread into its client's options). */
  newConnection: ClusterConnection;
  /** TLS and kind of the old cluster; undefined outside a cutover. */
  oldConnection: ClusterConnection | undefined;
  /** Per-request timeout for the clients, ms. */
  timeoutMs: number;
  /** Connect timeout for the clients, ms. */
  connectTimeoutMs: number;
  /** Stampede lease implementation of the stores. */
  leaseMode: LeaseMode;
  /** Lifetime of an invalidation's tombstone in new, s; undefined: derived (see phases.ts). */
  tombstoneSeconds: number | undefined;
}

/** An environment: process.env, or a plain object in tests. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Parses and checks the cache variables; throws TypeError naming the variable at fault. */
export function cacheConfigFromEnv(env: Env = process.env): CacheConfig {
  const newCluster = clusterFromEnv(env, "NEW");
  if (newCluster === undefined) {
    throw envError(
      "CACHE_NEW_ENDPOINT",
      'is not set: give the cache as "host:port[,host:port...]" (or a configuration endpoint with CACHE_NEW_DISCOVERY=true)',
    );
  }
  const oldCluster = clusterFromEnv(env, "OLD");
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
  const ca = tlsCaFromEnv(env);
  const newConnection = connectionFromEnv(env, "NEW", ca);
  const oldConnection = oldCluster === undefined ? undefined : connectionFromEnv(env, "OLD", ca);
  if (ca !== undefined && newConnection.tls === false && (oldConnection?.tls ?? false) === false) {
    throw envError(
      "CACHE_TLS_CA_FILE",
      "is set, but no cluster speaks TLS: set CACHE_NEW_TLS=true (or CACHE_OLD_TLS=true), or unset it",
    );
  }
  const tombstoneText = (env.CACHE_TOMBSTONE_SECONDS ?? "").trim();
  return {
    phase: phaseFromEnv(env, oldCluster !== undefined),
    newCluster,
    oldCluster,
    newConnection,
    oldConnection,
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
    leaseMode: choiceFromEnv(env, "CACHE_LEASE_MODE", LEASE_MODES, "auto"),
    tombstoneSeconds:
      tombstoneText === "" ? undefined : secondsFromEnv(env, "CACHE_TOMBSTONE_SECONDS", 0),
  };
}

/** CACHE_CUTOVER_PHASE, checked against the endpoints it needs. */
function phaseFromEnv(env: Env, hasOld: boolean): CutoverPhase {
  const phase = choiceFromEnv(
    env,
    "CACHE_CUTOVER_PHASE",
    CUTOVER_PHASES,
    hasOld ? "fallback" : "single",
  );
  if ((phase === "prepare" || phase === "fallback") && !hasOld) {
    throw envError(
      "CACHE_CUTOVER_PHASE",
      `is "${phase}", which reads the old cluster, but CACHE_OLD_ENDPOINT is not set: give the old cluster, or run phase "new" (or "single")`,
    );
  }
  if (phase === "single" && hasOld) {
    throw envError(
      "CACHE_CUTOVER_PHASE",
      'is "single", which uses one cluster, but CACHE_OLD_ENDPOINT is set too: leave it empty, or give the cutover phase ("prepare", "fallback" or "new")',
    );
  }
  return phase;
}

/** The addresses a cluster endpoint names (its nodes, or its configuration endpoint). */
export function clusterAddresses(cluster: ClusterEndpoint): readonly NodeAddress[] {
  return "servers" in cluster ? cluster.servers : [cluster.configEndpoint];
}

function clusterFromEnv(env: Env, which: "NEW" | "OLD"): ClusterEndpoint | undefined {
  const endpointName = `CACHE_${which}_ENDPOINT`;
  const discoveryName = `CACHE_${which}_DISCOVERY`;
  const text = (env[endpointName] ?? "").trim();
  const discovery = booleanFromEnv(env, discoveryName, false);
  if (text === "" || text === "none") return undefined;
  if (discovery && kindFromEnv(env, which) === "serverless") {
    throw envError(
      discoveryName,
      `is "true", but CACHE_${which}_KIND=serverless: ElastiCache Serverless has no Auto Discovery (its endpoint is the node); set it to "false"`,
    );
  }
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

function kindFromEnv(env: Env, which: "NEW" | "OLD"): "nodes" | "serverless" {
  return choiceFromEnv(env, `CACHE_${which}_KIND`, ["nodes", "serverless"], "nodes");
}

function connectionFromEnv(
  env: Env,
  which: "NEW" | "OLD",
  ca: string | undefined,
): ClusterConnection {
  const serverless = kindFromEnv(env, which) === "serverless";
  const tlsName = `CACHE_${which}_TLS`;
  const tls = booleanFromEnv(env, tlsName, serverless);
  if (serverless && !tls) {
    throw envError(
      tlsName,
      `is "false", but CACHE_${which}_KIND=serverless: ElastiCache Serverless takes TLS connections only`,
    );
  }
  return {
    tls: !tls ? false : ca === undefined ? true : { ca },
    elastiCacheServerless: serverless,
  };
}

/** The PEM text of CACHE_TLS_CA_FILE, read once at cold start; undefined when unset. */
function tlsCaFromEnv(env: Env): string | undefined {
  const file = (env.CACHE_TLS_CA_FILE ?? "").trim();
  if (file === "") return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (error) {
    throw envError(
      "CACHE_TLS_CA_FILE",
      `names a file that cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): ${JSON.stringify(file)}`,
    );
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw envError(
      "CACHE_TLS_CA_FILE",
      `names a file with no PEM certificate: ${JSON.stringify(file)}`,
    );
  }
  return pem;
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
