// Cache outcomes as CloudWatch metrics through the Embedded Metric Format: one structured JSON
// log line per event, turned into metrics by CloudWatch Logs. No SDK, no extra cold-start cost.
// Set CACHE_METRICS=off to silence it (tests that count log lines, local noise).
// The names and Outcome values are in emf.ts (the dashboard and the local live view read them too).

import type { CacheEvent } from "../../lib/cache/index.ts";
import { appConfig } from "./config.ts";
import {
  countDimensions,
  metricNames,
  OLD_CLUSTER_ERROR,
  type Outcome,
  outcomeDimensions,
} from "./emf.ts";

const namespace = appConfig.metricsNamespace;
const enabled = appConfig.metrics;
const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? "local";

/** onEvent hook for CacheAside: emits `CacheOutcome` (count) and `CacheLatency` (ms). */
export function recordCacheEvent(event: CacheEvent): void {
  recordOutcome(event.type, event.key, event.durationMs, event.error);
}

/**
 * onOldError hook for FallbackStore: the old cluster failed during a cutover (never surfaced to
 * the caller). A `CacheOutcome` line with Outcome `old-error`, the operation in the message.
 */
export function recordOldClusterError(operation: string, key: string, error: unknown): void {
  const cause = error as Error;
  const annotated = Object.assign(new Error(`old cluster ${operation}: ${cause.message}`), {
    name: cause.name,
  });
  recordOutcome(OLD_CLUSTER_ERROR, key, 0, annotated);
}

function recordOutcome(outcome: Outcome, key: string, durationMs: number, error: unknown): void {
  if (!enabled) return;
  const line: Record<string, unknown> = {
    _aws: {
      Timestamp: Date.now(),
      CloudWatchMetrics: [
        {
          Namespace: namespace,
          Dimensions: [[...outcomeDimensions]],
          Metrics: [
            { Name: metricNames.outcome, Unit: "Count" },
            { Name: metricNames.latency, Unit: "Milliseconds" },
          ],
        },
      ],
    },
    Function: functionName,
    Outcome: outcome,
    [metricNames.outcome]: 1,
    [metricNames.latency]: Math.round(durationMs * 1000) / 1000,
    key,
  };
  if (error !== undefined) {
    const failure = error as Error;
    line.level = "WARN";
    line.error = { name: failure.name, message: failure.message };
  }
  console.log(JSON.stringify(line));
}

/**
 * onUndecodable hook for the clients: a stored value read as a miss because it cannot be decoded
 * (a Python pickle, unknown flags, bad bytes). One EMF line with the `CacheUndecodable` count, the
 * key and the flags, so a service writing a format this app cannot read shows in the metrics.
 */
export function recordUndecodable(value: { key: string; flags: number; bytes: number }): void {
  recordCount(metricNames.undecodable, { key: value.key, flags: value.flags, bytes: value.bytes });
}

/**
 * An invalidation that did not reach every cluster (the PUT answered `x-cache-invalidated:
 * incomplete`): one EMF line with the `CacheInvalidationIncomplete` count and the key, so an
 * alarm can watch for readers that may be served the value from before a write.
 */
export function recordIncompleteInvalidation(key: string): void {
  recordCount(metricNames.invalidationIncomplete, { key });
}

/** One EMF line counting `metric` once for this function (a warning), with `fields` beside it. */
function recordCount(metric: string, fields: Record<string, unknown>): void {
  if (!enabled) return;
  console.log(
    JSON.stringify({
      _aws: {
        Timestamp: Date.now(),
        CloudWatchMetrics: [
          {
            Namespace: namespace,
            Dimensions: [[...countDimensions]],
            Metrics: [{ Name: metric, Unit: "Count" }],
          },
        ],
      },
      level: "WARN",
      Function: functionName,
      [metric]: 1,
      ...fields,
    }),
  );
}
