// The live view's top line (infra/local/live/recommend.ts): each phase's next step, judged for the
// fallback phase by the warmth rule of `npm run cutover -- status` over the clusters' stats.

import { describe, expect, it } from "vitest";
import { clusterRole, recommendStep } from "../../../infra/local/live/recommend.ts";

const totals = (currItems: number, getHits: number, getMisses: number) => ({
  currItems,
  getHits,
  getMisses,
  hitRatio: getHits + getMisses === 0 ? null : getHits / (getHits + getMisses),
});

describe("recommendStep", () => {
  const warm = { new: totals(90, 95, 5), old: totals(100, 95, 5) };
  const cold = { new: totals(10, 20, 80), old: totals(100, 95, 5) };

  it("keeps the old cluster while new is cold, and says why", () => {
    const step = recommendStep("fallback", cold);
    expect(step.code).toBe("wait");
    expect(step.step).toBe("new is cold: keep the old cluster");
    expect(step.reason).toBe("hit ratio 20.0% < 0.9 x old's 95.0%; items 10 < 0.5 x old's 100");
  });

  it("moves on once new is warm: phase new (fallback), or removing old (main's cutover phase)", () => {
    expect(recommendStep("fallback", warm)).toMatchObject({
      code: "deploy-new",
      step: "new looks warm: deploy phase new everywhere, then remove old",
    });
    expect(recommendStep("cutover", warm)).toMatchObject({
      code: "deploy-new",
      step: "new looks warm: deploy with keepOldCluster=false",
    });
  });

  it("cannot judge without stats from both clusters, and keeps old then", () => {
    expect(recommendStep("fallback", { new: warm.new, old: undefined })).toEqual({
      code: "unknown",
      step: "keep the old cluster",
      reason: "cannot judge: no stats from old",
    });
    expect(recommendStep(undefined, warm).code).toBe("unknown");
    expect(recommendStep("sideways", warm)).toEqual({
      code: "unknown",
      step: 'unknown phase "sideways"',
    });
  });

  it("gives the runbook's next step for the other phases", () => {
    expect(recommendStep("single", cold).code).toBe("none");
    expect(recommendStep("prepare", cold).code).toBe("deploy-fallback");
    expect(recommendStep("new", cold).code).toBe("remove-old");
  });
});

describe("clusterRole", () => {
  it("says what each cluster does in each phase, and nothing for a cluster the phase does not use", () => {
    expect(clusterRole("cutover", "old")).toBe(clusterRole("fallback", "old"));
    expect(clusterRole("fallback", "new")).toMatch(/^read first/);
    expect(clusterRole("prepare", "old")).toMatch(/^reads and writes/);
    expect(clusterRole("single", "old")).toBeUndefined();
    expect(clusterRole("sideways", "new")).toBeUndefined();
  });
});
