// The app's own cache events, as the live view counts them: serverless-offline prints each
// function's stdout, where metrics.ts writes one EMF JSON line per cache event. The stack's
// launcher splits that output into lines (passing every byte on to the terminal), parses the EMF
// lines and counts them per second here. The meaning of each Outcome is functions/shared/emf.ts's.

import {
  type FailedCluster,
  metricNames,
  type Outcome,
  outcomeMeanings,
} from "../../../functions/shared/emf.ts";
import type { CacheStatus } from "../../../lib/cache/cacheAside.ts";

/** One cache event read from an EMF line. */
export interface EmfEvent {
  /** The line's `_aws.Timestamp`, ms since the epoch. */
  timestampMs: number;
  /** The Outcome dimension; undefined for a `CacheUndecodable` line. */
  outcome: Outcome | undefined;
  /** The Function dimension (the Lambda function's name). */
  functionName: string;
  /** `error.message` of a line that reports a failure. */
  errorMessage?: string;
}

/** What happened in one second, counted from the events whose timestamp falls into it. */
export interface SecondCounts {
  /** Seconds since the epoch. */
  t: number;
  /** Reads by x-cache status: one event ends each read. */
  reads: Record<CacheStatus, number>;
  /** Reads that went on to the origin (MISS and BYPASS events). */
  originLoads: number;
  /** HIT-FALLBACK reads: each copies old's value into new. */
  backfills: number;
  /** Acknowledged invalidations: tombstones in new during a cutover, deletes otherwise. */
  invalidations: number;
  /** Events that report a failure, by the cluster that failed. */
  errors: Record<FailedCluster, number>;
  /** Stored values that could not be decoded (read as misses). */
  undecodable: number;
}

export function emptyCounts(t: number): SecondCounts {
  return {
    t,
    reads: { HIT: 0, "HIT-FALLBACK": 0, MISS: 0, BYPASS: 0 },
    originLoads: 0,
    backfills: 0,
    invalidations: 0,
    errors: { new: 0, old: 0 },
    undecodable: 0,
  };
}

/**
 * The cache event on `line`, or undefined when the line is anything else (serverless-offline's
 * own output, another log line, an EMF line of a metric this view does not count, bad JSON).
 */
export function parseEmfLine(line: string): EmfEvent | undefined {
  const text = line.trim();
  if (!text.startsWith('{"_aws"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const record = parsed as Record<string, unknown>;
  const timestampMs = (record._aws as { Timestamp?: unknown } | null)?.Timestamp;
  if (typeof timestampMs !== "number" || !Number.isFinite(timestampMs)) return undefined;
  const functionName = typeof record.Function === "string" ? record.Function : "";
  const errorMessage = (record.error as { message?: unknown } | undefined)?.message;
  const withError = typeof errorMessage === "string" ? { errorMessage } : {};
  if (record[metricNames.undecodable] === 1) {
    return { timestampMs, outcome: undefined, functionName, ...withError };
  }
  const outcome = record.Outcome;
  if (typeof outcome !== "string" || !Object.hasOwn(outcomeMeanings, outcome)) return undefined;
  if (record[metricNames.outcome] !== 1) return undefined;
  return { timestampMs, outcome: outcome as Outcome, functionName, ...withError };
}

/** Adds `event` to `counts` (the bucket of its second). */
export function countEvent(counts: SecondCounts, event: EmfEvent): void {
  if (event.outcome === undefined) {
    counts.undecodable++;
    return;
  }
  const meaning = outcomeMeanings[event.outcome];
  if (meaning.read !== undefined) counts.reads[meaning.read]++;
  if (meaning.originRead) counts.originLoads++;
  if (meaning.backfill) counts.backfills++;
  if (meaning.invalidation) counts.invalidations++;
  if (meaning.failed !== undefined) counts.errors[meaning.failed]++;
}

/** Per-second counts of the events of the last `keepSeconds` seconds. */
export class EventSeries {
  readonly keepSeconds: number;
  /** EMF lines counted since the start. */
  events = 0;
  /** Epoch ms of the newest event counted, 0 before the first. */
  lastEventMs = 0;
  /** The second this series started counting: nothing before it is known. */
  readonly startSecond: number;
  readonly #buckets = new Map<number, SecondCounts>();
  readonly #now: () => number;

  constructor(keepSeconds = 600, now: () => number = Date.now) {
    this.keepSeconds = keepSeconds;
    this.#now = now;
    this.startSecond = Math.floor(now() / 1000);
  }

  /** Counts the event on `line`, if it carries one; true when it did. */
  addLine(line: string): boolean {
    const event = parseEmfLine(line);
    if (event === undefined) return false;
    this.add(event);
    return true;
  }

  add(event: EmfEvent): void {
    const nowSecond = Math.floor(this.#now() / 1000);
    const t = Math.floor(event.timestampMs / 1000);
    // A clock far off (another machine's log pasted in) would hold a bucket forever.
    if (t <= nowSecond - this.keepSeconds || t > nowSecond + 60) return;
    let counts = this.#buckets.get(t);
    if (counts === undefined) {
      counts = emptyCounts(t);
      this.#buckets.set(t, counts);
      this.#prune(nowSecond);
    }
    countEvent(counts, event);
    this.events++;
    this.lastEventMs = Math.max(this.lastEventMs, event.timestampMs);
  }

  /**
   * One entry per second from `fromSecond` to `toSecond` inclusive, zeros where nothing happened;
   * none before the series started or older than keepSeconds.
   */
  range(fromSecond: number, toSecond: number): SecondCounts[] {
    const out: SecondCounts[] = [];
    const from = Math.max(fromSecond, toSecond - this.keepSeconds + 1, this.startSecond);
    for (let t = from; t <= toSecond; t++) out.push(this.#buckets.get(t) ?? emptyCounts(t));
    return out;
  }

  #prune(nowSecond: number): void {
    for (const t of this.#buckets.keys()) {
      if (t <= nowSecond - this.keepSeconds) this.#buckets.delete(t);
    }
  }
}

/** Longest line kept while waiting for its end; a longer one is dropped (it is no EMF line). */
const maxLineChars = 1024 * 1024;

/**
 * Splits a stream's chunks into lines for `onLine` (without the line break). A line may arrive in
 * any number of chunks; a chunk may hold many lines. `flush()` hands over a last unended line.
 */
export function lineSplitter(onLine: (line: string) => void): {
  push(chunk: Buffer | string): void;
  flush(): void;
} {
  let carry = "";
  let dropping = false;
  return {
    push(chunk) {
      const text = carry + (typeof chunk === "string" ? chunk : chunk.toString("utf8"));
      const lines = text.split("\n");
      carry = lines.pop() ?? "";
      for (const line of lines) {
        if (dropping)
          dropping = false; // the end of an over-long line
        else onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
      }
      if (carry.length > maxLineChars) {
        carry = "";
        dropping = true;
      }
    },
    flush() {
      if (carry !== "" && !dropping) onLine(carry);
      carry = "";
      dropping = false;
    },
  };
}
