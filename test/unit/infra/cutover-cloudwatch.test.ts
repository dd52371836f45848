// A serverless cache's numbers for `status` (cloudWatchServerlessMetrics in infra/cutover.ts): the
// GetMetricData query it sends (namespace AWS/ElastiCache, dimension clusterId) and how the
// answer becomes the warmth rule's totals, with every set counted as a possibly vivified miss.

import type { GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { describe, expect, it } from "vitest";
import { cloudWatchServerlessMetrics } from "../../../infra/cutover.ts";

function fakeCloudWatch(values: Record<string, number[]>) {
  const sent: GetMetricDataCommand["input"][] = [];
  const send = async (command: GetMetricDataCommand) => {
    sent.push(command.input);
    return {
      MetricDataResults: Object.entries(values).map(([Id, Values]) => ({ Id, Values })),
      $metadata: {},
    };
  };
  return { sent, cloudwatch: { send } as never };
}

describe("cloudWatchServerlessMetrics", () => {
  it("asks for CurrItems, GetHits, GetMisses and CmdSet of the cache by its clusterId", async () => {
    const { sent, cloudwatch } = fakeCloudWatch({
      items: [120, 100],
      hits: [600, 300],
      misses: [50, 50],
      sets: [80, 20],
    });
    const numbers = await cloudWatchServerlessMetrics(cloudwatch, 30)("svc-prod-new");
    expect(numbers).toEqual({ currItems: 120, getHits: 900, getMisses: 100, cmdSet: 100 });
    const queries = sent[0]!.MetricDataQueries!;
    expect(
      queries.map((q) => [q.Id, q.MetricStat!.Metric!.MetricName, q.MetricStat!.Stat]),
    ).toEqual([
      ["hits", "GetHits", "Sum"],
      ["misses", "GetMisses", "Sum"],
      ["sets", "CmdSet", "Sum"],
      ["items", "CurrItems", "Maximum"],
    ]);
    for (const query of queries) {
      expect(query.MetricStat!.Metric).toMatchObject({
        Namespace: "AWS/ElastiCache",
        Dimensions: [{ Name: "clusterId", Value: "svc-prod-new" }],
      });
    }
    const window = sent[0]!.EndTime!.getTime() - sent[0]!.StartTime!.getTime();
    expect(window).toBe(30 * 60_000);
  });

  it("rejects when CloudWatch has no CurrItems for the cache", async () => {
    const { cloudwatch } = fakeCloudWatch({ hits: [1] });
    await expect(cloudWatchServerlessMetrics(cloudwatch, 60)("svc-prod-new")).rejects.toThrow(
      "CloudWatch has no CurrItems for svc-prod-new in the last 60 min",
    );
  });
});
