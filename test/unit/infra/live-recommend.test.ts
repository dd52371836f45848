// The live view's top line (infra/local/live/recommend.ts) is the step `npm run cutover -- status`
// would recommend: for every phase, with new cold, warm, or a cluster that does not answer, it
// equals judgeSteps' `next` for the one version the local stack runs, worded as status prints it.

import { describe, expect, it } from "vitest";
import { type StatsTotals, warmthVerdict } from "../../../infra/cutover.ts";
import { judgeSteps, nextLine } from "../../../infra/cutoverPhases.ts";
import {
  type ClusterTotals,
  clusterRole,
  type LocalDeployment,
  localVersion,
  recommendStep,
} from "../../../infra/local/live/recommend.ts";
import { CUTOVER_PHASES } from "../../../lib/cache/config.ts";

const totals = (currItems: number, getHits: number, getMisses: number, vivified = 0) => ({
  currItems,
  getHits,
  getMisses,
  vivified,
  hitRatio: (getHits - vivified) / (getHits + getMisses),
});

const oldTotals: StatsTotals = totals(100, 95, 5);
const situations: Record<string, ClusterTotals> = {
  cold: { new: totals(10, 20, 80), old: oldTotals },
  // Every read of new vivified a placeholder: 100 % by get_hits, 0 % by the rule.
  "cold under meta leases": { new: totals(100, 100, 0, 100), old: oldTotals },
  warm: { new: totals(90, 95, 5), old: oldTotals },
  "new dead": { new: undefined, old: oldTotals },
  "old dead": { new: totals(90, 95, 5), old: undefined },
};

function deployment(phase: string): LocalDeployment {
  // The stack has an old cluster in every phase but single (and may keep it in new).
  return { phase, oldEndpoint: phase === "single" ? "" : "127.0.0.1:11212", oldTls: false };
}

describe("recommendStep", () => {
  for (const phase of CUTOVER_PHASES) {
    for (const [name, clusters] of Object.entries(situations)) {
      it(`says what status would for phase ${phase}, new ${name}`, () => {
        const local = deployment(phase);
        const report = judgeSteps(
          [localVersion({ ...local, phase })],
          warmthVerdict(clusters).warm,
        );
        const shown = recommendStep(local, clusters);
        expect(shown.step).toBe(nextLine(report));
        expect(shown.step).toBe(
          `${report.next!.step} — ${report.next!.safe ? "safe to deploy now" : "not safe yet"}`,
        );
        expect(shown.reason).toContain(report.next!.reason);
      });
    }
  }

  it("calls prepare the next safe step from one cluster, whatever the stats", () => {
    for (const clusters of Object.values(situations)) {
      expect(recommendStep(deployment("single"), clusters)).toMatchObject({
        code: "deploy-prepare",
        step: "prepare — safe to deploy now",
      });
    }
  });

  it("calls fallback safe after prepare, new cold or not", () => {
    expect(recommendStep(deployment("prepare"), situations.cold!)).toMatchObject({
      code: "deploy-fallback",
      step: "fallback — safe to deploy now",
      reason: "every version runs fallback or a neighbour of it",
    });
  });

  it("waits in fallback while new is cold, and says why by the warmth rule", () => {
    expect(recommendStep(deployment("fallback"), situations.cold!)).toEqual({
      code: "wait",
      step: "new — not safe yet",
      reason:
        "new is not warm yet (see the verdict above): wait, then deploy new; new is cold, keep the old cluster (hit ratio 20.0% < 0.9 x old's 95.0%; items 10 < 0.5 x old's 100)",
    });
    expect(
      recommendStep(deployment("fallback"), situations["cold under meta leases"]!),
    ).toMatchObject({
      code: "wait",
      reason: expect.stringContaining("hit ratio 0.0% < 0.9 x old's 95.0%"),
    });
  });

  it("calls new safe once new is warm", () => {
    expect(recommendStep(deployment("fallback"), situations.warm!)).toMatchObject({
      code: "deploy-new",
      step: "new — safe to deploy now",
      reason: expect.stringContaining("new looks warm (hit ratio 95.0% >= 0.9 x old's 95.0%"),
    });
  });

  it("waits when a cluster does not answer: no stats, no verdict", () => {
    for (const dead of ["new dead", "old dead"] as const) {
      const role = dead === "new dead" ? "new" : "old";
      expect(recommendStep(deployment("fallback"), situations[dead]!)).toMatchObject({
        code: "wait",
        step: "new — not safe yet",
        reason: expect.stringContaining(
          `cannot judge (no stats from ${role}): keep the old cluster`,
        ),
      });
    }
    // Other steps do not depend on warmth: a dead cluster does not hold them back.
    expect(recommendStep(deployment("prepare"), situations["old dead"]!).code).toBe(
      "deploy-fallback",
    );
  });

  it("removes old once the stack runs new, and has nothing left without an old cluster", () => {
    expect(recommendStep(deployment("new"), situations.cold!)).toMatchObject({
      code: "remove-old",
      step: "remove old — safe to deploy now",
    });
    expect(
      recommendStep({ phase: "new", oldEndpoint: "", oldTls: false }, situations.cold!),
    ).toEqual({ code: "none", step: "nothing, the cutover is complete" });
  });

  it("cannot judge before /health answers, or for a phase no function would start with", () => {
    expect(
      recommendStep(
        { phase: undefined, phaseError: "connect ECONNREFUSED", oldEndpoint: "", oldTls: false },
        situations.warm!,
      ),
    ).toEqual({
      code: "unknown",
      step: "cannot judge: the deployed functions could not be read (connect ECONNREFUSED)",
    });
    const sideways = recommendStep(deployment("sideways"), situations.warm!);
    expect(sideways.code).toBe("unknown");
    expect(sideways.step).toBe("prepare — not safe yet");
    expect(sideways.reason).toBe(
      'cannot judge: local:$LATEST would not start (unknown phase "sideways")',
    );
  });
});

describe("clusterRole", () => {
  it("says what each cluster does in each phase, and nothing for a cluster the phase does not use", () => {
    expect(clusterRole("fallback", "new")).toMatch(/^read first/);
    expect(clusterRole("fallback", "old")).toMatch(/^read on a miss/);
    expect(clusterRole("prepare", "old")).toMatch(/^reads and writes/);
    expect(clusterRole("single", "old")).toBeUndefined();
    expect(clusterRole("sideways", "new")).toBeUndefined();
  });
});
