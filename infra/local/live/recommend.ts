// The top line of the live view: the phase the functions run (as GET /health reports it), what
// each cluster does in it, and the next step of the runbook — the one `npm run cutover -- status`
// would recommend, by the same code: the local stack runs one version, so its phase (and its old
// endpoint, if any) is one DeployedVersion; warmth is warmthVerdict (isWarm in infra/cutover.ts)
// over the clusters' `stats`, read by the same statsTotals; judgeSteps (infra/cutoverPhases.ts)
// judges the steps, and nextLine words the result as `status` prints it. Nothing here decides.

import { CUTOVER_PHASES, type CutoverPhase } from "../../../lib/cache/config.ts";
import { type StatsTotals, type Verdict, warmthVerdict } from "../../cutover.ts";
import {
  type DeployedVersion,
  judgeSteps,
  nextLine,
  type PhaseReport,
  unreadableReport,
} from "../../cutoverPhases.ts";

/** CACHE_CUTOVER_PHASE as GET /health reports it: "single" | "prepare" | "fallback" | "new". */
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
  return roles[phase]?.[role];
}

/** The page's data-code for the next step (what the browser test and a person's eye key on). */
export type StepCode =
  | "none"
  | "deploy-single"
  | "deploy-prepare"
  | "deploy-fallback"
  | "deploy-new"
  | "remove-old"
  | "wait"
  | "unknown";

export interface Recommendation {
  code: StepCode;
  /** The step as `status` prints it after "next: ". */
  step: string;
  /** Why: judgeSteps' reason for that step (with the warmth verdict for step new). */
  reason?: string;
}

/** What the local stack runs: the phase from GET /health, and the old cluster it is given. */
export interface LocalDeployment {
  /** Undefined while /health has not answered (phaseError says why). */
  phase: Phase | undefined;
  phaseError?: string;
  /** CACHE_OLD_ENDPOINT of the stack ("" without an old cluster). */
  oldEndpoint: string;
  oldTls: boolean;
}

/** Per cluster: stats totals over its nodes, or undefined when not every node answered. */
export interface ClusterTotals {
  new: StatsTotals | undefined;
  old: StatsTotals | undefined;
}

/** The local stack as the one version `status` would find deployed. */
export function localVersion(deployment: LocalDeployment & { phase: Phase }): DeployedVersion {
  const known = (CUTOVER_PHASES as readonly string[]).includes(deployment.phase);
  return {
    functionName: "local",
    qualifier: "$LATEST",
    via: ["npm run dev"],
    phase: known ? (deployment.phase as CutoverPhase) : undefined,
    oldEndpoint: deployment.oldEndpoint,
    oldDiscovery: false,
    oldTls: deployment.oldTls,
    ...(!known && { error: `unknown phase "${deployment.phase}"` }),
  };
}

/** The step `npm run cutover -- status` would recommend for the local stack. */
export function recommendStep(deployment: LocalDeployment, totals: ClusterTotals): Recommendation {
  const verdict = warmthVerdict(totals);
  const report =
    deployment.phase === undefined
      ? unreadableReport(
          new Error(deployment.phaseError ?? "the app's GET /health has not answered yet"),
        )
      : judgeSteps([localVersion({ ...deployment, phase: deployment.phase })], verdict.warm);
  return recommendation(report, verdict);
}

function recommendation(report: PhaseReport, verdict: Verdict): Recommendation {
  const step = nextLine(report);
  const next = report.next;
  if (report.error !== undefined) return { code: "unknown", step };
  if (next === undefined) return { code: "none", step };
  const reason = next.step === "new" ? `${next.reason}; ${verdict.message}` : next.reason;
  const broken = report.versions.some((version) => version.phase === undefined);
  const code: StepCode = next.safe
    ? next.step === "remove old"
      ? "remove-old"
      : `deploy-${next.step}`
    : broken
      ? "unknown"
      : "wait";
  return { code, step, reason };
}
