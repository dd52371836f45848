// Client benchmark (`npm run bench:client`): this client beside memjs, memcache-client and a
// raw-socket baseline against one local memcached, sequential gets and sets and 64 gets in
// flight, in two placements that the bench sets itself with `taskset`:
//   S  node and memcached share one core (each request is a context switch on that core)
//   X  node on one core, memcached on the other (each request wakes the other core)
// Rounds are interleaved (placements alternate, subject order rotates, subjects take short
// turns) so drift on a busy machine hits every subject alike; each ops/s is the median over
// rounds, each ratio the median of the per-round ratios. Also: the CAS-counter check, what a
// cold client costs (exchanges and ms before its first cache-aside hit), the cost of a
// diagnostics_channel subscriber, and V8 heap bytes allocated per call (a child process with GC
// held off). Prints tables and writes bench/results/client.json. Exit code 1 only for a wrong
// reply or a wrong counter; a missed speed target is reported as MISSED.

import { execFile } from "node:child_process";
import { tracingChannel } from "node:diagnostics_channel";
import { createRequire } from "node:module";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { getHeapStatistics } from "node:v8";
import { MemcacheClient as NpmMemcacheClient } from "memcache-client";
import { CacheAside } from "../lib/cache/cacheAside.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { COMMAND_CHANNEL, type CommandContext } from "../lib/memcache/diagnostics.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { startRecordingRelay } from "../tools/recording-relay.ts";
import {
  formatTable,
  median,
  pairedRatio,
  percentile,
  rotated,
  round,
  verdict,
} from "../tools/stats.ts";
import { runMain, writeResults } from "./run.ts";

const run = promisify(execFile);

const settings = {
  /** Interleaved rounds per placement; every reported ops/s is the median over them. */
  rounds: 9,
  /** Timed sequential calls (gets, or sets) per subject per round. */
  seqOps: 2000,
  /** Sequential calls a subject makes before the next one takes its turn. */
  seqTurn: 50,
  /** Untimed calls per subject at the start of each round and placement (JIT, socket buffers). */
  warmupOps: 300,
  /** Gets in flight in the concurrent runs. */
  concurrency: 64,
  /** Timed batches of `concurrency` gets per subject per round (ops = batches x concurrency). */
  concBatches: 200,
  /** Batches a subject runs before the next one takes its turn. */
  concTurn: 10,
  /** Untimed batches per subject at the start of each round. */
  concWarmupBatches: 10,
  /** Size of the benchmark value, in bytes (ASCII, so also its length as a string). */
  valueBytes: 100,
  /**
   * memcached worker threads. One, so every subject's connection is served by the same thread:
   * memcached hands connections to its threads in turn, and with two the subjects split into
   * pairs whose latency differed by up to 2.5x depending on where each thread was scheduled.
   */
  memcachedThreads: 1,
  /** CAS check: workers, each with its own client (own socket). */
  casWorkers: 8,
  /** CAS check: increments per worker. */
  casIncrements: 500,
  /** CAS check: retries of one increment before the run fails. */
  casMaxRetries: 1000,
  /** CAS check: upper bound of the random pause after a lost race, in ms. */
  casJitterMs: 2,
  /** Cold start: brand-new clients timed to their first cache-aside hit (and warm reads). */
  coldTrials: 40,
  /** Allocation count: calls measured per subject and command (GC held off meanwhile). */
  allocCalls: 4000,
  /** Our client's request timeout, in ms: generous, so a busy 2-core machine does not fail a run. */
  timeoutMs: 2000,
  /** Our client's connect timeout, in ms. */
  connectTimeoutMs: 2000,
};

const targets = {
  seqGetVsBestPeer: 1.1,
  seqSetVsBestPeer: 1.1,
  seqGetVsRaw: 0.9,
  concGetVsRaw: 0.8,
  coldFirstReadRoundTrips: 1,
};

const KEY = "bench:k";
const SET_KEY = "bench:set";
const COUNTER_KEY = "bench:counter";
const COLD_KEY = "bench:cold";
const VALUE = "v".repeat(settings.valueBytes);
const casCounterExpected = settings.casWorkers * settings.casIncrements;
const resultsFile = new URL("./results/client.json", import.meta.url);

/** A reply that is not the seeded item: the run is void. */
class WrongReplyError extends Error {
  override name = "WrongReplyError";
}

/** One benchmarked client. Every call's reply is checked. */
interface Subject {
  /** Short id, used as the key in client.json. */
  readonly id: string;
  readonly label: string;
  /** One get of KEY; resolves with the value's length in bytes (-1 on a miss or odd type). */
  get(): Promise<number>;
  /** One set of SET_KEY to VALUE; resolves with VALUE's length once stored (-1 if not stored). */
  set(): Promise<number>;
  /** `n` gets of KEY in flight at once; resolves with the total value bytes received. */
  getInFlight(n: number): Promise<number>;
  /** Called before and after each of the subject's turns (the diagnostics subscriber). */
  enter?(): void;
  leave?(): void;
  close(): unknown;
}

/** Runs `n` gets at once through a client's own API and sums the value bytes. */
async function allAtOnce(get: () => Promise<number>, n: number): Promise<number> {
  const pending = new Array<Promise<number>>(n);
  for (let i = 0; i < n; i++) pending[i] = get();
  let total = 0;
  for (const bytes of await Promise.all(pending)) total += bytes;
  return total;
}

function byteLength(value: unknown): number {
  if (typeof value === "string") return value.length;
  if (Buffer.isBuffer(value)) return value.length;
  return -1;
}

const storedLength = (stored: unknown) => (stored === true ? settings.valueBytes : -1);

// ---- subjects ----

function ourClient(endpoint: string): MemcacheClient {
  return new MemcacheClient({
    servers: endpoint,
    timeoutMs: settings.timeoutMs,
    connectTimeoutMs: settings.connectTimeoutMs,
  });
}

function ours(endpoint: string, id = "ours", label = "lambda-memcache"): Subject {
  const client = ourClient(endpoint);
  const get = () => client.get(KEY).then(byteLength);
  return {
    id,
    label,
    get,
    set: () => client.set(SET_KEY, VALUE).then(storedLength),
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.close(),
  };
}

/**
 * Our client with a diagnostics_channel subscriber during its turns: the subscriber does what a
 * tracer would at the least (reads the fields at the end of each request).
 */
function oursTraced(endpoint: string): Subject & { events: () => number } {
  const subject = ours(endpoint, "oursTraced", "lambda-memcache + subscriber");
  const channel = tracingChannel<unknown, CommandContext>(COMMAND_CHANNEL);
  let events = 0;
  let durations = 0;
  const subscriber = {
    start() {},
    end() {},
    asyncStart() {},
    asyncEnd(context: CommandContext) {
      events++;
      durations += context.durationMs;
    },
    error() {},
  };
  return {
    ...subject,
    enter: () => channel.subscribe(subscriber),
    leave: () => channel.unsubscribe(subscriber),
    events: () => (durations >= 0 ? events : -1),
  };
}

// memjs ships no types; this is the part of its promise API the bench uses.
interface MemjsClient {
  get(key: string): Promise<{ value: Buffer | null; flags: Buffer | null }>;
  set(key: string, value: string, options: { expires?: number }): Promise<boolean>;
  close(): void;
}
interface MemjsModule {
  Client: { create(servers: string, options?: Record<string, unknown>): MemjsClient };
}

function memjs(endpoint: string): Subject {
  const { Client } = createRequire(import.meta.url)("memjs") as MemjsModule;
  const client = Client.create(endpoint);
  const get = () => client.get(KEY).then((reply) => byteLength(reply.value));
  return {
    id: "memjs",
    label: "memjs 1.3.2",
    get,
    set: () => client.set(SET_KEY, VALUE, { expires: 0 }).then(storedLength),
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.close(),
  };
}

function memcacheClient(endpoint: string): Subject {
  // noDelay: its documented option for latency; without it Nagle may hold pipelined writes.
  // Our strings carry flags 16, which memcache-client reads as a string too (no type bits).
  const client = new NpmMemcacheClient({ server: endpoint, noDelay: true });
  const get = () => client.get<string>(KEY).then((reply) => byteLength(reply?.value));
  return {
    id: "memcacheClient",
    label: "memcache-client 1.0.5",
    get,
    set: () => client.set(SET_KEY, VALUE).then(() => settings.valueBytes),
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.shutdown(),
  };
}

/**
 * The baseline: one socket, requests written as prepared bytes, a reply recognised only by
 * counting its end marker (`END\r\n` for gets, `STORED\r\n` for sets; the value holds neither)
 * and checked by its total length.
 */
class RawSocket {
  private readonly socket: net.Socket;
  private marker: Buffer = Buffer.alloc(0);
  // The last marker.length - 1 bytes seen, so a marker split across chunks is still counted.
  private tail: Buffer = Buffer.alloc(0);
  private expected = 0;
  private seen = 0;
  private bytes = 0;
  private resolve: ((bytes: number) => void) | null = null;
  private reject: ((error: Error) => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new Error("raw socket closed")));
  }

  static connect(port: number): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawSocket(socket));
      });
    });
  }

  /** Writes `payload` in one write; resolves with the bytes received once `replies` markers came. */
  request(payload: Buffer, marker: Buffer, replies: number): Promise<number> {
    if (this.resolve !== null) return Promise.reject(new Error("raw socket is busy"));
    this.marker = marker;
    this.tail = Buffer.alloc(0);
    this.expected = replies;
    this.seen = 0;
    this.bytes = 0;
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.socket.write(payload);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.seen += countMarkers(this.marker, this.tail, chunk);
    const keep = this.marker.length - 1;
    this.tail =
      chunk.length >= keep
        ? chunk.subarray(chunk.length - keep)
        : Buffer.concat([this.tail, chunk]).subarray(-keep);
    if (this.seen >= this.expected && this.resolve !== null) {
      const resolve = this.resolve;
      this.resolve = null;
      this.reject = null;
      resolve(this.bytes);
    }
  }

  private fail(error: Error): void {
    const reject = this.reject;
    this.resolve = null;
    this.reject = null;
    reject?.(error);
  }
}

/** `marker`s in `chunk`, plus one that starts in `tail` (the previous chunk's last bytes). */
function countMarkers(marker: Buffer, tail: Buffer, chunk: Buffer): number {
  let count = 0;
  if (tail.length > 0) {
    // Shorter than the marker on both sides, so only one straddling the boundary can match.
    const joint = Buffer.concat([tail, chunk.subarray(0, marker.length - 1)]);
    if (joint.indexOf(marker) !== -1) count++;
  }
  for (let at = chunk.indexOf(marker); at !== -1; at = chunk.indexOf(marker, at + marker.length)) {
    count++;
  }
  return count;
}

/** The raw subject; `flags` is the flags word our client stored KEY with. */
async function raw(port: number, flags: number): Promise<Subject> {
  const socket = await RawSocket.connect(port);
  const end = Buffer.from("END\r\n");
  const stored = Buffer.from("STORED\r\n");
  const getLine = Buffer.from(`get ${KEY}\r\n`);
  const pipelined = Buffer.from(`get ${KEY}\r\n`.repeat(settings.concurrency));
  const setRequest = Buffer.from(
    `set ${SET_KEY} ${flags} 0 ${settings.valueBytes}\r\n${VALUE}\r\n`,
  );
  // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n
  const replyOverhead = `VALUE ${KEY} ${flags} ${settings.valueBytes}\r\n\r\nEND\r\n`.length;
  return {
    id: "raw",
    label: "raw socket",
    get: () => socket.request(getLine, end, 1).then((bytes) => bytes - replyOverhead),
    set: () =>
      socket
        .request(setRequest, stored, 1)
        .then((bytes) => (bytes === stored.length ? settings.valueBytes : -1)),
    getInFlight: (n) => {
      if (n !== settings.concurrency)
        throw new Error(`raw pipeline is prepared for ${settings.concurrency} gets, not ${n}`);
      return socket.request(pipelined, end, n).then((bytes) => bytes - n * replyOverhead);
    },
    close: () => socket.close(),
  };
}

// ---- placements ----

interface Placement {
  id: "S" | "X";
  description: string;
  /** CPU for node; CPU for memcached. */
  nodeCpu: number;
  memcachedCpu: number;
}

/**
 * The two placements, or why they cannot be set: taskset missing, or fewer than two CPUs this
 * process may run on. Then the bench runs once, wherever the scheduler puts things.
 */
async function placements(): Promise<{
  list: Placement[];
  /** The CPUs this process may use, to give back after the timed runs. */
  cpus: string;
  note: string | undefined;
}> {
  let cpus: number[];
  let allowed: string;
  try {
    const { stdout } = await run("taskset", ["-pc", String(process.pid)]);
    allowed = stdout.slice(stdout.lastIndexOf(":") + 1).trim();
    cpus = parseCpuList(allowed);
  } catch {
    const note = "taskset not found (util-linux): placements S and X not pinned";
    return { list: [], cpus: "", note };
  }
  if (cpus.length < 2) {
    const note = `only CPU ${allowed} available: placement X impossible`;
    return { list: [], cpus: allowed, note };
  }
  const [a, b] = cpus as [number, number];
  return {
    cpus: allowed,
    list: [
      { id: "S", description: `node and memcached on CPU ${a}`, nodeCpu: a, memcachedCpu: a },
      {
        id: "X",
        description: `node on CPU ${a}, memcached on CPU ${b}`,
        nodeCpu: a,
        memcachedCpu: b,
      },
    ],
    note: undefined,
  };
}

/** "0-2,5" -> [0, 1, 2, 5] */
function parseCpuList(list: string): number[] {
  return list.split(",").flatMap((part) => {
    const [from, to] = part.split("-").map(Number) as [number, number | undefined];
    return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i);
  });
}

/** Pins every thread of `pid` to `cpus` (a taskset CPU list). */
async function pin(pid: number, cpus: number | string): Promise<void> {
  await run("taskset", ["-a", "-p", "-c", String(cpus), String(pid)]);
}

async function place(placement: Placement | undefined, memcachedPid: number): Promise<void> {
  if (placement === undefined) return;
  await pin(process.pid, placement.nodeCpu);
  await pin(memcachedPid, placement.memcachedCpu);
}

// ---- measurement ----

interface Series {
  /** ops/s of each round. */
  opsPerSec: number[];
  /** Latency samples of every round, in ns (per call, or per batch for the concurrent runs). */
  latencies: Float64Array[];
}

interface Summary {
  /** Median over rounds. */
  opsPerSec: number;
  /** Pooled over rounds. */
  p50Us: number;
  p99Us: number;
  opsPerSecByRound: number[];
}

function expectBytes(subject: Subject, bytes: number, expected: number, what: string): void {
  if (bytes !== expected) {
    throw new WrongReplyError(
      `${subject.label} returned ${bytes} value bytes for ${what}, expected ${expected}`,
    );
  }
}

/** One way of timing the subjects: sequential gets or sets, or batches of gets in flight. */
interface Phase {
  id: "seqGet" | "seqSet" | "concGet";
  /** The timed call; each returns `opsPerCall` values. */
  call(subject: Subject): Promise<number>;
  opsPerCall: number;
  /** Timed calls per subject per round. */
  calls: number;
  /** Calls a subject makes before the next one takes its turn. */
  turn: number;
  /** Untimed calls per subject at the start of each round. */
  warmup: number;
}

/** One subject's timed calls in one round, gathered over its turns. */
interface Tally {
  latencies: Float64Array;
  count: number;
  elapsedNs: number;
}

/**
 * One round of a phase. Subjects take turns of `turn` calls (order rotated per round), so a
 * slow or fast spell of the machine (vCPU wake-ups on a VM shift latency 3x for seconds at a
 * time) falls on every subject alike instead of on whoever ran during it.
 */
async function runRound(
  subjects: readonly Subject[],
  round: number,
  phase: Phase,
  series: Map<string, Series>,
): Promise<void> {
  const order = rotated(subjects, round);
  const bytesPerCall = phase.opsPerCall * settings.valueBytes;
  const tallies: Tally[] = order.map(() => ({
    latencies: new Float64Array(phase.calls),
    count: 0,
    elapsedNs: 0,
  }));
  for (const subject of order) {
    subject.enter?.();
    for (let i = 0; i < phase.warmup; i++) {
      expectBytes(subject, await phase.call(subject), bytesPerCall, phase.id);
    }
    subject.leave?.();
  }
  for (let done = 0; done < phase.calls; done += phase.turn) {
    const calls = Math.min(phase.turn, phase.calls - done);
    for (let i = 0; i < order.length; i++) {
      await timeTurn(order[i]!, phase, calls, bytesPerCall, tallies[i]!);
    }
  }
  order.forEach((subject, i) => {
    const tally = tallies[i]!;
    const entry = series.get(subject.id)!;
    entry.opsPerSec.push((phase.calls * phase.opsPerCall) / (tally.elapsedNs / 1e9));
    entry.latencies.push(tally.latencies);
  });
}

/** One clock read per call: each latency also holds the loop's own few ns (alike for all). */
async function timeTurn(
  subject: Subject,
  phase: Phase,
  calls: number,
  bytesPerCall: number,
  tally: Tally,
): Promise<void> {
  subject.enter?.();
  const start = process.hrtime.bigint();
  let previous = start;
  for (let i = 0; i < calls; i++) {
    const bytes = await phase.call(subject);
    const now = process.hrtime.bigint();
    tally.latencies[tally.count++] = Number(now - previous);
    previous = now;
    if (bytes !== bytesPerCall) expectBytes(subject, bytes, bytesPerCall, phase.id);
  }
  tally.elapsedNs += Number(previous - start);
  subject.leave?.();
}

function summarize(series: Series): Summary {
  const pooled = new Float64Array(series.latencies.reduce((n, l) => n + l.length, 0));
  let offset = 0;
  for (const latencies of series.latencies) {
    pooled.set(latencies, offset);
    offset += latencies.length;
  }
  return {
    opsPerSec: Math.round(median(series.opsPerSec)),
    p50Us: round(percentile(pooled, 0.5) / 1000, 1),
    p99Us: round(percentile(pooled, 0.99) / 1000, 1),
    opsPerSecByRound: series.opsPerSec.map(Math.round),
  };
}

const phases: Phase[] = [
  {
    id: "seqGet",
    call: (subject) => subject.get(),
    opsPerCall: 1,
    calls: settings.seqOps,
    turn: settings.seqTurn,
    warmup: settings.warmupOps,
  },
  {
    id: "seqSet",
    call: (subject) => subject.set(),
    opsPerCall: 1,
    calls: settings.seqOps,
    turn: settings.seqTurn,
    warmup: settings.warmupOps,
  },
  {
    id: "concGet",
    call: (subject) => subject.getInFlight(settings.concurrency),
    opsPerCall: settings.concurrency,
    calls: settings.concBatches,
    turn: settings.concTurn,
    warmup: settings.concWarmupBatches,
  },
];

type PhaseSeries = Record<Phase["id"], Map<string, Series>>;

/** Every phase, every round, in each placement (alternating, so drift falls on both). */
async function measure(
  subjects: readonly Subject[],
  list: readonly (Placement | undefined)[],
  memcachedPid: number,
): Promise<Map<Placement | undefined, PhaseSeries>> {
  const newSeries = () => new Map<string, Series>(subjects.map((s) => [s.id, emptySeries()]));
  const out = new Map<Placement | undefined, PhaseSeries>(
    list.map((p) => [p, { seqGet: newSeries(), seqSet: newSeries(), concGet: newSeries() }]),
  );
  for (let r = 0; r < settings.rounds; r++) {
    for (const placement of rotated(list, r)) {
      await place(placement, memcachedPid);
      for (const phase of phases) await runRound(subjects, r, phase, out.get(placement)![phase.id]);
    }
    if (process.stderr.isTTY) process.stderr.write(`round ${r + 1}/${settings.rounds}\r`);
  }
  return out;
}

function emptySeries(): Series {
  return { opsPerSec: [], latencies: [] };
}

// ---- CAS counter ----

/** One increment by gets + cas, retried after a short random pause when another worker won. */
async function casIncrement(client: MemcacheClient): Promise<number> {
  for (let retries = 0; retries <= settings.casMaxRetries; retries++) {
    const item = await client.gets<number>(COUNTER_KEY);
    if (item === undefined || typeof item.value !== "number") {
      throw new WrongReplyError(`gets ${COUNTER_KEY} returned ${JSON.stringify(item?.value)}`);
    }
    const result = await client.cas(COUNTER_KEY, item.value + 1, item.cas);
    if (result === "stored") return retries;
    if (result === "not_found") throw new WrongReplyError(`${COUNTER_KEY} vanished during cas`);
    await delay(Math.random() * settings.casJitterMs);
  }
  throw new Error(`an increment of ${COUNTER_KEY} lost ${settings.casMaxRetries} CAS races`);
}

async function casWorker(client: MemcacheClient): Promise<number> {
  let retries = 0;
  for (let i = 0; i < settings.casIncrements; i++) retries += await casIncrement(client);
  return retries;
}

async function casCounter(
  endpoint: string,
  owned: Array<{ close(): unknown }>,
): Promise<{ final: unknown; retries: number; ms: number }> {
  const checker = ourClient(endpoint);
  owned.push(checker);
  if (!(await checker.set(COUNTER_KEY, 0))) throw new Error(`could not set ${COUNTER_KEY}`);
  const workers = Array.from({ length: settings.casWorkers }, () => ourClient(endpoint));
  owned.push(...workers);
  const start = performance.now();
  const retries = await Promise.all(workers.map(casWorker));
  const ms = performance.now() - start;
  const final = await checker.get(COUNTER_KEY);
  return { final, retries: retries.reduce((a, b) => a + b, 0), ms: Math.round(ms) };
}

// ---- cold start ----

interface Cold {
  /** Request/reply exchanges before the first getOrLoad hit of a brand-new client. */
  roundTrips: number;
  /** What it sent, command by command. */
  commands: string;
  /** Brand-new client (TCP connect included) to first getOrLoad hit, median, in ms. */
  coldMs: number;
  /** A warm client's getOrLoad hit, median, in ms. */
  warmMs: number;
}

async function coldStart(memcached: MemcachedProcess): Promise<Cold> {
  const seeder = ourClient(memcached.endpoint);
  const relay = await startRecordingRelay(memcached);
  try {
    if (!(await seeder.set(COLD_KEY, { id: 1 }))) throw new Error(`could not set ${COLD_KEY}`);
    const loader = async () => {
      throw new WrongReplyError(`${COLD_KEY} missed: the loader ran`);
    };
    // Exchanges, counted where the bytes go by.
    const counted = ourClient(relay.endpoint);
    const read = await new CacheAside(clientStore(counted)).getOrLoad(COLD_KEY, loader);
    counted.close();
    if (read.status !== "HIT") throw new WrongReplyError(`cold read was ${read.status}`);
    const roundTrips = relay.exchanges().reduce((a, b) => a + b, 0);
    const commands = relay
      .streams()
      .map((stream) => stream.toString("latin1").replace(/\r\n/g, "\\r\\n"))
      .join(" | ");
    // Time, straight to memcached: brand-new clients, then one warm one.
    const cold: number[] = [];
    for (let i = 0; i < settings.coldTrials; i++) {
      const client = ourClient(memcached.endpoint);
      const start = performance.now();
      await new CacheAside(clientStore(client)).getOrLoad(COLD_KEY, loader);
      cold.push(performance.now() - start);
      client.close();
    }
    const warmCache = new CacheAside(clientStore(seeder));
    for (let i = 0; i < 50; i++) await warmCache.getOrLoad(COLD_KEY, loader);
    const warm: number[] = [];
    for (let i = 0; i < settings.coldTrials; i++) {
      const start = performance.now();
      await warmCache.getOrLoad(COLD_KEY, loader);
      warm.push(performance.now() - start);
    }
    return {
      roundTrips,
      commands,
      coldMs: round(median(cold), 3),
      warmMs: round(median(warm), 3),
    };
  } finally {
    seeder.close();
    await relay.close();
  }
}

// ---- allocations (child process) ----

type AllocTable = Record<string, Record<string, number>>;

/**
 * V8 heap bytes allocated per call, by subject and command, measured in a child process whose
 * young generation is large enough that no GC runs while it counts (checked: a window with a GC
 * is reported as NaN). Socket-level Node allocations are in every subject alike (see raw).
 */
async function allocations(): Promise<AllocTable> {
  const { stdout } = await run(
    process.execPath,
    [
      "--no-minor-gc-task",
      "--min-semi-space-size=512",
      "--max-semi-space-size=512",
      "--scavenger-max-new-space-capacity-mb=1024",
      fileURLToPath(import.meta.url),
      "--alloc",
    ],
    { maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout) as AllocTable;
}

async function allocMain(): Promise<void> {
  const memcached = await startMemcached({ args: ["-t", "1"] });
  const owned: Subject[] = [];
  try {
    const seeder = ourClient(memcached.endpoint);
    const flags = await seed(seeder);
    seeder.close();
    owned.push(
      ours(memcached.endpoint),
      memjs(memcached.endpoint),
      memcacheClient(memcached.endpoint),
      await raw(memcached.port, flags),
    );
    const table: AllocTable = {};
    for (const subject of owned) {
      table[subject.id] = {
        get: await bytesPerCall(() => subject.get()),
        set: await bytesPerCall(() => subject.set()),
      };
    }
    process.stdout.write(JSON.stringify(table));
  } finally {
    for (const subject of owned) subject.close();
    await memcached.stop();
  }
}

async function bytesPerCall(call: () => Promise<number>): Promise<number> {
  for (let i = 0; i < 1000; i++) await call();
  let collections = 0;
  const observer = new PerformanceObserver((list) => {
    collections += list.getEntries().length;
  });
  observer.observe({ entryTypes: ["gc"] });
  const before = getHeapStatistics().used_heap_size;
  for (let i = 0; i < settings.allocCalls; i++) await call();
  const after = getHeapStatistics().used_heap_size;
  await delay(10); // let the observer hear of a GC in the window
  observer.disconnect();
  return collections === 0 ? Math.round((after - before) / settings.allocCalls) : Number.NaN;
}

// ---- report ----

function summaryRows(
  subjects: readonly Subject[],
  summaries: Record<Phase["id"], Record<string, Summary>>,
): string[][] {
  const header = [
    "subject",
    "get ops/s",
    "get p50 µs",
    "set ops/s",
    "set p50 µs",
    `conc${settings.concurrency} ops/s`,
    "batch p50 µs",
  ];
  const rows = subjects.map((s) => [
    s.label,
    String(summaries.seqGet[s.id]!.opsPerSec),
    summaries.seqGet[s.id]!.p50Us.toFixed(1),
    String(summaries.seqSet[s.id]!.opsPerSec),
    summaries.seqSet[s.id]!.p50Us.toFixed(1),
    String(summaries.concGet[s.id]!.opsPerSec),
    summaries.concGet[s.id]!.p50Us.toFixed(1),
  ]);
  return [header, ...rows];
}

interface PlacementResult {
  description: string;
  subjects: Record<string, { label: string } & Record<Phase["id"], Summary>>;
  seqGetVsBestPeer: number;
  seqSetVsBestPeer: number;
  seqGetVsRaw: number;
  seqSetVsRaw: number;
  concGetVsRaw: number;
  /** ours with a diagnostics subscriber / ours without, sequential gets. */
  seqGetTracedVsOurs: number;
  /** The raw socket / the best peer: how far ahead any client on net.Socket could be. */
  rawSeqGetVsBestPeer: number;
  rawSeqSetVsBestPeer: number;
}

function placementResult(
  description: string,
  subjects: readonly Subject[],
  series: PhaseSeries,
): PlacementResult {
  const summaries = {} as Record<Phase["id"], Record<string, Summary>>;
  for (const phase of phases) {
    summaries[phase.id] = Object.fromEntries(
      subjects.map((s) => [s.id, summarize(series[phase.id].get(s.id)!)]),
    );
  }
  const byRound = (phase: Phase["id"], id: string) => summaries[phase][id]!.opsPerSecByRound;
  const bestPeer = (phase: Phase["id"]) =>
    byRound(phase, "memjs").map((ops, r) => Math.max(ops, byRound(phase, "memcacheClient")[r]!));
  console.log(`\n${description}`);
  console.log(formatTable(summaryRows(subjects, summaries)));
  return {
    description,
    subjects: Object.fromEntries(
      subjects.map((s) => [
        s.id,
        {
          label: s.label,
          seqGet: summaries.seqGet[s.id]!,
          seqSet: summaries.seqSet[s.id]!,
          concGet: summaries.concGet[s.id]!,
        },
      ]),
    ),
    seqGetVsBestPeer: pairedRatio(byRound("seqGet", "ours"), bestPeer("seqGet")),
    seqSetVsBestPeer: pairedRatio(byRound("seqSet", "ours"), bestPeer("seqSet")),
    seqGetVsRaw: pairedRatio(byRound("seqGet", "ours"), byRound("seqGet", "raw")),
    seqSetVsRaw: pairedRatio(byRound("seqSet", "ours"), byRound("seqSet", "raw")),
    concGetVsRaw: pairedRatio(byRound("concGet", "ours"), byRound("concGet", "raw")),
    seqGetTracedVsOurs: pairedRatio(byRound("seqGet", "oursTraced"), byRound("seqGet", "ours")),
    rawSeqGetVsBestPeer: pairedRatio(byRound("seqGet", "raw"), bestPeer("seqGet")),
    rawSeqSetVsBestPeer: pairedRatio(byRound("seqSet", "raw"), bestPeer("seqSet")),
  };
}

function line(name: string, value: number | undefined, target: number, atLeast = true): string {
  if (value === undefined) return `${name.padEnd(24)} n/a`;
  const ok = atLeast ? value >= target : value <= target;
  const sign = atLeast ? ">=" : "=";
  return `${name.padEnd(24)} ${value.toFixed(3)}  (target ${sign} ${target})  ${verdict(ok)}`;
}

// ---- main ----

async function main(): Promise<number> {
  const owned: Array<{ close(): unknown }> = [];
  let memcached: MemcachedProcess | undefined;
  try {
    memcached = await startMemcached({ args: ["-t", String(settings.memcachedThreads)] });
    const { endpoint, port } = memcached;
    const { list, cpus, note } = await placements();
    if (note !== undefined) console.log(`NOTE: ${note}; figures are for one unpinned run.`);

    const seeder = ourClient(endpoint);
    owned.push(seeder);
    const memcachedVersion = Object.values(await seeder.version())[0];
    const memcachedThreads = Number(Object.values(await seeder.stats("settings"))[0]?.num_threads);
    if (memcachedThreads !== settings.memcachedThreads) {
      throw new Error(
        `memcached runs ${memcachedThreads} threads, expected ${settings.memcachedThreads}`,
      );
    }
    const flags = await seed(seeder);

    const traced = oursTraced(endpoint);
    const subjects = [
      ours(endpoint),
      traced,
      memjs(endpoint),
      memcacheClient(endpoint),
      await raw(port, flags),
    ];
    owned.push(...subjects);
    for (const subject of subjects) {
      expectBytes(subject, await subject.get(), settings.valueBytes, KEY);
      expectBytes(subject, await subject.set(), settings.valueBytes, SET_KEY);
      expectBytes(
        subject,
        await subject.getInFlight(settings.concurrency),
        settings.concurrency * settings.valueBytes,
        KEY,
      );
    }
    const memcachedPid = memcached.pid;
    const started = performance.now();
    const placed = list.length > 0 ? list : [undefined];
    const measured = await measure(subjects, placed, memcachedPid);
    const benchMs = Math.round(performance.now() - started);
    if (traced.events() <= 0) throw new Error("the diagnostics subscriber saw no event");
    const byPlacement: Record<string, PlacementResult> = {};
    for (const placement of placed) {
      const description = placement?.description ?? "unpinned";
      byPlacement[placement?.id ?? "unpinned"] = placementResult(
        description,
        subjects,
        measured.get(placement)!,
      );
    }
    if (list.length > 0) {
      // Unpinned again for the rest: the CAS workers and cold clients are not placement figures.
      await pin(process.pid, cpus);
      await pin(memcachedPid, cpus);
    }

    const cas = await casCounter(endpoint, owned);
    const cold = await coldStart(memcached);
    const alloc = await allocations();

    const S = byPlacement.S;
    const X = byPlacement.X;
    const all = Object.values(byPlacement);
    const worst = (pick: (p: PlacementResult) => number) => Math.min(...all.map(pick));
    const ratios = {
      seqGetVsBestPeerS: S?.seqGetVsBestPeer,
      seqGetVsBestPeerX: X?.seqGetVsBestPeer,
      seqSetVsBestPeerS: S?.seqSetVsBestPeer,
      seqSetVsBestPeerX: X?.seqSetVsBestPeer,
      // Over both placements, the lower one: what holds wherever the code runs.
      seqGetVsRaw: worst((p) => p.seqGetVsRaw),
      concGetVsRaw: worst((p) => p.concGetVsRaw),
    };
    const pass = {
      seqGetVsBestPeerS: atLeast(ratios.seqGetVsBestPeerS, targets.seqGetVsBestPeer),
      seqGetVsBestPeerX: atLeast(ratios.seqGetVsBestPeerX, targets.seqGetVsBestPeer),
      seqSetVsBestPeerS: atLeast(ratios.seqSetVsBestPeerS, targets.seqSetVsBestPeer),
      seqSetVsBestPeerX: atLeast(ratios.seqSetVsBestPeerX, targets.seqSetVsBestPeer),
      seqGetVsRaw: ratios.seqGetVsRaw >= targets.seqGetVsRaw,
      concGetVsRaw: ratios.concGetVsRaw >= targets.concGetVsRaw,
      casCounterFinal: cas.final === casCounterExpected,
      coldFirstReadRoundTrips: cold.roundTrips === targets.coldFirstReadRoundTrips,
    };

    console.log(
      `\nmemcached ${memcachedVersion} (${memcachedThreads} thread) on ${endpoint}, node ${process.version}; ` +
        `${settings.rounds} rounds per placement x ${settings.seqOps} sequential gets and sets and ` +
        `${settings.concBatches} x ${settings.concurrency} concurrent gets per subject, ` +
        `${settings.valueBytes}-byte value (${benchMs} ms)`,
    );
    console.log(
      "(ops/s: median over rounds; p50 pooled over rounds; batch = all " +
        `${settings.concurrency} gets of one batch answered; ratios: median of per-round ratios)\n`,
    );
    console.log(line("seqGetVsBestPeerS", ratios.seqGetVsBestPeerS, targets.seqGetVsBestPeer));
    console.log(line("seqGetVsBestPeerX", ratios.seqGetVsBestPeerX, targets.seqGetVsBestPeer));
    console.log(line("seqSetVsBestPeerS", ratios.seqSetVsBestPeerS, targets.seqSetVsBestPeer));
    console.log(line("seqSetVsBestPeerX", ratios.seqSetVsBestPeerX, targets.seqSetVsBestPeer));
    console.log(line("seqGetVsRaw (worse)", ratios.seqGetVsRaw, targets.seqGetVsRaw));
    console.log(line("concGetVsRaw (worse)", ratios.concGetVsRaw, targets.concGetVsRaw));
    for (const [id, p] of Object.entries(byPlacement)) {
      console.log(
        `  ${id}: seqGetVsRaw ${p.seqGetVsRaw}, seqSetVsRaw ${p.seqSetVsRaw}, concGetVsRaw ${p.concGetVsRaw}; ` +
          `raw socket vs best peer: get ${p.rawSeqGetVsBestPeer}, set ${p.rawSeqSetVsBestPeer}; ` +
          `with a diagnostics subscriber ${p.seqGetTracedVsOurs} of ours without`,
      );
    }
    console.log(
      `${"casCounterFinal".padEnd(24)} ${String(cas.final)}  (expected ${casCounterExpected}; ` +
        `${cas.retries} retries, ${cas.ms} ms)  ${pass.casCounterFinal ? "ok" : "WRONG"}`,
    );
    console.log(
      `${"coldFirstReadRoundTrips".padEnd(24)} ${cold.roundTrips}  (target = 1)  ${verdict(pass.coldFirstReadRoundTrips)}; sent: ${cold.commands}`,
    );
    console.log(
      `${"coldFirstReadMs".padEnd(24)} ${cold.coldMs} ms (new client, TCP connect included) vs ${cold.warmMs} ms warm (medians of ${settings.coldTrials})`,
    );
    console.log("\nV8 heap bytes allocated per call (socket internals included, see raw):");
    console.log(
      formatTable([
        ["subject", "get", "set"],
        ...Object.entries(alloc).map(([id, row]) => [id, String(row.get), String(row.set)]),
      ]),
    );

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      memcachedThreads,
      placementNote: note ?? "pinned with taskset",
      rounds: settings.rounds,
      opsPerRound: {
        seq: settings.seqOps,
        conc: settings.concBatches * settings.concurrency,
        concurrency: settings.concurrency,
        seqTurn: settings.seqTurn,
        concTurnBatches: settings.concTurn,
      },
      valueBytes: settings.valueBytes,
      placements: byPlacement,
      ...ratios,
      casCounterFinal: cas.final,
      casRetries: cas.retries,
      coldFirstReadRoundTrips: cold.roundTrips,
      coldFirstReadCommands: cold.commands,
      coldFirstReadMs: cold.coldMs,
      warmReadMs: cold.warmMs,
      seqGetTracedVsOurs: Object.fromEntries(
        Object.entries(byPlacement).map(([id, p]) => [id, p.seqGetTracedVsOurs]),
      ),
      heapBytesPerCall: alloc,
      targets: { ...targets, casCounterFinal: casCounterExpected },
      pass,
    };
    await writeResults(resultsFile, results);
    return pass.casCounterFinal ? 0 : 1;
  } finally {
    for (const client of owned.reverse()) {
      try {
        await client.close();
      } catch (error) {
        console.error("close failed:", error);
      }
    }
    await memcached?.stop();
  }
}

/** Stores VALUE under KEY as our client stores a string; returns the flags word it used. */
async function seed(client: MemcacheClient): Promise<number> {
  if (!(await client.set(KEY, VALUE))) throw new Error(`could not set ${KEY}`);
  const item = await client.gets(KEY);
  if (item?.value !== VALUE) throw new WrongReplyError(`${KEY} did not read back`);
  return item.flags;
}

function atLeast(value: number | undefined, target: number): boolean | undefined {
  return value === undefined ? undefined : value >= target;
}

runMain(() => (process.argv.includes("--alloc") ? allocMain().then(() => 0) : main()));
