// The EMF lines the functions really write: functions/shared/metrics.ts called for every Outcome
// value (an error where the outcome reports one) and for an undecodable value, with console.log
// captured. Tests compare the live view's parser and the CloudWatch dashboard against these.

import { vi } from "vitest";
import { OLD_CLUSTER_ERROR, outcomeMeanings, outcomeValues } from "../../functions/shared/emf.ts";
import {
  recordCacheEvent,
  recordOldClusterError,
  recordUndecodable,
} from "../../functions/shared/metrics.ts";

export interface EmittedLine {
  text: string;
  json: {
    _aws: {
      Timestamp: number;
      CloudWatchMetrics: Array<{
        Namespace: string;
        Dimensions: string[][];
        Metrics: Array<{ Name: string; Unit: string }>;
      }>;
    };
    [field: string]: unknown;
  };
}

/** One line per Outcome value (in outcomeValues() order), then one CacheUndecodable line. */
export function emittedLines(): EmittedLine[] {
  const spy = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    for (const outcome of outcomeValues()) {
      const failed = outcomeMeanings[outcome].failed !== undefined;
      const error = new Error(`test: ${outcome}`);
      if (outcome === OLD_CLUSTER_ERROR) recordOldClusterError("get", "k", error);
      else recordCacheEvent({ type: outcome, key: "k", durationMs: 1.5, ...(failed && { error }) });
    }
    recordUndecodable({ key: "k", flags: 1, bytes: 3 });
    return spy.mock.calls.map(([text]) => ({
      text: String(text),
      json: JSON.parse(String(text)) as EmittedLine["json"],
    }));
  } finally {
    spy.mockRestore();
  }
}
