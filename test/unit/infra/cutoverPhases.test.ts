// `npm run cutover -- status`, the phases part (infra/cutoverPhases.ts), against a fake Lambda API:
// which versions of the stage's functions can receive traffic ($LATEST and every version an
// alias points at, weighted aliases included), the phase each one's environment makes, and
// which step of the runbook is safe: only one whose phase is the same as, or a neighbour of,
// every phase running now (a `single` version placed by the cluster it really reads: old, or the
// new cache); `new` only when new is warm; removing old only when all run `new`; with nothing
// deployed, a first deploy of single or prepare; complete only when every version runs `new`
// without an old cluster.

import {
  type FunctionConfiguration,
  GetFunctionConfigurationCommand,
  ListAliasesCommand,
  ListFunctionsCommand,
} from "@aws-sdk/client-lambda";
import { describe, expect, it } from "vitest";
import {
  type DeployedVersion,
  deployedVersions,
  formatPhases,
  judgeSteps,
  type LambdaSender,
} from "../../../infra/cutoverPhases.ts";

interface FakeFunction {
  name: string;
  /** Environment by qualifier ("$LATEST", "3", ...). */
  versions: Record<string, Record<string, string>>;
  aliases?: Array<{ name: string; version: string; weights?: Record<string, number> }>;
}

/** A Lambda API answering from `functions`, two per page, recording every request. */
function fakeLambda(functions: readonly FakeFunction[]): LambdaSender & { requests: string[] } {
  const requests: string[] = [];
  const send = async (command: unknown): Promise<unknown> => {
    if (command instanceof ListFunctionsCommand) {
      const start = Number(command.input.Marker ?? 0);
      requests.push(`ListFunctions ${start}`);
      const page = functions.slice(start, start + 2);
      return {
        Functions: page.map((fn): FunctionConfiguration => ({ FunctionName: fn.name })),
        NextMarker: start + 2 < functions.length ? String(start + 2) : undefined,
      };
    }
    if (command instanceof ListAliasesCommand) {
      const fn = functions.find((f) => f.name === command.input.FunctionName)!;
      requests.push(`ListAliases ${fn.name}`);
      return {
        Aliases: (fn.aliases ?? []).map((alias) => ({
          Name: alias.name,
          FunctionVersion: alias.version,
          RoutingConfig: alias.weights && { AdditionalVersionWeights: alias.weights },
        })),
      };
    }
    if (command instanceof GetFunctionConfigurationCommand) {
      const fn = functions.find((f) => f.name === command.input.FunctionName)!;
      const qualifier = command.input.Qualifier ?? "$LATEST";
      requests.push(`GetFunctionConfiguration ${fn.name}:${qualifier}`);
      return { Environment: { Variables: fn.versions[qualifier] } };
    }
    throw new Error(`unexpected command ${String(command)}`);
  };
  return { requests, send: send as LambdaSender["send"] };
}

const both = { CACHE_NEW_ENDPOINT: "new.example:11211", CACHE_OLD_ENDPOINT: "old.example:11211" };
const inPhase = (phase: string) => ({ ...both, CACHE_CUTOVER_PHASE: phase });
const single = { CACHE_NEW_ENDPOINT: "old.example:11211" };
/** `single` on the new cache (after the old cluster was removed, with no phase given). */
const singleOnNew = { CACHE_NEW_ENDPOINT: "NEW.example:11211 " };
const done = { CACHE_NEW_ENDPOINT: "new.example:11211", CACHE_CUTOVER_PHASE: "new" };
/** The stack's new cache as ElastiCache reports it (cutover.ts passes it to judgeSteps). */
const newCache = ["new.example:11211"];

/** Versions of one function each, in the given phases (environments). */
function versions(...envs: Array<Record<string, string>>): DeployedVersion[] {
  return envs.map((env, i) => ({
    functionName: `svc-prod-fn${i}`,
    qualifier: "$LATEST",
    via: ["$LATEST"],
    phase: (env.CACHE_CUTOVER_PHASE ?? (env.CACHE_OLD_ENDPOINT ? "fallback" : "single")) as never,
    oldEndpoint: env.CACHE_OLD_ENDPOINT ?? "",
    oldDiscovery: false,
    oldTls: false,
    newEndpoint: env.CACHE_NEW_ENDPOINT ?? "",
  }));
}

const verdicts = (report: ReturnType<typeof judgeSteps>) =>
  Object.fromEntries(
    report.steps.map((s) => [s.step, s.done ? "done" : s.safe ? "safe" : "not safe"]),
  );

describe("deployedVersions", () => {
  it("finds the stage's functions by name, and every version an alias routes traffic to", async () => {
    const lambda = fakeLambda([
      { name: "other-prod-get", versions: { $LATEST: inPhase("new") } },
      {
        name: "svc-prod-getProduct",
        versions: {
          $LATEST: inPhase("fallback"),
          "7": inPhase("fallback"),
          "6": inPhase("prepare"),
        },
        aliases: [{ name: "live", version: "7", weights: { "6": 0.25 } }],
      },
      { name: "svc-prod-health", versions: { $LATEST: { ...both, CACHE_CUTOVER_PHASE: "bogus" } } },
      { name: "svc-staging-getProduct", versions: { $LATEST: single } },
    ]);

    const found = await deployedVersions(lambda, "svc", "prod");

    expect(
      found.map((v) => [`${v.functionName}:${v.qualifier}`, v.phase ?? "error", v.via.join(", ")]),
    ).toEqual([
      ["svc-prod-getProduct:$LATEST", "fallback", "$LATEST"],
      ["svc-prod-getProduct:7", "fallback", "alias live (75%)"],
      ["svc-prod-getProduct:6", "prepare", "alias live (25%)"],
      ["svc-prod-health:$LATEST", "error", "$LATEST"],
    ]);
    expect(found[3]!.error).toContain("CACHE_CUTOVER_PHASE must be one of");
    expect(found[0]!.oldEndpoint).toBe("old.example:11211");
    expect(lambda.requests.filter((r) => r.startsWith("ListFunctions"))).toEqual([
      "ListFunctions 0",
      "ListFunctions 2",
    ]);
  });
});

describe("judgeSteps", () => {
  it("before the cutover: prepare is safe, fallback is not while any version runs single", () => {
    const report = judgeSteps(versions(single, single), false, newCache);
    expect(verdicts(report)).toEqual({
      single: "done",
      prepare: "safe",
      fallback: "not safe",
      new: "not safe",
      "remove old": "not safe",
    });
    expect(report.next?.step).toBe("prepare");
    // Status cannot see whether new got copies before (a fallback or new version ran on it).
    expect(report.steps[1]!.reason).toContain(
      "if any version ever ran fallback or new on it, flush new (flush_all on every node) before deploying prepare",
    );
    expect(report.steps[2]!.reason).toMatch(
      /svc-prod-fn0:\$LATEST runs single, .*: more than one step from fallback/,
    );
  });

  it("during the prepare rollout (single beside prepare): prepare stays safe, fallback does not", () => {
    const report = judgeSteps(versions(single, inPhase("prepare")), false);
    expect(verdicts(report)).toMatchObject({
      single: "safe",
      prepare: "safe",
      fallback: "not safe",
    });
  });

  it("prepare everywhere: fallback is safe (and prepare done); new is not", () => {
    const report = judgeSteps(versions(inPhase("prepare"), inPhase("prepare")), true);
    expect(verdicts(report)).toEqual({
      single: "safe", // the rollback to one cluster (old), on a condition status cannot see:
      prepare: "done",
      fallback: "safe",
      new: "not safe",
      "remove old": "not safe",
    });
    expect(report.steps[0]!.reason).toContain(
      "as a rollback, only if no version has run fallback or new since new was last flushed (status cannot see that: check the deploy history) — else roll back to prepare only",
    );
    expect(report.next?.step).toBe("fallback");
  });

  it("fallback everywhere: new only once new is warm; rolling back to prepare is safe", () => {
    const cold = judgeSteps(versions(inPhase("fallback"), both), false);
    expect(verdicts(cold)).toMatchObject({
      single: "not safe",
      prepare: "safe",
      fallback: "done",
      new: "not safe",
    });
    expect(cold.steps[3]!.reason).toContain("new is not warm yet");
    // Back from fallback to prepare needs no flush: prepare's invalidations reach new.
    expect(cold.steps[1]!.reason).toBe("every version runs prepare or a neighbour of it");
    const warm = judgeSteps(versions(inPhase("fallback"), both), true);
    expect(verdicts(warm)).toMatchObject({ new: "safe", "remove old": "not safe" });
  });

  it("new everywhere: removing old is safe; once no version has an old endpoint, it is done", () => {
    expect(verdicts(judgeSteps(versions(inPhase("new"), inPhase("new")), true))).toEqual({
      single: "not safe",
      prepare: "not safe",
      fallback: "safe",
      new: "done",
      "remove old": "safe",
    });
    const finished = judgeSteps(versions(done, done), true);
    expect(verdicts(finished)).toEqual({
      single: "not safe",
      prepare: "not safe",
      fallback: "not safe", // no way back once old is gone: old missed every invalidation since
      new: "done",
      "remove old": "done",
    });
    expect(finished.steps[2]!.reason).toContain("no way back to fallback");
    expect(finished.steps[3]!.reason).toBe("every version runs new");
    // Old gone and new cold (or old's stats gone with it): new is the only cache, nothing to wait for.
    expect(verdicts(judgeSteps(versions(done, done), false))).toMatchObject({ new: "done" });
    expect(finished.next).toBeUndefined();
    expect(formatPhases(finished)).toContain("next: nothing, the cutover is complete");
  });

  it("refuses every step while versions run phases more than one step apart, or one would not start", () => {
    const apart = judgeSteps(versions(single, inPhase("fallback")), true);
    expect(verdicts(apart)).toEqual({
      single: "not safe",
      prepare: "safe",
      fallback: "not safe",
      new: "not safe",
      "remove old": "not safe",
    });
    const broken = versions(inPhase("prepare"));
    broken.push({ ...broken[0]!, functionName: "svc-prod-bad", phase: undefined, error: "bad" });
    const report = judgeSteps(broken, true);
    expect(report.steps.every((s) => !s.safe)).toBe(true);
    expect(report.steps[0]!.reason).toContain("svc-prod-bad:$LATEST would not start");
    expect(formatPhases(report)).toContain("NOT SAFE");
  });

  it("places a single version by the cluster it reads: on the new cache it is no neighbour of prepare", () => {
    // A PUT through single-on-new deletes in new only, while prepare serves old's copy.
    const mixed = judgeSteps(versions(singleOnNew, inPhase("prepare")), false, newCache);
    expect(verdicts(mixed)).toEqual({
      single: "not safe",
      prepare: "not safe",
      fallback: "not safe",
      new: "not safe",
      "remove old": "not safe",
    });
    expect(mixed.steps[1]!.reason).toContain("svc-prod-fn0:$LATEST runs single on the new cache");
    // The same single version on old is prepare's neighbour.
    expect(
      verdicts(judgeSteps(versions(single, inPhase("prepare")), false, newCache)).prepare,
    ).toBe("safe");
    // Without ElastiCache's answer, what the two-cluster versions call new tells it apart too.
    expect(verdicts(judgeSteps(versions(singleOnNew, inPhase("prepare")), false)).prepare).toBe(
      "not safe",
    );
  });

  it("after removal with no phase, new is safe however cold new looks: old is gone, not colder", () => {
    const report = judgeSteps(versions(singleOnNew, singleOnNew), false, newCache);
    expect(verdicts(report)).toMatchObject({ new: "safe", fallback: "not safe" });
    expect(report.next).toMatchObject({ step: "new", safe: true });
  });

  it("after removal with no phase (single on the new cache): next is new, never prepare, and not complete", () => {
    const report = judgeSteps(versions(singleOnNew, singleOnNew), true, newCache);
    expect(verdicts(report)).toEqual({
      single: "not safe",
      prepare: "not safe",
      fallback: "not safe",
      new: "safe",
      "remove old": "safe",
    });
    expect(report.next).toMatchObject({ step: "new", safe: true });
    expect(formatPhases(report)).toContain("next: new — safe to deploy now");
    expect(formatPhases(report)).not.toContain("complete");
    // new without an old cluster everywhere is the finished state.
    const finished = judgeSteps(versions(done, done), true, newCache);
    expect(finished.next).toBeUndefined();
    expect(finished.steps.at(-1)!.reason).toContain("the cutover is complete");
  });

  it("with nothing deployed: a first deploy of single or prepare is safe, fallback and new are not", () => {
    const report = judgeSteps([], true, newCache);
    expect(verdicts(report)).toEqual({
      single: "safe",
      prepare: "safe",
      fallback: "not safe",
      new: "not safe",
      "remove old": "not safe",
    });
    expect(report.next).toMatchObject({ step: "prepare", safe: true });
    expect(report.steps[0]!.reason).toContain("check --region and --service");
    expect(formatPhases(report)).toContain("(none found)");
  });
});
