// cacheEventMetrics on its own: the metric each event becomes, and the errors for a wrong sink
// or option. The same hook with the real Powertools Metrics: test/integration/powertools.test.ts.

import { describe, expect, it } from "vitest";
import type { CacheEvent } from "../../../lib/cache/index.ts";
import { cacheEventMetrics, type MetricsSink } from "../../../lib/cache/index.ts";

function recorder() {
  const added: Array<[string, string, number]> = [];
  const sink: MetricsSink = { addMetric: (name, unit, value) => added.push([name, unit, value]) };
  return { added, sink };
}

const event = (type: CacheEvent["type"], durationMs = 1.5): CacheEvent => ({
  type,
  key: "k",
  durationMs,
});

describe("cacheEventMetrics", () => {
  it("adds one count named after the event, and its latency in ms", () => {
    const { added, sink } = recorder();
    const onEvent = cacheEventMetrics(sink);
    onEvent(event("hit-fallback", 2.25));
    onEvent(event("invalidate-error", 0.5));
    expect(added).toEqual([
      ["CacheHitFallback", "Count", 1],
      ["CacheLatency", "Milliseconds", 2.25],
      ["CacheInvalidateError", "Count", 1],
      ["CacheLatency", "Milliseconds", 0.5],
    ]);
  });

  it("takes another prefix and can leave the latency out", () => {
    const { added, sink } = recorder();
    cacheEventMetrics(sink, { prefix: "Products", latency: false })(event("wait-timeout"));
    expect(added).toEqual([["ProductsWaitTimeout", "Count", 1]]);
  });

  it("refuses a sink without addMetric, naming what it needs", () => {
    expect(() => cacheEventMetrics({} as MetricsSink)).toThrow(
      /^lambda-memcache: cacheEventMetrics needs a metrics object with addMetric\(name, unit, value\)/,
    );
    expect(() => cacheEventMetrics(undefined as unknown as MetricsSink)).toThrow(TypeError);
  });

  it("refuses an unknown option (a typo) and an option of the wrong type", () => {
    const { sink } = recorder();
    const typo = { latancy: false } as Partial<Parameters<typeof cacheEventMetrics>[1]>;
    expect(() => cacheEventMetrics(sink, typo)).toThrow(
      'lambda-memcache: cacheEventMetrics option "latancy" is not an option; did you mean "latency"?',
    );
    expect(() => cacheEventMetrics(sink, { latency: "no" as unknown as boolean })).toThrow(
      'lambda-memcache: cacheEventMetrics option "latency" must be true or false, got "no"',
    );
    expect(() => cacheEventMetrics(sink, { prefix: 7 as unknown as string })).toThrow(
      'lambda-memcache: cacheEventMetrics option "prefix" must be a non-empty string, got 7',
    );
  });
});
