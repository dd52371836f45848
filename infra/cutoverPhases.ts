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
// so deploying phase P is safe only if every version now running is P or a neighbour of P. The
// order is by what each version really reads: single on the old cluster - prepare - fallback -
// new - single on the new cache. A `single` version runs one cluster, and which one is in its
// CACHE_NEW_ENDPOINT: the stack gives a `single` version the old cluster while there is one
// (step 0, and the rollback from prepare), so a `single` version whose endpoint is the new cache
// (the stack's, as ElastiCache reports it, or what the other versions call new) reads new, and is
// no neighbour of prepare or fallback (a PUT through it deletes in new only, while they read
// old's copy); beside `new` it is safe (both read and invalidate new alone, and every store reads
// new's tombstones as misses: leases.ts). That also makes a rollback (deploying the phase before) safe exactly when the
// forward step was — with one thing status cannot see, since it reads what runs now and not what
// ran before: rolling prepare back to single on old is safe only if no version has run fallback
// or new since new was last flushed (single reads no counter moved to new, and its invalidations
// miss the copies new got, which a later fallback would read), and going from single to prepare
// needs a new without such copies. The `single` and `prepare` reasons say so (caveats). On top of it: `new` only once new is warm (the warmth verdict of cutover.ts),
// and removing the old cluster only once every version runs `new`. The cutover is complete when
// every version runs `new` with no old cluster. With nothing deployed (a first deploy, or the
// wrong --region/--service), a first deploy of `single` or `prepare` is safe: nothing runs beside
// it; `fallback` and `new` are not (the runbook starts at prepare).

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
  /**
   * CACHE_NEW_ENDPOINT, CACHE_NEW_DISCOVERY and CACHE_NEW_TLS as deployed: for a `single` version
   * the one cluster it uses (absent: taken to be the old cluster, as before a cutover).
   */
  newEndpoint?: string;
  newDiscovery?: boolean;
  newTls?: boolean;
  error?: string;
}

export type Step = "single" | "prepare" | "fallback" | "new" | "remove old";

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

/**
 * Where a version stands, by what it reads: single on old (0), prepare, fallback, new, single on
 * the new cache (4). Two versions are neighbours when their positions differ by at most one.
 */
const RANK: Record<CutoverPhase, number> = { single: 0, prepare: 1, fallback: 2, new: 3 };
const SINGLE_ON_NEW = 4;

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
    newEndpoint: (env.CACHE_NEW_ENDPOINT ?? "").trim(),
    newDiscovery: (env.CACHE_NEW_DISCOVERY ?? "").trim() === "true",
    newTls: (env.CACHE_NEW_TLS ?? "").trim() === "true",
  };
  try {
    version.phase = cacheConfigFromEnv(env).phase;
  } catch (error) {
    version.error = (error as Error).message;
  }
  return version;
}

const sameEndpoint = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

/**
 * The endpoints that name the new cache: `newCache` (the stack's, as ElastiCache reports it) and
 * CACHE_NEW_ENDPOINT of every version in a two-cluster phase.
 */
function newCacheEndpoints(versions: readonly DeployedVersion[], newCache: readonly string[]) {
  const known = [...newCache];
  for (const v of versions) {
    if (v.phase !== undefined && v.phase !== "single" && v.newEndpoint) known.push(v.newEndpoint);
  }
  return known.filter((endpoint) => endpoint !== "");
}

/** The position of a version that starts (see RANK). */
function positionOf(version: DeployedVersion, newEndpoints: readonly string[]): number {
  const phase = version.phase!;
  if (phase !== "single") return RANK[phase];
  const endpoint = version.newEndpoint ?? "";
  const onNew = endpoint !== "" && newEndpoints.some((known) => sameEndpoint(known, endpoint));
  return onNew ? SINGLE_ON_NEW : RANK.single;
}

/** The single version that runs on the old cluster (its endpoint is old's), if any. */
export function singleOnOld(
  versions: readonly DeployedVersion[],
  newCache: readonly string[] = [],
): DeployedVersion | undefined {
  const known = newCacheEndpoints(versions, newCache);
  return versions.find(
    (v) => v.phase === "single" && v.newEndpoint && positionOf(v, known) === RANK.single,
  );
}

/**
 * What `status` cannot see (it reads what runs now, not what ran before) and the operator must
 * check, for the steps between single on old and fallback (the README's runbook, "Rolling back").
 */
const caveats: Record<"single" | "prepare", string> = {
  single:
    "; as a rollback, only if no version has run fallback or new since new was last flushed (status cannot see that: check the deploy history) — else roll back to prepare only: single cannot read counters moved to new, and its invalidations miss new's copies",
  prepare:
    "; from single, new must hold no value from before: if any version ever ran fallback or new on it, flush new (flush_all on every node) before deploying prepare",
};

/**
 * Which step of the runbook may be deployed now (see the file comment). `newCache`: the
 * endpoints of the stack's new cache as ElastiCache reports them (to tell a `single` version on
 * new from one on old); without them, what the two-cluster versions call new.
 */
export function judgeSteps(
  versions: readonly DeployedVersion[],
  newWarm: boolean,
  newCache: readonly string[] = [],
): PhaseReport {
  const broken = versions.filter((v) => v.phase === undefined);
  const running = versions.filter((v) => v.phase !== undefined);
  const known = newCacheEndpoints(versions, newCache);
  const position = new Map(running.map((v) => [v, positionOf(v, known)]));
  const label = (v: DeployedVersion) => `${v.functionName}:${v.qualifier}`;
  const runs = (v: DeployedVersion) =>
    `${label(v)} runs ${position.get(v) === SINGLE_ON_NEW ? "single on the new cache" : v.phase}`;
  const nothing =
    "no deployed function found (if the stage is deployed, check --region and --service)";
  const withOld = running.filter((v) => v.oldEndpoint !== "");
  // Step 5 is done (or every version runs single on the new cache): no version reads old, which
  // may be deleted or, if it is another team's, no longer invalidated by this app. There is no way
  // back to a phase that reads it, and new needs no warmth: it is the only cache.
  const oldGone =
    running.length > 0 &&
    withOld.length === 0 &&
    running.every((v) => position.get(v)! >= RANK.new);
  const steps: StepVerdict[] = (["single", "prepare", "fallback", "new"] as const).map((step) => {
    const done = running.length > 0 && running.every((v) => position.get(v) === RANK[step]);
    const far = running.filter((v) => Math.abs(position.get(v)! - RANK[step]) > 1);
    const firstDeploy = step === "single" || step === "prepare";
    let reason: string;
    let safe = broken.length === 0 && far.length === 0 && (running.length > 0 || firstDeploy);
    if (broken.length > 0) {
      reason = `cannot judge: ${broken.map(label).join(", ")} would not start (${broken[0]!.error})`;
    } else if (running.length === 0) {
      reason = firstDeploy
        ? `${nothing}: a first deploy of ${step} runs beside nothing`
        : `${nothing}: deploy prepare everywhere first`;
    } else if (oldGone && step !== "new") {
      safe = false;
      reason = `no version reads the old cluster any more (step 5 is done): there is no way back to ${step}`;
    } else if (far.length > 0) {
      reason = `${far.map(runs).join(", ")}: more than one step from ${step} (deploy the phases in between everywhere first)`;
    } else if (done) {
      reason = `every version runs ${step}`;
    } else if (step === "new" && !newWarm && !oldGone) {
      safe = false;
      reason = "new is not warm yet (see the verdict above): wait, then deploy new";
    } else {
      const fromSingle = running.some((v) => position.get(v) === RANK.single);
      const caveat = step === "single" || (step === "prepare" && fromSingle) ? caveats[step] : "";
      reason = `every version runs ${step} or a neighbour of it${caveat}`;
    }
    return { step, safe, done, reason };
  });
  const notNew = running.filter((v) => position.get(v)! < RANK.new);
  const removeDone =
    running.length > 0 && withOld.length === 0 && running.every((v) => v.phase === "new");
  steps.push({
    step: "remove old",
    safe: broken.length === 0 && running.length > 0 && notNew.length === 0,
    done: removeDone,
    reason:
      broken.length > 0
        ? "cannot judge: a version would not start"
        : running.length === 0
          ? nothing
          : notNew.length > 0
            ? `not while ${notNew.map(runs).join(", ")} (every version must run new first)`
            : removeDone
              ? "no version uses the old cluster any more: the cutover is complete"
              : "every version runs new (or single on the new cache): deploy with keepOldCluster=false and cutoverPhase=new",
  });
  // Next: the step after the earliest position still running (finish a rollout before the
  // next); single on the new cache goes to new (the finished state); nothing deployed: prepare.
  const byStep = (step: Step) => steps.find((s) => s.step === step)!;
  const ranks = running.map((v) => position.get(v)!);
  const earliest = ranks.length === 0 ? -1 : Math.min(...ranks);
  const order: Step[] = ["prepare", "fallback", "new", "remove old", "new"];
  const next = removeDone ? undefined : byStep(earliest < 0 ? "prepare" : order[earliest]!);
  return { versions: [...versions], steps, next };
}

/**
 * The report when the deployed functions could not be read (no lambda:ListFunctions permission,
 * another account, a network failure): no step is called safe, and the reason says why.
 */
export function unreadableReport(error: unknown): PhaseReport {
  const reason = `cannot judge: the deployed functions could not be read (${(error as Error).message})`;
  const steps = (["single", "prepare", "fallback", "new", "remove old"] as const).map(
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
