// The vocabulary of the app's Embedded Metric Format lines (metrics.ts writes them): namespace,
// metric and dimension names, every `Outcome` value and what it means. One place read by the
// functions (metrics.ts), the CloudWatch dashboard and alarms (infra/dashboard.ts) and the local
// live view (infra/local/live/), so the three cannot disagree. Nothing here reads the environment.

import type { CacheEvent, CacheStatus } from "../../lib/cache/index.ts";

/** METRICS_NAMESPACE when unset. */
export const DEFAULT_METRICS_NAMESPACE = "LambdaMemcache";

export const metricNames = {
  /** Count 1 per cache event, dimensions `outcomeDimensions`. */
  outcome: "CacheOutcome",
  /** The event's time on the cache in ms, same line and dimensions. */
  latency: "CacheLatency",
  /** Count 1 per stored value that could not be decoded, dimensions `undecodableDimensions`. */
  undecodable: "CacheUndecodable",
  /**
   * Count 1 per invalidation a cluster did not acknowledge after its retries (the PUT answered
   * `x-cache-invalidated: incomplete`), dimensions `countDimensions`.
   */
  invalidationIncomplete: "CacheInvalidationIncomplete",
} as const;

/** The one dimension set of `CacheOutcome` and `CacheLatency` lines. */
export const outcomeDimensions = ["Function", "Outcome"] as const;
/** The one dimension set of the lines that count one thing (CacheUndecodable, CacheInvalidationIncomplete). */
export const countDimensions = ["Function"] as const;
/** The one dimension set of `CacheUndecodable` lines. */
export const undecodableDimensions = countDimensions;

/**
 * The Outcome of a line that reports a failure of the old cluster during a cutover (FallbackStore's
 * onOldError). Not a read outcome: the read it happened in is counted by its own event (a MISS,
 * usually), so it does not inflate BYPASS.
 */
export const OLD_CLUSTER_ERROR = "old-error";

export type Outcome = CacheEvent["type"] | typeof OLD_CLUSTER_ERROR;

/** The cluster that failed, for the events that report a failure. */
export type FailedCluster = "new" | "old";

export interface OutcomeMeaning {
  /** The x-cache status of the read this event ends, if it ends one (one event per read). */
  read?: CacheStatus;
  /** The request went on to read the origin. */
  originRead?: true;
  /** A value read from old is copied into new ("add", so a newer value or tombstone wins). */
  backfill?: true;
  /** An acknowledged invalidation: in a cutover phase a tombstone in new, else a delete. */
  invalidation?: true;
  /** The event reports a cache failure, of this cluster ("new" is the one cluster outside a cutover). */
  failed?: FailedCluster;
}

/**
 * Every Outcome value the functions write and what it means. A Record over the type, so an event
 * type added to CacheEvent fails the typecheck here until its meaning is written down.
 */
export const outcomeMeanings: Readonly<Record<Outcome, OutcomeMeaning>> = {
  hit: { read: "HIT" },
  // Served a value marked stale while one other caller refreshes it.
  "hit-stale": { read: "HIT" },
  "hit-fallback": { read: "HIT-FALLBACK", backfill: true },
  miss: { read: "MISS", originRead: true },
  // The caller refreshing a stale value: a MISS that loads.
  refresh: { read: "MISS", originRead: true },
  // Waited for another caller's load longer than allowed, then loaded itself.
  "wait-timeout": { read: "MISS", originRead: true },
  bypass: { read: "BYPASS", originRead: true, failed: "new" },
  // A refresh whose load failed kept serving the stale value: its read was counted as "refresh".
  "stale-on-error": {},
  write: {},
  "write-error": { failed: "new" },
  invalidate: { invalidation: true },
  // An invalidation a cluster did not acknowledge after its retries (the error names which; new
  // or old): reported incomplete, also as CacheInvalidationIncomplete by the PUT.
  "invalidate-error": { failed: "new" },
  [OLD_CLUSTER_ERROR]: { failed: "old" },
};

/** The read statuses in the order the charts stack them. */
export const readStatuses: readonly CacheStatus[] = ["HIT", "HIT-FALLBACK", "MISS", "BYPASS"];

/** The Outcome values whose events end a read with `status`. */
export function outcomesOfRead(status: CacheStatus): Outcome[] {
  return outcomeValues().filter((outcome) => outcomeMeanings[outcome].read === status);
}

/** Every Outcome value, in the table's order. */
export function outcomeValues(): Outcome[] {
  return Object.keys(outcomeMeanings) as Outcome[];
}
