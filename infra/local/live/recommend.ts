// The top line of the live view: the phase the functions run (as GET /health reports it), what
// each cluster does in it, and the next step of the runbook that `npm run cutover -- status` would
// recommend — judged by the same warmth rule (isWarm in infra/cutover.ts) over the same
// memcached `stats` counters, read from the local clusters instead of ElastiCache's nodes.
//
// The phases are CACHE_CUTOVER_PHASE's (lib/cache/config.ts); "cutover" is what /health said
// before they existed (= fallback). `npm run cutover -- status` judges a step across every
// deployed version (infra/cutoverPhases.ts, judgeSteps); the local stack runs one version, so
// this maps its one phase to the next step, with the same warmth rule.

import { isWarm, type StatsTotals, warmthDefaults } from "../../cutover.ts";

/** "single" | "cutover" on main; "prepare" | "fallback" | "new" with CACHE_CUTOVER_PHASE. */
export type Phase = string;

export type Role = "new" | "old";

/** What a cluster does in a phase, in a few words; undefined when the phase does not use it. */
export function clusterRole(phase: Phase, role: Role): string | undefined {
  const roles: Record<string, Partial<Record<Role, string>>> = {
    single: { new: "the one cluster: reads, writes, invalidations" },
    prepare: {
      old: "reads and writes; invalidations",
      new: "tombstones of invalidations only; not read yet",
    },
    fallback: {
      new: "read first, written; tombstones of invalidations",
      old: "read on a miss in new (copied into new); invalidations",
    },
    new: {
      new: "reads, writes, invalidations (tombstones)",
      old: "no longer read (invalidations still delete there): remove it",
    },
  };
  return roles[phase === "cutover" ? "fallback" : phase]?.[role];
}

export type StepCode =
  | "none"
  | "deploy-fallback"
  | "wait"
  | "deploy-new"
  | "remove-old"
  | "unknown";

export interface Recommendation {
  code: StepCode;
  /** The step, as an operator would do it. */
  step: string;
  /** Why (the warmth rule's comparisons), when there is something to say. */
  reason?: string;
}

/** Per cluster: stats totals over its nodes, or undefined when not every node answered. */
export interface ClusterTotals {
  new: StatsTotals | undefined;
  old: StatsTotals | undefined;
}

/** The step the runbook takes next from `phase`, given both clusters' stats. */
export function recommendStep(phase: Phase | undefined, totals: ClusterTotals): Recommendation {
  switch (phase) {
    case undefined:
      return { code: "unknown", step: "cannot tell: the app's /health has not answered yet" };
    case "single":
      return { code: "none", step: "no cutover running: one cluster" };
    case "prepare":
      return {
        code: "deploy-fallback",
        step: "deploy phase fallback everywhere, once every version runs prepare",
      };
    case "new":
      return { code: "remove-old", step: "remove the old cluster (keepOldCluster=false)" };
    case "cutover":
    case "fallback": {
      const next =
        phase === "cutover"
          ? "deploy with keepOldCluster=false"
          : "deploy phase new everywhere, then remove old";
      if (totals.new === undefined || totals.old === undefined) {
        const silent = totals.new === undefined ? "new" : "old";
        return {
          code: "unknown",
          step: "keep the old cluster",
          reason: `cannot judge: no stats from ${silent}`,
        };
      }
      const { warm, reasons } = isWarm(totals.new, totals.old, warmthDefaults);
      return warm
        ? { code: "deploy-new", step: `new looks warm: ${next}`, reason: reasons.join("; ") }
        : { code: "wait", step: "new is cold: keep the old cluster", reason: reasons.join("; ") };
    }
    default:
      return { code: "unknown", step: `unknown phase "${phase}"` };
  }
}
