// Client benchmark (issue 2, `npm run bench:client`): this client beside memjs, memcache-client
// and a raw-socket baseline against one local memcached. Rounds are interleaved (subject order
// rotates each round, and within a round subjects take short turns) so drift on a busy machine
// hits every subject alike; each ops/s is the median over rounds, each ratio the median of the
// per-round ratios. Also runs the CAS-counter check. Prints a table and writes
// bench/results/client.json. Exit code 1 only for a wrong reply or a wrong counter; a missed
// speed target is reported as MISSED.

import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { MemcacheClient as NpmMemcacheClient } from "memcache-client";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import {
  formatTable,
  median,
  pairedRatio,
  percentile,
  rotated,
  round,
  verdict,
} from "../tools/stats.ts";

const settings = {
  /** Interleaved rounds; every reported ops/s is the median over them. */
  rounds: 7,
  /** Timed sequential gets per subject per round. */
  seqOps: 3000,
  /** Sequential gets a subject makes before the next one takes its turn. */
  seqTurn: 100,
  /** Untimed gets per subject at the start of each round (JIT, socket buffers). */
  warmupOps: 300,
  /** Gets in flight in the concurrent runs. */
  concurrency: 64,
  /** Timed batches of `concurrency` gets per subject per round (ops = batches x concurrency). */
  concBatches: 400,
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
  /** Our client's request timeout, in ms: generous, so a busy 2-core machine does not fail a run. */
  timeoutMs: 2000,
  /** Our client's connect timeout, in ms. */
  connectTimeoutMs: 2000,
};

const targets = { seqGetVsBestPeer: 1.1, seqGetVsRaw: 0.85, concGetVsRaw: 0.8 };

const KEY = "bench:k";
const COUNTER_KEY = "bench:counter";
const VALUE = "v".repeat(settings.valueBytes);
const casCounterExpected = settings.casWorkers * settings.casIncrements;
const resultsFile = new URL("./results/client.json", import.meta.url);

/** A reply that is not the seeded item: the run is void. */
class WrongReplyError extends Error {
  override name = "WrongReplyError";
}

/** One benchmarked client. Every get must return the seeded value (checked on every call). */
interface Subject {
  /** Short id, used as the key in client.json. */
  readonly id: string;
  readonly label: string;
  /** One get of KEY; resolves with the value's length in bytes (-1 on a miss or odd type). */
  get(): Promise<number>;
  /** `n` gets of KEY in flight at once; resolves with the total value bytes received. */
  getInFlight(n: number): Promise<number>;
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

function toBuffer(input: unknown): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(String(input));
}

function byteLength(value: unknown): number {
  if (typeof value === "string") return value.length;
  if (Buffer.isBuffer(value)) return value.length;
  return -1;
}

// ---- subjects ----

function ourClient(endpoint: string): MemcacheClient {
  return new MemcacheClient({
    servers: endpoint,
    timeoutMs: settings.timeoutMs,
    connectTimeoutMs: settings.connectTimeoutMs,
  });
}

function ours(endpoint: string): Subject {
  const client = ourClient(endpoint);
  const get = () => client.get(KEY).then(byteLength);
  return {
    id: "ours",
    label: "lambda-memcache",
    get,
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.close(),
  };
}

// memjs ships no types; this is the part of its promise API the bench uses.
interface MemjsClient {
  get(key: string): Promise<{ value: Buffer | null; flags: Buffer | null }>;
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
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.close(),
  };
}

function memcacheClient(endpoint: string): Subject {
  // noDelay: its documented option for latency; without it Nagle may hold pipelined writes.
  // memcache-client reads flags bit 0 as "compressed", and our strings carry flags 1: an
  // identity "compressor" lets it read the same item (it then decodes bytes as a string).
  const client = new NpmMemcacheClient({
    server: endpoint,
    noDelay: true,
    compressor: {
      compressSync: (p) => toBuffer(p?.input),
      decompressSync: (p) => toBuffer(p.input),
    },
  });
  const get = () => client.get<string>(KEY).then((reply) => byteLength(reply?.value));
  return {
    id: "memcacheClient",
    label: "memcache-client 1.0.5",
    get,
    getInFlight: (n) => allAtOnce(get, n),
    close: () => client.shutdown(),
  };
}

const END = Buffer.from("END\r\n");

/**
 * The baseline: one socket, requests written as prepared bytes, a reply recognised only by
 * counting `END\r\n` (the value holds no such bytes) and checked by its total length.
 */
class RawSocket {
  private readonly socket: net.Socket;
  // The last END.length - 1 bytes seen, so a marker split across chunks is still counted.
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

  /** Writes `payload` in one write; resolves with the bytes received once `replies` ENDs came. */
  request(payload: Buffer, replies: number): Promise<number> {
    if (this.resolve !== null) return Promise.reject(new Error("raw socket is busy"));
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
    this.seen += countEnds(this.tail, chunk);
    const keep = END.length - 1;
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

/** END markers in `chunk`, plus those that start in `tail` (the previous chunk's last bytes). */
function countEnds(tail: Buffer, chunk: Buffer): number {
  let count = 0;
  if (tail.length > 0) {
    // Shorter than END on both sides, so only a marker straddling the boundary can match.
    const joint = Buffer.concat([tail, chunk.subarray(0, END.length - 1)]);
    if (joint.indexOf(END) !== -1) count++;
  }
  for (let at = chunk.indexOf(END); at !== -1; at = chunk.indexOf(END, at + END.length)) count++;
  return count;
}

async function raw(port: number): Promise<Subject> {
  const socket = await RawSocket.connect(port);
  const getLine = Buffer.from(`get ${KEY}\r\n`);
  const pipelined = Buffer.from(`get ${KEY}\r\n`.repeat(settings.concurrency));
  // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n, with the flags our client stored (1).
  const replyOverhead = `VALUE ${KEY} 1 ${settings.valueBytes}\r\n\r\nEND\r\n`.length;
  return {
    id: "raw",
    label: "raw socket",
    get: () => socket.request(getLine, 1).then((bytes) => bytes - replyOverhead),
    getInFlight: (n) => {
      if (n !== settings.concurrency)
        throw new Error(`raw pipeline is prepared for ${settings.concurrency} gets, not ${n}`);
      return socket.request(pipelined, n).then((bytes) => bytes - n * replyOverhead);
    },
    close: () => socket.close(),
  };
}

// ---- measurement ----

interface Series {
  /** ops/s of each round. */
  opsPerSec: number[];
  /** Latency samples of every round, in ns (per get, or per batch for the concurrent runs). */
  latencies: Float64Array[];
}

function emptySeries(): Series {
  return { opsPerSec: [], latencies: [] };
}

interface Summary {
  /** Median over rounds. */
  opsPerSec: number;
  /** Pooled over rounds. */
  p50Us: number;
  p99Us: number;
  opsPerSecByRound: number[];
}

function expectBytes(subject: Subject, bytes: number, expected: number): void {
  if (bytes !== expected) {
    throw new WrongReplyError(
      `${subject.label} returned ${bytes} value bytes for ${KEY}, expected ${expected}`,
    );
  }
}

/** One way of timing the subjects: sequential gets, or batches of gets in flight. */
interface Phase {
  /** The timed call; each returns `opsPerCall` values. */
  call(subject: Subject): Promise<number>;
  opsPerCall: number;
  /** Timed calls per subject per round. */
  calls: number;
  /** Calls a subject makes before the next one takes its turn. */
  turn: number;
  /** Untimed calls per subject at the start of each round. */
  warmup: number;
  series: Map<string, Series>;
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
async function runRound(subjects: readonly Subject[], round: number, phase: Phase): Promise<void> {
  const order = rotated(subjects, round);
  const bytesPerCall = phase.opsPerCall * settings.valueBytes;
  const tallies = order.map(() => ({
    latencies: new Float64Array(phase.calls),
    count: 0,
    elapsedNs: 0,
  }));
  for (const subject of order) {
    for (let i = 0; i < phase.warmup; i++) {
      expectBytes(subject, await phase.call(subject), bytesPerCall);
    }
  }
  for (let done = 0; done < phase.calls; done += phase.turn) {
    const calls = Math.min(phase.turn, phase.calls - done);
    for (let i = 0; i < order.length; i++) {
      await timeTurn(order[i]!, phase, calls, bytesPerCall, tallies[i]!);
    }
  }
  order.forEach((subject, i) => {
    const tally = tallies[i]!;
    const series = phase.series.get(subject.id)!;
    series.opsPerSec.push((phase.calls * phase.opsPerCall) / (tally.elapsedNs / 1e9));
    series.latencies.push(tally.latencies);
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
  const start = process.hrtime.bigint();
  let previous = start;
  for (let i = 0; i < calls; i++) {
    const bytes = await phase.call(subject);
    const now = process.hrtime.bigint();
    tally.latencies[tally.count++] = Number(now - previous);
    previous = now;
    if (bytes !== bytesPerCall) expectBytes(subject, bytes, bytesPerCall);
  }
  tally.elapsedNs += Number(previous - start);
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

// ---- report ----

/** The summary table's rows, header first. */
function summaryRows(
  subjects: readonly Subject[],
  seq: Record<string, Summary>,
  conc: Record<string, Summary>,
): string[][] {
  const header = [
    "subject",
    "seq ops/s",
    "seq p50 µs",
    "seq p99 µs",
    `conc${settings.concurrency} ops/s`,
    "batch p50 µs",
    "batch p99 µs",
  ];
  const rows = subjects.map((s) => [
    s.label,
    String(seq[s.id]!.opsPerSec),
    seq[s.id]!.p50Us.toFixed(1),
    seq[s.id]!.p99Us.toFixed(1),
    String(conc[s.id]!.opsPerSec),
    conc[s.id]!.p50Us.toFixed(1),
    conc[s.id]!.p99Us.toFixed(1),
  ]);
  return [header, ...rows];
}

// ---- main ----

async function main(): Promise<number> {
  const owned: Array<{ close(): unknown }> = [];
  let memcached: MemcachedProcess | undefined;
  try {
    memcached = await startMemcached({ args: ["-t", String(settings.memcachedThreads)] });
    const { endpoint, port } = memcached;

    const seeder = ourClient(endpoint);
    owned.push(seeder);
    const memcachedVersion = Object.values(await seeder.version())[0];
    const memcachedThreads = Number(Object.values(await seeder.stats("settings"))[0]?.num_threads);
    if (memcachedThreads !== settings.memcachedThreads) {
      throw new Error(
        `memcached runs ${memcachedThreads} threads, expected ${settings.memcachedThreads}`,
      );
    }
    if (!(await seeder.set(KEY, VALUE, { flags: 1 }))) throw new Error(`could not set ${KEY}`);

    const subjects = [ours(endpoint), memjs(endpoint), memcacheClient(endpoint), await raw(port)];
    owned.push(...subjects);
    for (const subject of subjects) {
      expectBytes(subject, await subject.get(), settings.valueBytes);
      expectBytes(
        subject,
        await subject.getInFlight(settings.concurrency),
        settings.concurrency * settings.valueBytes,
      );
    }

    const newSeries = () => new Map<string, Series>(subjects.map((s) => [s.id, emptySeries()]));
    const n = settings.concurrency;
    const seqPhase: Phase = {
      call: (subject) => subject.get(),
      opsPerCall: 1,
      calls: settings.seqOps,
      turn: settings.seqTurn,
      warmup: settings.warmupOps,
      series: newSeries(),
    };
    const concPhase: Phase = {
      call: (subject) => subject.getInFlight(n),
      opsPerCall: n,
      calls: settings.concBatches,
      turn: settings.concTurn,
      warmup: settings.concWarmupBatches,
      series: newSeries(),
    };
    const started = performance.now();
    for (let round = 0; round < settings.rounds; round++) {
      await runRound(subjects, round, seqPhase);
      await runRound(subjects, round, concPhase);
      if (process.stderr.isTTY) process.stderr.write(`round ${round + 1}/${settings.rounds}\r`);
    }
    const benchMs = Math.round(performance.now() - started);

    const cas = await casCounter(endpoint, owned);

    const seq: Record<string, Summary> = {};
    const conc: Record<string, Summary> = {};
    for (const subject of subjects) {
      seq[subject.id] = summarize(seqPhase.series.get(subject.id)!);
      conc[subject.id] = summarize(concPhase.series.get(subject.id)!);
    }
    const byRound = (summary: Record<string, Summary>, id: string) => summary[id]!.opsPerSecByRound;
    const seqBestPeer = byRound(seq, "memjs").map((memjsOps, r) =>
      Math.max(memjsOps, byRound(seq, "memcacheClient")[r]!),
    );
    const ratios = {
      seqGetVsBestPeer: pairedRatio(byRound(seq, "ours"), seqBestPeer),
      seqGetVsRaw: pairedRatio(byRound(seq, "ours"), byRound(seq, "raw")),
      concGetVsRaw: pairedRatio(byRound(conc, "ours"), byRound(conc, "raw")),
    };
    const pass = {
      seqGetVsBestPeer: ratios.seqGetVsBestPeer >= targets.seqGetVsBestPeer,
      seqGetVsRaw: ratios.seqGetVsRaw >= targets.seqGetVsRaw,
      concGetVsRaw: ratios.concGetVsRaw >= targets.concGetVsRaw,
      casCounterFinal: cas.final === casCounterExpected,
    };

    console.log(
      `memcached ${memcachedVersion} (${memcachedThreads} thread) on ${endpoint}, node ${process.version}; ${settings.rounds} rounds x ` +
        `${settings.seqOps} sequential gets and ${settings.concBatches} x ${settings.concurrency} ` +
        `concurrent gets per subject, ${settings.valueBytes}-byte value (${benchMs} ms)\n`,
    );
    console.log(formatTable(summaryRows(subjects, seq, conc)));
    console.log(
      "\n(ops/s: median over rounds; p50/p99 pooled over rounds; batch = all " +
        `${settings.concurrency} gets of one batch answered; ratios: median of per-round ratios)\n`,
    );
    for (const [name, value] of Object.entries(ratios)) {
      const key = name as keyof typeof ratios;
      console.log(
        `${name.padEnd(17)} ${value.toFixed(3)}  (target >= ${targets[key].toFixed(2)})  ${verdict(pass[key])}`,
      );
    }
    console.log(
      `${"casCounterFinal".padEnd(17)} ${String(cas.final)}  (expected ${casCounterExpected}; ` +
        `${cas.retries} retries, ${cas.ms} ms)  ${pass.casCounterFinal ? "ok" : "WRONG"}`,
    );

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      memcachedThreads,
      rounds: settings.rounds,
      opsPerRound: {
        seq: settings.seqOps,
        conc: settings.concBatches * settings.concurrency,
        concurrency: settings.concurrency,
        seqTurn: settings.seqTurn,
        concTurnBatches: settings.concTurn,
      },
      valueBytes: settings.valueBytes,
      subjects: Object.fromEntries(
        subjects.map((s) => [s.id, { label: s.label, seq: seq[s.id], conc: conc[s.id] }]),
      ),
      ...ratios,
      casCounterFinal: cas.final,
      casRetries: cas.retries,
      targets: { ...targets, casCounterFinal: casCounterExpected },
      pass,
    };
    await mkdir(new URL(".", resultsFile), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwrote ${resultsFile.pathname}`);
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

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
    process.exitCode = 1;
  },
);
