// The live view's counting of the functions' cache events (infra/local/live/events.ts): the EMF
// lines metrics.ts really writes, parsed and counted per second; everything else on
// serverless-offline's output ignored; lines split across chunks put back together.

import { describe, expect, it } from "vitest";
import { outcomeValues } from "../../../functions/shared/emf.ts";
import {
  EventSeries,
  emptyCounts,
  lineSplitter,
  parseEmfLine,
} from "../../../infra/local/live/events.ts";
import { emittedLines } from "../../helpers/emf.ts";

const at = (ms: number, line: string) => line.replace(/"Timestamp":\d+/, `"Timestamp":${ms}`);

describe("parseEmfLine", () => {
  it("reads every line metrics.ts writes: outcome, function and error message", () => {
    const lines = emittedLines();
    const events = lines.map((line) => parseEmfLine(line.text));
    expect(events.map((event) => event?.outcome)).toEqual([...outcomeValues(), undefined]);
    for (const [i, event] of events.entries()) {
      expect(event?.timestampMs, lines[i]!.text).toBe(lines[i]!.json._aws.Timestamp);
      expect(event?.functionName).toBe("local");
    }
    expect(events.find((event) => event?.outcome === "old-error")?.errorMessage).toBe(
      "old cluster get: test: old-error",
    );
    expect(events.find((event) => event?.outcome === "bypass")?.errorMessage).toBe("test: bypass");
  });

  it("ignores serverless-offline's own lines, bad JSON, unknown outcomes and other metrics", () => {
    const [hit] = emittedLines();
    for (const line of [
      "",
      "GET /products/1 (λ: getProduct)",
      "(λ: getProduct) RequestId: 1  Duration: 1.85 ms  Billed Duration: 2 ms",
      '{"_aws":',
      hit!.text.replace('"Outcome":"hit"', '"Outcome":"toString"'),
      hit!.text.replace('"Outcome":"hit"', '"Outcome":"sideways"'),
      hit!.text.replace('"Timestamp":', '"Stamp":'),
      hit!.text.replace('"CacheOutcome":1', '"CacheOutcome":"1"'),
      '{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"Other":1}',
      '{"level":"WARN","Outcome":"hit","CacheOutcome":1}',
    ]) {
      expect(parseEmfLine(line), line).toBeUndefined();
    }
    expect(parseEmfLine(`  ${hit!.text}\r`)?.outcome).toBe("hit");
  });
});

describe("EventSeries", () => {
  const now = 1_800_000_000_000;
  const second = now / 1000;

  it("counts each event into its second: reads by x-cache, origin loads, backfills, invalidations, errors per cluster", () => {
    let clock = now - 5_000; // started five seconds ago
    const series = new EventSeries(600, () => clock);
    clock = now;
    for (const line of emittedLines()) expect(series.addLine(at(now - 500, line.text))).toBe(true);
    expect(series.addLine("GET /products/1 (λ: getProduct)")).toBe(false);
    const [earlier, current] = series.range(second - 2, second - 1);
    expect(earlier).toEqual(emptyCounts(second - 2));
    expect(current).toEqual({
      t: second - 1,
      // hit + hit-stale; hit-fallback; miss + refresh + wait-timeout; bypass
      reads: { HIT: 2, "HIT-FALLBACK": 1, MISS: 3, BYPASS: 1 },
      originLoads: 4,
      backfills: 1,
      invalidations: 1,
      // bypass, write-error, invalidate-error; old-error
      errors: { new: 3, old: 1 },
      undecodable: 1,
    });
    expect(series.events).toBe(outcomeValues().length + 1);
    expect(series.lastEventMs).toBe(now - 500);
  });

  it("keeps keepSeconds of history, nothing from before it started, and drops clocks far off", () => {
    let clock = now;
    const series = new EventSeries(10, () => clock);
    const [hit] = emittedLines();
    series.addLine(at(now - 20_000, hit!.text)); // before the window
    series.addLine(at(now + 120_000, hit!.text)); // two minutes ahead
    expect(series.events).toBe(0);
    series.addLine(at(now, hit!.text));
    expect(series.range(second - 5, second).map((c) => c.t)).toEqual([second]);
    clock = now + 30_000;
    series.addLine(at(clock, hit!.text)); // prunes the first bucket
    const rows = series.range(second, second + 30);
    expect(rows.map((c) => c.t)).toEqual(Array.from({ length: 10 }, (_, i) => second + 21 + i));
    expect(rows.reduce((sum, c) => sum + c.reads.HIT, 0)).toBe(1);
  });
});

describe("lineSplitter", () => {
  it("puts a line split across chunks back together, splits many lines in one chunk, drops CR", () => {
    const lines: string[] = [];
    const splitter = lineSplitter((line) => lines.push(line));
    splitter.push('{"a":');
    splitter.push(Buffer.from("1}\r\nsecond\nthi"));
    splitter.push("rd\n\nfou");
    expect(lines).toEqual(['{"a":1}', "second", "third", ""]);
    splitter.flush();
    expect(lines.at(-1)).toBe("fou");
  });

  it("drops a line longer than 1 MiB instead of holding it", () => {
    const lines: string[] = [];
    const splitter = lineSplitter((line) => lines.push(line));
    splitter.push("x".repeat(1024 * 1024 + 1));
    splitter.push("still the same line\nnext\n");
    expect(lines).toEqual(["next"]);
  });
});
