// The cutover phase every deployed function of a stage runs, read through the Lambda API, and
// which step of the runbook is safe from here (`npm run cutover -- status`, see cutover.ts).
//
// A stage's functions are found by the Serverless naming, `<service>-<stage>-<function>`. Of each
// function every version that can receive traffic counts: $LATEST, and every version an alias
// points at (weighted aliases included: a gradual deployment runs two versions at once). A
// version's phase is what its environment makes of CACHE_CUTOVER_PHASE, parsed by the same
// cacheConfigFromEnv the function runs at cold start (so a version that would not start says so).
//
// The rule for every step (DESIGN.md: neighbouring phases must be safe at the same time): while
// a step rolls out, the versions already running and the ones being deployed run side by side,
// so deploying phase P is safe only if every version now running is P or a neighbour of P
// (single - prepare - fallback - new). That also makes a rollback (deploying the phase before)
// safe exactly when the forward step was. On top of it: `new` only once new is warm (the warmth
// verdict of cutover.ts), and removing the old cluster only once every version runs `new`.

import {
  GetFunctionConfigurationCommand,
  type GetFunctionConfigurationCommandOutput,
  ListAliasesCommand,
  type ListAliasesCommandOutput,
  ListFunctionsCommand,
  type ListFunctionsCommandOutput,
} from "@aws-sdk/client-lambda";
import { type CutoverPhase, cacheConfigFromEnv } from "../lib/cache/config.ts";

/** The part of LambdaClient this tool uses (tests pass a fake). */
export interface LambdaSender {
  send(command: ListFunctionsCommand): Promise<ListFunctionsCommandOutput>;
  send(command: ListAliasesCommand): Promise<ListAliasesCommandOutput>;
  send(command: GetFunctionConfigurationCommand): Promise<GetFunctionConfigurationCommandOutput>;
}

/** One version of one function that can receive traffic, and the phase it runs. */
export interface DeployedVersion {
  functionName: string;
  /** "$LATEST" or a version number. */
  qualifier: string;
  /** How traffic reaches it: "$LATEST", or the aliases (with their weight when split). */
  via: string[];
  /** Undefined when its environment would stop it at init (see error). */
  phase: CutoverPhase | undefined;
  /** CACHE_OLD_ENDPOINT, CACHE_OLD_DISCOVERY and CACHE_OLD_TLS as deployed ("" without an old cluster). */
  oldEndpoint: string;
  oldDiscovery: boolean;
  oldTls: boolean;
  error?: string;
}

export type Step = "prepare" | "fallback" | "new" | "remove old";

export interface StepVerdict {
  step: Step;
  safe: boolean;
  /** True when every version already runs it (for "remove old": none has an old cluster). */
  done: boolean;
  reason: string;
}

export interface PhaseReport {
  versions: DeployedVersion[];
  /** Each step of the runbook, in order, with whether it may be deployed now. */
  steps: StepVerdict[];
  /**
   * The step to take next: the one after the earliest phase any version runs (so a rollout in
   * progress is finished first); undefined when the cutover is complete (or nothing could be read).
   */
  next: StepVerdict | undefined;
  /** Why the deployed functions could not be read, when they could not. */
  error?: string;
}

const RANK: Record<CutoverPhase, number> = { single: 0, prepare: 1, fallback: 2, new: 3 };

/** Every version of the stage's functions that can receive traffic, with its phase. */
export async function deployedVersions(
  lambda: LambdaSender,
  service: string,
  stage: string,
): Promise<DeployedVersion[]> {
  const prefix = `${service}-${stage}-`;
  const names: string[] = [];
  let marker: string | undefined;
  do {
    const page = await lambda.send(new ListFunctionsCommand({ Marker: marker }));
    for (const fn of page.Functions ?? []) {
      if (fn.FunctionName?.startsWith(prefix)) names.push(fn.FunctionName);
    }
    marker = page.NextMarker;
  } while (marker);
  const versions = await Promise.all(names.sort().map((name) => versionsOf(lambda, name)));
  return versions.flat();
}

async function versionsOf(lambda: LambdaSender, functionName: string): Promise<DeployedVersion[]> {
  const via = new Map<string, string[]>([["$LATEST", ["$LATEST"]]]);
  const route = (qualifier: string, how: string) =>
    via.set(qualifier, [...(via.get(qualifier) ?? []), how]);
  let marker: string | undefined;
  do {
    const page = await lambda.send(
      new ListAliasesCommand({ FunctionName: functionName, Marker: marker }),
    );
    for (const alias of page.Aliases ?? []) {
      const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
      const extra = Object.values(weights).reduce((total, weight) => total + weight, 0);
      if (alias.FunctionVersion !== undefined) {
        const share = extra > 0 ? ` (${Math.round((1 - extra) * 100)}%)` : "";
        route(alias.FunctionVersion, `alias ${alias.Name}${share}`);
      }
      for (const [version, weight] of Object.entries(weights)) {
        if (weight > 0) route(version, `alias ${alias.Name} (${Math.round(weight * 100)}%)`);
      }
    }
    marker = page.NextMarker;
  } while (marker);
  return Promise.all(
    [...via].map(async ([qualifier, ways]) => {
      const config = await lambda.send(
        new GetFunctionConfigurationCommand({ FunctionName: functionName, Qualifier: qualifier }),
      );
      return versionFromEnv(functionName, qualifier, ways, config.Environment?.Variables ?? {});
    }),
  );
}

function versionFromEnv(
  functionName: string,
  qualifier: string,
  via: string[],
  env: Record<string, string>,
): DeployedVersion {
  const version: DeployedVersion = {
    functionName,
    qualifier,
    via,
    phase: undefined,
    oldEndpoint: (env.CACHE_OLD_ENDPOINT ?? "").trim().replace(/^none$/, ""),
    oldDiscovery: (env.CACHE_OLD_DISCOVERY ?? "").trim() === "true",
    oldTls: (env.CACHE_OLD_TLS ?? "").trim() === "true",
  };
  try {
    version.phase = cacheConfigFromEnv(env).phase;
  } catch (error) {
    version.error = (error as Error).message;
  }
  return version;
}

/** Which step of the runbook may be deployed now (see the file comment). */
export function judgeSteps(versions: readonly DeployedVersion[], newWarm: boolean): PhaseReport {
  const broken = versions.filter((v) => v.phase === undefined);
  const running = versions.filter((v) => v.phase !== undefined);
  const label = (v: DeployedVersion) => `${v.functionName}:${v.qualifier}`;
  const steps: StepVerdict[] = (["prepare", "fallback", "new"] as const).map((step) => {
    const done = running.length > 0 && running.every((v) => v.phase === step);
    const far = running.filter((v) => Math.abs(RANK[v.phase!] - RANK[step]) > 1);
    let reason: string;
    let safe = broken.length === 0 && far.length === 0 && running.length > 0;
    if (broken.length > 0) {
      reason = `cannot judge: ${broken.map(label).join(", ")} would not start (${broken[0]!.error})`;
    } else if (running.length === 0) {
      reason = "no deployed function found";
    } else if (far.length > 0) {
      reason = `${far.map((v) => `${label(v)} runs ${v.phase}`).join(", ")}: more than one step from ${step} (deploy the phases in between everywhere first)`;
    } else if (step === "new" && !newWarm) {
      safe = false;
      reason = "new is not warm yet (see the verdict above): wait, then deploy new";
    } else {
      reason = done
        ? `every version runs ${step}`
        : `every version runs ${step} or a neighbour of it`;
    }
    return { step, safe, done, reason };
  });
  const withOld = running.filter((v) => v.oldEndpoint !== "");
  const notNew = running.filter((v) => v.phase !== "new");
  const removeDone = running.length > 0 && withOld.length === 0 && notNew.length === 0;
  steps.push({
    step: "remove old",
    safe: broken.length === 0 && running.length > 0 && notNew.length === 0,
    done: removeDone,
    reason:
      broken.length > 0
        ? "cannot judge: a version would not start"
        : notNew.length > 0
          ? `not while ${notNew.map((v) => `${label(v)} runs ${v.phase}`).join(", ")} (every version must run new first)`
          : removeDone
            ? "no version uses the old cluster any more"
            : "every version runs new: deploy with keepOldCluster=false",
  });
  // Next: the step after the earliest phase still running (finish a rollout before the next).
  const ranks = running.map((v) => RANK[v.phase!]);
  const earliest = ranks.length === 0 ? 0 : Math.min(...ranks);
  return { versions: [...versions], steps, next: removeDone ? undefined : steps[earliest] };
}

/**
 * The report when the deployed functions could not be read (no lambda:ListFunctions permission,
 * another account, a network failure): no step is called safe, and the reason says why.
 */
export function unreadableReport(error: unknown): PhaseReport {
  const reason = `cannot judge: the deployed functions could not be read (${(error as Error).message})`;
  const steps = (["prepare", "fallback", "new", "remove old"] as const).map(
    (step): StepVerdict => ({ step, safe: false, done: false, reason }),
  );
  return { versions: [], steps, next: undefined, error: reason };
}

/** The phases section `status` prints. */
export function formatPhases(report: PhaseReport): string {
  const lines = ["deployed versions and their phase:"];
  for (const v of report.versions) {
    const phase = v.phase ?? `would not start: ${v.error}`;
    lines.push(`  ${v.functionName}:${v.qualifier}  ${phase}  (${v.via.join(", ")})`);
  }
  if (report.versions.length === 0)
    lines.push(report.error === undefined ? "  (none found)" : "  (unknown)");
  lines.push("", "steps:");
  for (const step of report.steps) {
    const state = step.done ? "done" : step.safe ? "SAFE" : "NOT SAFE";
    lines.push(`  ${step.step.padEnd(11)}${state.padEnd(9)}${step.reason}`);
  }
  lines.push("", `next: ${nextLine(report)}`);
  return lines.join("\n");
}

/** The next step in a few words, as `status` prints it after "next: " (and the live view shows). */
export function nextLine(report: PhaseReport): string {
  if (report.error !== undefined) return report.error;
  if (report.next === undefined) return "nothing, the cutover is complete";
  return `${report.next.step} — ${report.next.safe ? "safe to deploy now" : "not safe yet"}`;
}
