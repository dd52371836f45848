// The app versions a history runs beside each other. Each is built from the library from its own
// environment, the way the reference app builds itself at cold start (functions/shared/cache.ts:
// cacheConfigFromEnv, then cacheForPhase), with clients of its own (a separate Lambda
// environment), and serves the reference app's product
// and counter operations (functions/products.ts, functions/counters.ts) against an in-test origin.
// Its clients' commands pass the scheduler's gates, where the history's faults are injected.

import { CacheAside } from "../../../lib/cache/cacheAside.ts";
import { cacheConfigFromEnv, type Env } from "../../../lib/cache/config.ts";
import { type CounterValue, casIncrement, readCounter } from "../../../lib/cache/counters.ts";
import { type HttpEvent, withHttpCache } from "../../../lib/cache/httpCache.ts";
import type { LeaseMode } from "../../../lib/cache/leases.ts";
import { cacheForPhase } from "../../../lib/cache/phases.ts";
import type { MemcacheClient } from "../../../lib/memcache/client.ts";
import {
  MemcacheConnectionClosedError,
  MemcacheTimeoutError,
} from "../../../lib/memcache/errors.ts";
import { safeKey } from "../../../lib/memcache/keys.ts";
import type { Scheduler } from "./scheduler.ts";

export type Phase = "single" | "prepare" | "fallback" | "new";

/** The two memcached processes: "old" (moved away from) and "new". */
export interface Clusters {
  newEndpoint: string;
  oldEndpoint: string;
}

/**
 * The environment a function of `phase` is deployed with. "single" is the version before the
 * cutover: one cluster, the one that becomes old.
 */
export function phaseEnv(phase: Phase, clusters: Clusters): Env {
  const patient = { CACHE_TIMEOUT_MS: "2000", CACHE_CONNECT_TIMEOUT_MS: "2000" };
  if (phase === "single") return { ...patient, CACHE_NEW_ENDPOINT: clusters.oldEndpoint };
  return {
    ...patient,
    CACHE_NEW_ENDPOINT: clusters.newEndpoint,
    CACHE_OLD_ENDPOINT: clusters.oldEndpoint,
    CACHE_CUTOVER_PHASE: phase,
  };
}

/** Which cluster a failure is injected into, and how. */
export interface FaultInjector {
  /**
   * Consulted before each command: "lost" fails it without sending it, "applied" sends it and
   * then fails it (the caller cannot tell whether it ran), undefined lets it be.
   */
  take(cluster: "new" | "old", command: string): "lost" | "applied" | undefined;
}

export interface ProductRead {
  version: number;
  /** The x-cache header. */
  cache: string;
}

export interface ProductWrite {
  version: number;
  /** What the PUT answered about the invalidation (x-cache-invalidated). */
  invalidated: string;
}

/** The in-test origin: every write makes a product's next version. Its calls pass the gates. */
export class VersionedOrigin {
  readonly #versions = new Map<string, number>();
  readonly #scheduler: Scheduler;

  constructor(scheduler: Scheduler) {
    this.#scheduler = scheduler;
  }

  read(id: string): Promise<{ id: string; version: number }> {
    return this.#scheduler.gate(`origin.read ${alias(id)}`, async () => ({
      id,
      version: this.#versions.get(id) ?? 1,
    }));
  }

  write(id: string): Promise<number> {
    return this.#scheduler.gate(`origin.write ${alias(id)}`, async () => {
      const version = (this.#versions.get(id) ?? 1) + 1;
      this.#versions.set(id, version);
      return version;
    });
  }
}

export interface AppVersion {
  readonly phase: Phase;
  readProduct(id: string): Promise<ProductRead>;
  writeProduct(id: string): Promise<ProductWrite>;
  increment(name: string): Promise<CounterValue>;
  readCounter(name: string): Promise<CounterValue>;
  close(): void;
}

export interface VersionOptions {
  phase: Phase;
  clusters: Clusters;
  leaseMode: Exclude<LeaseMode, "auto">;
  /** CacheAside's maxWaitMs: 0 makes every waiter give up and load at once. */
  maxWaitMs: number;
  scheduler: Scheduler;
  faults: FaultInjector;
  origin: VersionedOrigin;
}

// The reference app's keys and TTL (functions/products.ts, functions/counters.ts).
const productKey = (id: string) => safeKey(`product/${id}`, "products:");
const counterKey = (name: string) => safeKey(name, "counter:");
const productTtlSeconds = 300;

export function buildVersion(options: VersionOptions): AppVersion {
  const { phase, scheduler, faults, origin } = options;
  const env = { ...phaseEnv(phase, options.clusters), CACHE_LEASE_MODE: options.leaseMode };
  const built = cacheForPhase(cacheConfigFromEnv(env), { longestTtlSeconds: productTtlSeconds });
  // "single" runs on the cluster that becomes old.
  gateClient(built.newClient, phase === "single" ? "old" : "new", scheduler, faults);
  if (built.oldClient !== undefined) gateClient(built.oldClient, "old", scheduler, faults);
  const cache = new CacheAside(built.store, {
    maxWaitMs: options.maxWaitMs,
    // Leases never expire during a history: expiry would depend on the machine's speed.
    leaseTtlSeconds: 600,
  });
  const getProduct = withHttpCache(
    async (event: HttpEvent) => {
      const product = await origin.read(event.pathParameters?.id ?? "");
      return {
        statusCode: 200,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(product),
      };
    },
    {
      cache,
      ttlSeconds: productTtlSeconds,
      keyPrefix: "products:",
      getKey: (event) => `product/${event.pathParameters?.id ?? ""}`,
    },
  );
  return {
    phase,
    async readProduct(id) {
      const event = {
        rawPath: `/products/${id}`,
        rawQueryString: "",
        headers: {},
        pathParameters: { id },
        requestContext: { http: { method: "GET" } },
      };
      const response = await getProduct(event as never, undefined);
      const headers = (response.headers ?? {}) as Record<string, string>;
      return {
        version: (JSON.parse(String(response.body)) as { version: number }).version,
        cache: headers["x-cache"] ?? "",
      };
    },
    async writeProduct(id) {
      const version = await origin.write(id);
      const complete = await cache.invalidate(productKey(id));
      return { version, invalidated: complete ? "complete" : "incomplete" };
    },
    increment: (name) => casIncrement(built.counters, counterKey(name)),
    readCounter: (name) => readCounter(built.counters, counterKey(name)),
    close: () => built.close(),
  };
}

/** Every command the cache layer sends (hasMeta too: it probes the server). */
const COMMANDS = [
  "get",
  "gets",
  "getMany",
  "set",
  "add",
  "replace",
  "cas",
  "delete",
  "incr",
  "decr",
  "touch",
  "gat",
  "gats",
  "hasMeta",
  "metaGet",
  "metaSet",
  "metaDelete",
  "metaArithmetic",
] as const;

/** Puts each of the client's commands behind a gate of `scheduler`, with faults from `faults`. */
function gateClient(
  client: MemcacheClient,
  cluster: "new" | "old",
  scheduler: Scheduler,
  faults: FaultInjector,
): void {
  const methods = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const command of COMMANDS) {
    const original = methods[command]!.bind(client);
    methods[command] = (...args: unknown[]) =>
      scheduler.gate(`${cluster}.${command} ${alias(args[0])}`, async () => {
        const fault = faults.take(cluster, command);
        if (fault === "lost") throw new MemcacheConnectionClosedError("injected: command lost");
        const result = await original(...args);
        if (fault === "applied") {
          throw new MemcacheTimeoutError("injected: no reply, but the command ran");
        }
        return result;
      });
  }
}

/** A key as a history prints it: "p1", "c1", "p1#lock" (the run's prefix dropped). */
export function alias(key: unknown): string {
  if (Array.isArray(key)) return key.map(alias).join(",");
  if (typeof key !== "string") return "";
  return key.replace(/^(products:product\/|counter:)?h\d+-/, "");
}
