// Cache outcomes as CloudWatch metrics through the Embedded Metric Format: one structured JSON
// log line per event, turned into metrics by CloudWatch Logs. No SDK, no extra cold-start cost.
// Set CACHE_METRICS=off to silence it (tests that count log lines, local noise).

import type { CacheEvent } from "../../lib/cache/cacheAside.ts";
import { appConfig } from "./config.ts";

const namespace = appConfig.metricsNamespace;
const enabled = appConfig.metrics;
const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? "local";

/** onEvent hook for CacheAside: emits `CacheOutcome` (count) and `CacheLatency` (ms). */
export function recordCacheEvent(event: CacheEvent): void {
  if (!enabled) return;
  const line: Record<string, unknown> = {
    _aws: {
      Timestamp: Date.now(),
      CloudWatchMetrics: [
        {
          Namespace: namespace,
          Dimensions: [["Function", "Outcome"]],
          Metrics: [
            { Name: "CacheOutcome", Unit: "Count" },
            { Name: "CacheLatency", Unit: "Milliseconds" },
          ],
        },
      ],
    },
    Function: functionName,
    Outcome: event.type,
    CacheOutcome: 1,
    CacheLatency: Math.round(event.durationMs * 1000) / 1000,
    key: event.key,
  };
  if (event.error !== undefined) {
    const error = event.error as Error;
    line.level = "WARN";
    line.error = { name: error.name, message: error.message };
  }
  console.log(JSON.stringify(line));
}

/**
 * onUndecodable hook for the clients: a stored value read as a miss because it cannot be decoded
 * (a Python pickle, unknown flags, bad bytes). One EMF line with the `CacheUndecodable` count, the
 * key and the flags, so a service writing a format this app cannot read shows in the metrics.
 */
export function recordUndecodable(value: { key: string; flags: number; bytes: number }): void {
  if (!enabled) return;
  console.log(
    JSON.stringify({
      _aws: {
        Timestamp: Date.now(),
        CloudWatchMetrics: [
          {
            Namespace: namespace,
            Dimensions: [["Function"]],
            Metrics: [{ Name: "CacheUndecodable", Unit: "Count" }],
          },
        ],
      },
      level: "WARN",
      Function: functionName,
      CacheUndecodable: 1,
      key: value.key,
      flags: value.flags,
      bytes: value.bytes,
    }),
  );
}
