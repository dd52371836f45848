// The reference app's own environment, parsed strictly at cold start (lib/cache/config.ts parses
// the cache's): a bad value stops the function at init with a TypeError naming the variable.
//   ORIGIN_URL           http(s) URL of the origin API (default http://127.0.0.1:4000)
//   ORIGIN_TIMEOUT_MS    time allowed for one origin call, ms (default 5,000)
//   PRODUCT_TTL_SECONDS  TTL of cached product responses, s (default 300; 0 = not cached)
//   CACHE_METRICS        "on" (default) or "off": the EMF metric lines of functions/shared/metrics.ts
//   METRICS_NAMESPACE    CloudWatch namespace of those metrics (default LambdaMemcache)

import {
  choiceFromEnv,
  type Env,
  envError,
  msFromEnv,
  secondsFromEnv,
  urlFromEnv,
} from "../../lib/cache/index.ts";
import { DEFAULT_METRICS_NAMESPACE } from "./emf.ts";

/** PRODUCT_TTL_SECONDS when unset. */
export const DEFAULT_PRODUCT_TTL_SECONDS = 300;

export interface AppConfig {
  /** Without a trailing slash. */
  originUrl: string;
  originTimeoutMs: number;
  productTtlSeconds: number;
  metrics: boolean;
  metricsNamespace: string;
}

export function appConfigFromEnv(env: Env = process.env): AppConfig {
  const namespace = (env.METRICS_NAMESPACE ?? "").trim() || DEFAULT_METRICS_NAMESPACE;
  if (!/^[\x21-\x7e]{1,255}$/.test(namespace)) {
    throw envError(
      "METRICS_NAMESPACE",
      `must be 1..255 printable characters, got ${JSON.stringify(namespace)}`,
    );
  }
  return {
    originUrl: urlFromEnv(env, "ORIGIN_URL", "http://127.0.0.1:4000").href.replace(/\/+$/, ""),
    originTimeoutMs: msFromEnv(env, "ORIGIN_TIMEOUT_MS", 5_000),
    productTtlSeconds: secondsFromEnv(env, "PRODUCT_TTL_SECONDS", DEFAULT_PRODUCT_TTL_SECONDS),
    metrics: choiceFromEnv(env, "CACHE_METRICS", ["on", "off"], "on") === "on",
    metricsNamespace: namespace,
  };
}

/** This environment's configuration, parsed once at cold start. */
export const appConfig = appConfigFromEnv();
