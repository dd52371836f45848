// Cache-aside events as metrics through any sink with Powertools' `addMetric(name, unit, value)`
// (the Metrics class of @aws-lambda-powertools/metrics fits as it is): the alternative to writing
// Embedded Metric Format lines yourself. No dependency on Powertools: the sink is structural.
//
// Each event adds one count under its own name (`CacheHit`, `CacheMiss`, `CacheBypass`, ...) and,
// unless turned off, its duration as `CacheLatency`. Powertools keeps them until the invocation's
// blob is flushed (logMetrics, or publishStoredMetrics()), where a name added twice becomes a
// list of values that CloudWatch sums. Names and not dimensions: one invocation may see several
// outcomes, while a blob's dimensions hold for all its metrics.

import {
  booleanRule,
  checkOptions,
  nonEmptyStringRule,
  type OptionRules,
} from "../memcache/options.ts";
import type { CacheEvent } from "./cacheAside.ts";

/** What the adapter needs of a metrics object: Powertools' Metrics, or anything alike. */
export interface MetricsSink {
  addMetric(name: string, unit: "Count" | "Milliseconds", value: number): void;
}

export interface CacheEventMetricsOptions {
  /** Prefix of every metric name. Default "Cache". */
  prefix: string;
  /** Also add each event's duration as `<prefix>Latency`, in ms. Default true. */
  latency: boolean;
}

export const cacheEventMetricsDefaults: CacheEventMetricsOptions = {
  prefix: "Cache",
  latency: true,
};

const cacheEventMetricsRules: OptionRules<CacheEventMetricsOptions> = {
  prefix: nonEmptyStringRule,
  latency: booleanRule,
};

/**
 * An `onEvent` hook for CacheAside that adds each event to `metrics`:
 * `new CacheAside(store, { onEvent: cacheEventMetrics(metrics) })`.
 */
export function cacheEventMetrics(
  metrics: MetricsSink,
  options: Partial<CacheEventMetricsOptions> = {},
): (event: CacheEvent) => void {
  if (typeof (metrics as Partial<MetricsSink> | undefined)?.addMetric !== "function") {
    throw new TypeError(
      "lambda-memcache: cacheEventMetrics needs a metrics object with addMetric(name, unit, value), such as Powertools' Metrics",
    );
  }
  const { prefix, latency } = checkOptions(
    "cacheEventMetrics",
    options,
    cacheEventMetricsRules,
    cacheEventMetricsDefaults,
  );
  return (event) => {
    metrics.addMetric(prefix + pascalCase(event.type), "Count", 1);
    if (latency) metrics.addMetric(`${prefix}Latency`, "Milliseconds", event.durationMs);
  };
}

/** `hit-fallback` -> `HitFallback`. */
function pascalCase(type: string): string {
  return type.replace(/(?:^|-)([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
