// The history checker: two app versions in neighbouring cutover phases serve interleaved product
// reads, product writes (origin write, then invalidation) and counter increments against real
// memcached processes, while faults strike (an invalidation command to old or new that fails, new
// flushed or restarted, old killed). Every operation's start, end and result is recorded, and the
// whole history is checked against the rule of the cutover (DESIGN.md, "Phases of a cutover"):
//
//   no read that starts after an acknowledged invalidation returns a value older than that write;
//   and, where no fault destroyed cached data, counters lose no increment, count none twice, and
//   a read never goes back behind a count already seen (both versions read the same value).
//
// Everything comes from a seed: the phases, the lease mode, the operations, the faults, and the
// interleaving (see scheduler.ts), so a seed replays its history. A failing history is shrunk by
// removing operations and faults while it still fails, replaying the recorded interleaving.

import { MemcacheClient } from "../../../lib/memcache/client.ts";
import type { MemcachedProcess } from "../../../tools/memcached.ts";
import {
  type PendingCommand,
  type Random,
  Scheduler,
  seededRandom,
  type TraceEntry,
} from "./scheduler.ts";
import {
  type AppVersion,
  buildVersion,
  type FaultInjector,
  type Phase,
  VersionedOrigin,
} from "./versions.ts";

/** Neighbouring phases: the versions that may run at the same time during a rollout. */
export const PAIRS = {
  "single+prepare": ["single", "prepare"],
  "prepare+fallback": ["prepare", "fallback"],
  "fallback+new": ["fallback", "new"],
} as const satisfies Record<string, readonly [Phase, Phase]>;

export type PairName = keyof typeof PAIRS;
const PAIR_NAMES = Object.keys(PAIRS) as PairName[];
const LEASE_MODES = ["meta", "lock", "off"] as const;

/** The products a history reads and writes (few, so that operations meet). */
const PRODUCTS = ["p1", "p2"] as const;

export type OpKind = "read" | "write" | "incr" | "count";

export interface OpSpec {
  id: number;
  /** Operations of one lane run one after another (one client); lanes run concurrently. */
  lane: number;
  /** 0: version A (the earlier phase), 1: version B. */
  version: 0 | 1;
  kind: OpKind;
  /** A product id or a counter name. */
  target: string;
}

export type FaultKind =
  | "old-delete-lost"
  | "old-delete-applied"
  | "new-invalidate-lost"
  | "new-invalidate-applied"
  | "flush-new"
  | "restart-new"
  | "kill-old";

/** Faults that destroy cached data: counters kept only in the cache cannot survive them. */
const DESTRUCTIVE: readonly FaultKind[] = ["flush-new", "restart-new", "kill-old"];

export interface FaultSpec {
  id: number;
  kind: FaultKind;
}

export type Decision =
  | { kind: "start"; op: number }
  | { kind: "step"; op: number; label: string }
  | { kind: "fault"; fault: number };

export interface Program {
  seed: number;
  pair: PairName;
  leaseMode: (typeof LEASE_MODES)[number];
  /** CacheAside's maxWaitMs: 0 = a reader that finds another's load in progress loads itself. */
  maxWaitMs: number;
  ops: OpSpec[];
  faults: FaultSpec[];
  /** A recorded interleaving to follow (shrinking); without it the seed's random source decides. */
  decisions?: Decision[];
}

export interface OpRecord extends OpSpec {
  start: number;
  end?: number;
  /** Product read: version; write: version made; incr/count: the counter's value. */
  value?: number;
  /** Read: x-cache; write: what the PUT said about the invalidation. */
  detail?: string;
  error?: string;
}

export interface Violation {
  message: string;
  ops: number[];
}

export interface HistoryRun {
  program: Program;
  records: OpRecord[];
  trace: TraceEntry[];
  decisions: Decision[];
  /** Faults as they fired: fault id -> step. */
  fired: Map<number, number>;
  violations: Violation[];
}

/** What a history runs against: the two memcached processes, reused across runs. */
export interface Servers {
  newMemcached: MemcachedProcess;
  oldMemcached: MemcachedProcess;
}

// ---- generating a program from a seed ----

export function generate(seed: number): Program {
  const random = seededRandom(seed);
  const pair = PAIR_NAMES[seed % PAIR_NAMES.length]!;
  const leaseMode = LEASE_MODES[Math.floor(seed / PAIR_NAMES.length) % LEASE_MODES.length]!;
  const maxWaitMs = random.chance(0.5) ? 0 : 60_000;
  const lanes = 2 + random.int(3);
  const count = 14 + random.int(22);
  const ops: OpSpec[] = [];
  for (let id = 1; id <= count; id++) {
    const roll = random.next();
    const kind: OpKind =
      roll < 0.45 ? "read" : roll < 0.7 ? "write" : roll < 0.9 ? "incr" : "count";
    const target = kind === "read" || kind === "write" ? random.pick(PRODUCTS) : "c1";
    ops.push({ id, lane: random.int(lanes), version: random.chance(0.5) ? 1 : 0, kind, target });
  }
  const kinds: FaultKind[] = [
    "old-delete-lost",
    "old-delete-applied",
    "new-invalidate-lost",
    "new-invalidate-applied",
    "flush-new",
    "restart-new",
    "kill-old",
  ];
  const faults = Array.from({ length: random.int(5) }, (_, i) => ({
    id: i + 1,
    kind: random.pick(kinds),
  }));
  return { seed, pair, leaseMode, maxWaitMs, ops, faults };
}

// ---- running a program ----

let runCount = 0;

/** Runs `program` against `servers` and checks its history. */
export async function runHistory(program: Program, servers: Servers): Promise<HistoryRun> {
  runCount++;
  const prefix = `h${runCount}-`;
  await healthy(servers);
  const scheduler = new Scheduler();
  const random: Random = seededRandom(program.seed ^ 0x5bd1e995);
  const records = new Map<number, OpRecord>();
  const armed: Array<{ cluster: "new" | "old"; mode: "lost" | "applied" }> = [];
  const faults: FaultInjector = {
    take(cluster, command) {
      const op = scheduler.current();
      if (op === undefined || records.get(op)?.kind !== "write") return undefined;
      const invalidating =
        command === "delete" ||
        command === "metaDelete" ||
        (cluster === "new" && command === "set");
      const index = armed.findIndex((fault) => fault.cluster === cluster);
      if (!invalidating || index < 0) return undefined;
      return armed.splice(index, 1)[0]!.mode;
    },
  };
  const origin = new VersionedOrigin(scheduler);
  const clusters = {
    newEndpoint: servers.newMemcached.endpoint,
    oldEndpoint: servers.oldMemcached.endpoint,
  };
  const build = (phase: Phase) =>
    buildVersion({
      phase,
      clusters,
      leaseMode: program.leaseMode,
      maxWaitMs: program.maxWaitMs,
      scheduler,
      faults,
      origin,
    });
  const versions: AppVersion[] = PAIRS[program.pair].map(build);
  // Before the history: the version before the cutover has cached every product in old, as a
  // warm old cluster holds what the app read before (outside any operation: no gates).
  const before = build("single");
  try {
    for (const product of PRODUCTS) await before.readProduct(`${prefix}${product}`);
  } finally {
    before.close();
  }
  const fired = new Map<number, number>();
  const decisions: Decision[] = [];
  const running = new Set<Promise<void>>();

  const start = (spec: OpSpec) => {
    const record: OpRecord = { ...spec, start: scheduler.step };
    records.set(spec.id, record);
    const version = versions[spec.version]!;
    const target = `${prefix}${spec.target}`;
    const done = scheduler
      .run(spec.id, async () => {
        try {
          await perform(version, spec.kind, target, record);
        } catch (error) {
          record.error = `${(error as Error).name}: ${(error as Error).message}`;
        }
        record.end = scheduler.step;
      })
      .finally(() => running.delete(done));
    running.add(done);
  };

  const fire = async (fault: FaultSpec) => {
    fired.set(fault.id, scheduler.step);
    await applyFault(fault.kind, servers, armed);
  };

  try {
    const finalOps = finalReads(program);
    const lanes = laneQueues([...program.ops]);
    let pendingFaults = [...program.faults];
    let replay = program.decisions === undefined ? undefined : [...program.decisions];
    let finalStarted = false;
    for (;;) {
      await scheduler.settle();
      const options = available(lanes, records, scheduler.pending());
      if (options.length === 0 && pendingFaults.length === 0) {
        // settle() returned, so nothing runs: the history is over, or its final reads are due.
        if (finalStarted) break;
        // Everything ran: each version reads the counter once more.
        finalStarted = true;
        lanes.push(...finalOps.map((op) => [op]));
        continue;
      }
      scheduler.step++;
      let decision: Decision | undefined;
      if (replay !== undefined) {
        decision = nextReplayed(replay, options, pendingFaults);
        if (decision === undefined) replay = undefined;
      }
      if (decision === undefined) {
        decision =
          pendingFaults.length > 0 && (options.length === 0 || random.chance(0.08))
            ? { kind: "fault", fault: pendingFaults[0]!.id }
            : random.pick(options);
      }
      decisions.push(decision);
      if (decision.kind === "fault") {
        const id = decision.fault;
        const fault = pendingFaults.find((f) => f.id === id)!;
        pendingFaults = pendingFaults.filter((f) => f.id !== id);
        await fire(fault);
      } else if (decision.kind === "start") {
        const id = decision.op;
        const lane = lanes.find((queue) => queue[0]?.id === id)!;
        start(lane.shift()!);
      } else {
        const { op, label } = decision;
        const command = scheduler.pending().find((p) => p.op === op && p.label === label)!;
        scheduler.release(command);
      }
    }
    const all = [...records.values()].sort((a, b) => a.id - b.id);
    return {
      program,
      records: all,
      trace: scheduler.trace,
      decisions,
      fired,
      violations: check(all, program, fired),
    };
  } finally {
    for (const version of versions) version.close();
  }
}

async function perform(
  version: AppVersion,
  kind: OpKind,
  target: string,
  record: OpRecord,
): Promise<void> {
  switch (kind) {
    case "read": {
      const read = await version.readProduct(target);
      record.value = read.version;
      record.detail = read.cache;
      return;
    }
    case "write": {
      const write = await version.writeProduct(target);
      record.value = write.version;
      record.detail = write.invalidated;
      return;
    }
    case "incr":
      record.value = Number(await version.increment(target));
      return;
    case "count":
      record.value = Number(await version.readCounter(target));
  }
}

/** One final counter read per version, after everything else. */
function finalReads(program: Program): OpSpec[] {
  const last = Math.max(0, ...program.ops.map((op) => op.id));
  return [0, 1].map((version, i) => ({
    id: last + 1 + i,
    lane: -1 - i,
    version: version as 0 | 1,
    kind: "count",
    target: "c1",
  }));
}

function laneQueues(ops: OpSpec[]): OpSpec[][] {
  const lanes = new Map<number, OpSpec[]>();
  for (const op of ops) lanes.set(op.lane, [...(lanes.get(op.lane) ?? []), op]);
  return [...lanes.keys()].sort((a, b) => a - b).map((lane) => lanes.get(lane)!);
}

/** What may happen next: a lane whose previous operation ended starts its next; a command goes. */
function available(
  lanes: OpSpec[][],
  records: Map<number, OpRecord>,
  pending: readonly PendingCommand[],
): Decision[] {
  const options: Decision[] = [];
  for (const queue of lanes) {
    const next = queue[0];
    if (next === undefined) continue;
    const busy = [...records.values()].some(
      (record) => record.lane === next.lane && record.end === undefined,
    );
    if (!busy) options.push({ kind: "start", op: next.id });
  }
  for (const command of pending)
    options.push({ kind: "step", op: command.op, label: command.label });
  return options;
}

/** The next recorded decision that is possible now (skipping those of removed ops and faults). */
function nextReplayed(
  replay: Decision[],
  options: readonly Decision[],
  faults: readonly FaultSpec[],
): Decision | undefined {
  while (replay.length > 0) {
    const decision = replay.shift()!;
    if (decision.kind === "fault") {
      if (faults.some((fault) => fault.id === decision.fault)) return decision;
      continue;
    }
    const match = options.find((option) => sameDecision(option, decision));
    if (match !== undefined) return match;
  }
  return undefined;
}

function sameDecision(a: Decision, b: Decision): boolean {
  if (a.kind === "fault" || b.kind === "fault") {
    return a.kind === b.kind && (a as { fault: number }).fault === (b as { fault: number }).fault;
  }
  if (a.kind !== b.kind || a.op !== b.op) return false;
  return a.kind === "start" || a.label === (b as { label: string }).label;
}

/** The faults that make the next invalidation command of a write fail, and how. */
const ARMING: Partial<Record<FaultKind, { cluster: "new" | "old"; mode: "lost" | "applied" }>> = {
  "old-delete-lost": { cluster: "old", mode: "lost" },
  "old-delete-applied": { cluster: "old", mode: "applied" },
  "new-invalidate-lost": { cluster: "new", mode: "lost" },
  "new-invalidate-applied": { cluster: "new", mode: "applied" },
};

async function applyFault(
  kind: FaultKind,
  servers: Servers,
  armed: Array<{ cluster: "new" | "old"; mode: "lost" | "applied" }>,
): Promise<void> {
  const arming = ARMING[kind];
  if (arming !== undefined) armed.push(arming);
  else if (kind === "flush-new") await flushAll(servers.newMemcached);
  else if (kind === "restart-new") {
    // SIGKILL: memcached acts on SIGTERM only at its next once-a-second clock tick.
    await servers.newMemcached.kill("SIGKILL");
    await servers.newMemcached.restart();
  } else await servers.oldMemcached.kill("SIGKILL");
}

/** Both memcached processes running (a killed old is started again, empty). */
async function healthy(servers: Servers): Promise<void> {
  for (const memcached of [servers.newMemcached, servers.oldMemcached]) {
    if (!(await answers(memcached))) await memcached.restart();
  }
}

async function answers(memcached: MemcachedProcess): Promise<boolean> {
  const client = new MemcacheClient({ servers: memcached.endpoint, timeoutMs: 2_000 });
  try {
    await client.version();
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

async function flushAll(memcached: MemcachedProcess): Promise<void> {
  const client = new MemcacheClient({ servers: memcached.endpoint, timeoutMs: 2_000 });
  try {
    await client.flushAll();
  } finally {
    client.close();
  }
}

// ---- the rule ----

export function check(
  records: readonly OpRecord[],
  program: Program,
  fired: ReadonlyMap<number, number>,
): Violation[] {
  const violations: Violation[] = [];
  const done = records.filter((r) => r.end !== undefined && r.error === undefined);
  for (const read of done.filter((r) => r.kind === "read")) {
    for (const write of done.filter((r) => r.kind === "write" && r.target === read.target)) {
      if (write.detail !== "complete" || write.end! >= read.start) continue;
      if (read.value! < write.value!) {
        violations.push({
          message: `read #${read.id} [${name(read)}] of ${read.target} started at step ${read.start} and returned version ${read.value} (${read.detail}), but write #${write.id} [${name(write)}] made version ${write.value} and its invalidation was acknowledged at step ${write.end}`,
          ops: [read.id, write.id],
        });
      }
    }
  }
  const destroyed = program.faults.some(
    (fault) => fired.has(fault.id) && DESTRUCTIVE.includes(fault.kind),
  );
  if (!destroyed) violations.push(...checkCounters(records));
  return violations;
}

/** Counters: distinct increments, reads never behind what an earlier operation saw, exact end. */
function checkCounters(records: readonly OpRecord[]): Violation[] {
  const violations: Violation[] = [];
  const counting = records.filter((r) => r.kind === "incr" || r.kind === "count");
  const ok = counting.filter((r) => r.end !== undefined && r.error === undefined);
  const increments = ok.filter((r) => r.kind === "incr");
  const seen = new Map<number, OpRecord>();
  for (const incr of increments) {
    const twin = seen.get(incr.value!);
    if (twin !== undefined) {
      violations.push({
        message: `increments #${twin.id} [${name(twin)}] and #${incr.id} [${name(incr)}] both returned ${incr.value}: one increment was lost`,
        ops: [twin.id, incr.id],
      });
    }
    seen.set(incr.value!, incr);
  }
  for (const later of ok) {
    for (const earlier of ok) {
      if (earlier.end! >= later.start) continue;
      const behind =
        later.kind === "incr" ? later.value! <= earlier.value! : later.value! < earlier.value!;
      if (behind) {
        violations.push({
          message: `${later.kind === "incr" ? "increment" : "counter read"} #${later.id} [${name(later)}] started at step ${later.start} and returned ${later.value}, behind ${earlier.value} which #${earlier.id} [${name(earlier)}] returned at step ${earlier.end}`,
          ops: [earlier.id, later.id],
        });
      }
    }
  }
  const finals = counting.slice(-2);
  const failed = counting.filter((r) => r.kind === "incr" && r.error !== undefined).length;
  if (finals.every((r) => r.error === undefined)) {
    const [a, b] = finals;
    if (a!.value !== b!.value) {
      violations.push({
        message: `the final counter reads differ: version A reads ${a!.value}, version B ${b!.value}`,
        ops: [a!.id, b!.id],
      });
    }
    const total = finals[0]!.value!;
    if (total < increments.length || total > increments.length + failed) {
      violations.push({
        message: `the counter ends at ${total} after ${increments.length} acknowledged increments (and ${failed} that failed)`,
        ops: finals.map((r) => r.id),
      });
    }
  }
  return violations;
}

function name(record: OpSpec): string {
  return record.version === 0 ? "A" : "B";
}

// ---- shrinking ----

/**
 * The shortest failing history found by removing operations (in halves, quarters, ... singles)
 * and faults while the history still breaks the rule, replaying the recorded interleaving.
 * Bounded by `budgetMs`.
 */
export async function shrink(
  failing: HistoryRun,
  servers: Servers,
  budgetMs = 90_000,
): Promise<{ run: HistoryRun; attempts: number }> {
  const deadline = Date.now() + budgetMs;
  let best = failing;
  let attempts = 0;
  const attempt = async (ops: OpSpec[], faults: FaultSpec[]): Promise<boolean> => {
    if (Date.now() > deadline) return false;
    attempts++;
    const program: Program = {
      ...best.program,
      ops,
      faults,
      decisions: best.decisions.filter(
        (d) =>
          (d.kind === "fault" && faults.some((f) => f.id === d.fault)) ||
          (d.kind !== "fault" && ops.some((op) => op.id === d.op)),
      ),
    };
    const run = await runHistory(program, servers);
    if (run.violations.length === 0) return false;
    best = run;
    return true;
  };
  let progress = true;
  while (progress && Date.now() < deadline) {
    progress = false;
    const ops = best.program.ops;
    for (
      let size = Math.max(1, Math.floor(ops.length / 2));
      size >= 1;
      size = Math.floor(size / 2)
    ) {
      for (let from = 0; from < best.program.ops.length; ) {
        const current = best.program.ops;
        const removed = new Set(current.slice(from, from + size).map((op) => op.id));
        if (
          await attempt(
            current.filter((op) => !removed.has(op.id)),
            best.program.faults,
          )
        ) {
          progress = true;
        } else {
          from += size;
        }
      }
      if (size === 1) break;
    }
    for (const fault of [...best.program.faults]) {
      const rest = best.program.faults.filter((f) => f.id !== fault.id);
      if (await attempt(best.program.ops, rest)) progress = true;
    }
  }
  return { run: best, attempts };
}

// ---- printing ----

const ONE_LINE: Record<OpKind, string> = {
  read: "GET product",
  write: "PUT product",
  incr: "POST counter",
  count: "GET counter",
};

export function describeProgram(program: Program): string {
  const [a, b] = PAIRS[program.pair];
  const waiting =
    program.maxWaitMs === 0
      ? "readers that find a load in progress load themselves"
      : "readers wait for a load in progress";
  return `seed ${program.seed}: version A in phase ${a}, version B in phase ${b}; leases ${program.leaseMode}; ${waiting}`;
}

/** The history as text: the operations, the faults, the commands in order, the violations. */
export function formatHistory(run: HistoryRun): string {
  const lines = [describeProgram(run.program), ""];
  lines.push(`operations (${run.records.length}; steps are the scheduler's decisions):`);
  for (const r of run.records) {
    const outcome =
      r.error !== undefined
        ? `failed: ${r.error}`
        : r.kind === "read"
          ? `version ${r.value} (${r.detail})`
          : r.kind === "write"
            ? `made version ${r.value}, invalidation ${r.detail}`
            : `value ${r.value}`;
    lines.push(
      `  #${r.id} [${name(r)}] ${ONE_LINE[r.kind]} ${r.target}, steps ${r.start}-${r.end ?? "?"}: ${outcome}`,
    );
  }
  for (const fault of run.program.faults) {
    lines.push(`  fault ${fault.kind} at step ${run.fired.get(fault.id) ?? "(never)"}`);
  }
  lines.push("", "commands, in order:");
  const byOp = new Map(run.records.map((r) => [r.id, r]));
  const faultsAt = new Map<number, string[]>();
  for (const fault of run.program.faults) {
    const step = run.fired.get(fault.id);
    if (step !== undefined) faultsAt.set(step, [...(faultsAt.get(step) ?? []), fault.kind]);
  }
  let lastStep = 0;
  for (const entry of run.trace) {
    for (let step = lastStep + 1; step <= entry.step; step++) {
      for (const fault of faultsAt.get(step) ?? []) lines.push(`  step ${step}  FAULT ${fault}`);
    }
    lastStep = Math.max(lastStep, entry.step);
    const record = byOp.get(entry.op);
    const who = record === undefined ? `#${entry.op}` : `#${entry.op} [${name(record)}]`;
    lines.push(`  step ${entry.step}  ${who} ${entry.label} -> ${entry.outcome}`);
  }
  lines.push("", "violations:");
  for (const violation of run.violations) lines.push(`  ${violation.message}`);
  return lines.join("\n");
}
