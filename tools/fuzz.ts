// Seeded fuzzing of the memcached ReplyParser: real reply transcripts (VALUE blocks with and
// without CAS, END, storage replies, meta VA/HD/EN, CONFIG, STAT lines, numbers, errors), the
// same transcripts mutated (byte flips, insertions, deletions, truncations, duplicated spans,
// huge or wrong declared sizes, a missing \r) and plain garbage, each fed to a fresh parser whole
// and in random chunks. The properties checked for every case:
//   - the only exception the parser may throw is MemcacheProtocolError (anything else is a crash);
//   - no single feed() takes longer than hangMs (a hang);
//   - bufferedBytes never exceeds maxLineBytes + maxReplyValueBytes + 2 (bounded memory);
//   - the events and the outcome do not depend on how the bytes were chunked;
//   - a valid transcript yields exactly the events it was built from, without an error.
// Used by test/unit/memcache/fuzz.test.ts (CI-sized), scripts/fuzz.ts (`npm run fuzz`) and
// bench/faults.ts.

import { isDeepStrictEqual } from "node:util";
import { MemcacheProtocolError } from "../lib/memcache/errors.ts";
import { type ParserLimits, type ReplyHandler, ReplyParser } from "../lib/memcache/protocol.ts";

// ---- seeded randomness ----

/** A seeded PRNG (mulberry32) with the few draws the generators need. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  /** Printable ASCII without space (what memcached echoes back as a key). */
  keyText(length: number): string {
    let text = "";
    for (let i = 0; i < length; i++) text += String.fromCharCode(this.int(0x21, 0x7e));
    return text;
  }

  digits(length: number): string {
    let text = String(this.int(1, 9));
    for (let i = 1; i < length; i++) text += String(this.int(0, 9));
    return text;
  }
}

// ---- reply events ----

/** One handler call, data as hex so events compare with isDeepStrictEqual. */
export type ReplyEvent =
  | { type: "value"; key: string; flags: number; data: string; cas: string | undefined }
  | { type: "meta"; flags: string; data: string }
  | { type: "config"; name: string; data: string }
  | { type: "line"; line: string };

class RecordingHandler implements ReplyHandler {
  readonly events: ReplyEvent[] = [];

  onValue(key: string, flags: number, data: Buffer, cas: string | undefined): void {
    this.events.push({ type: "value", key, flags, data: data.toString("hex"), cas });
  }

  onMetaValue(flags: string, data: Buffer): void {
    this.events.push({ type: "meta", flags, data: data.toString("hex") });
  }

  onConfig(name: string, data: Buffer): void {
    this.events.push({ type: "config", name, data: data.toString("hex") });
  }

  onLine(line: string): void {
    this.events.push({ type: "line", line });
  }
}

// ---- generators: real transcripts ----

/** Bytes as a server would send them, and the events a correct parser reports for them. */
export interface Transcript {
  bytes: Buffer;
  events: ReplyEvent[];
}

const STATUS_LINES = [
  "STORED",
  "NOT_STORED",
  "EXISTS",
  "NOT_FOUND",
  "DELETED",
  "TOUCHED",
  "OK",
  "END",
  "ERROR",
  "CLIENT_ERROR bad data chunk",
  "CLIENT_ERROR bad command line format",
  "SERVER_ERROR out of memory storing object",
  "SERVER_ERROR object too large for cache",
  "VERSION 1.6.18",
  "HD",
  "HD c8172 t-1 f0",
  "HD W",
  "EN",
  "NF",
  "NS",
  "EX",
  "MN",
  "RESET",
];

const META_RETURN_FLAGS = ["f0", "f3", "f4294967295", "c1", "c18446744073709551615", "t-1", "t59"];
const META_STATE_FLAGS = ["W", "Z", "X", "k", "s12", "Oopaque", "bYmFzZTY0"];

const STAT_LINES = [
  "STAT pid 4242",
  "STAT uptime 91",
  "STAT version 1.6.18",
  "STAT libevent 2.1.12-stable",
  "STAT rusage_user 0.123456",
  "STAT curr_connections 2",
  "STAT items:1:number 7",
  "STAT evictions 0",
  "STAT ",
];

/** A data block: empty, small, medium or (rarely) as large as the limit allows. */
function blockData(rng: Rng, limits: ParserLimits): Buffer {
  const roll = rng.next();
  let size: number;
  if (roll < 0.1) size = 0;
  else if (roll < 0.6) size = rng.int(1, 16);
  else if (roll < 0.9) size = rng.int(17, 600);
  else if (roll < 0.98) size = rng.int(601, Math.min(8192, limits.maxReplyValueBytes));
  else
    size = rng.chance(0.5) ? limits.maxReplyValueBytes : rng.int(8193, limits.maxReplyValueBytes);
  if (rng.chance(0.3)) {
    // Text that looks like protocol inside the data: it must stay data.
    const tokens = ["\r\nEND\r\n", "VALUE k 0 1\r\n", "\r\n", "\n", "VA 3 f1\r\n", "STORED\r\n"];
    let text = "";
    while (text.length < size) text += rng.chance(0.4) ? rng.pick(tokens) : rng.keyText(4);
    return Buffer.from(text.slice(0, size), "latin1");
  }
  return rng.bytes(size);
}

function line(text: string): Buffer {
  return Buffer.from(`${text}\r\n`, "latin1");
}

function withBlock(header: string, data: Buffer): Buffer {
  return Buffer.concat([line(header), data, line("")]);
}

function valueBlock(rng: Rng, limits: ParserLimits, withCas: boolean): Transcript {
  const key = rng.keyText(rng.chance(0.9) ? rng.int(1, 40) : rng.int(41, 250));
  const flags = rng.chance(0.7) ? rng.int(0, 3) : rng.int(0, 0xffffffff);
  const cas = withCas
    ? (BigInt(rng.int(0, 0xffffffff)) * 4294967296n + BigInt(rng.int(0, 0xffffffff))).toString()
    : undefined;
  const data = blockData(rng, limits);
  const header = `VALUE ${key} ${flags} ${data.length}${cas === undefined ? "" : ` ${cas}`}`;
  return {
    bytes: withBlock(header, data),
    events: [{ type: "value", key, flags, data: data.toString("hex"), cas }],
  };
}

/** get/gets/gat reply: zero or more VALUE blocks, then END. */
function retrieval(rng: Rng, limits: ParserLimits): Transcript {
  const withCas = rng.chance(0.5);
  const parts: Transcript[] = [];
  const count = rng.chance(0.7) ? rng.int(0, 2) : rng.int(3, 8);
  for (let i = 0; i < count; i++) parts.push(valueBlock(rng, limits, withCas));
  parts.push({ bytes: line("END"), events: [{ type: "line", line: "END" }] });
  return join(parts);
}

function metaValue(rng: Rng, limits: ParserLimits): Transcript {
  const data = blockData(rng, limits);
  const flagCount = rng.int(0, 4);
  const tokens: string[] = [];
  for (let i = 0; i < flagCount; i++) {
    tokens.push(rng.pick(rng.chance(0.6) ? META_RETURN_FLAGS : META_STATE_FLAGS));
  }
  const flags = tokens.join(" ");
  const header = flags === "" ? `VA ${data.length}` : `VA ${data.length} ${flags}`;
  return {
    bytes: withBlock(header, data),
    events: [{ type: "meta", flags, data: data.toString("hex") }],
  };
}

function config(rng: Rng): Transcript {
  const nodes = Array.from(
    { length: rng.int(1, 6) },
    (_, i) => `node-${i}.cache.amazonaws.com|10.0.${rng.int(0, 255)}.${rng.int(1, 254)}|11211`,
  );
  const data = Buffer.from(`${rng.int(1, 999)}\n${nodes.join(" ")}\n`, "latin1");
  return join([
    {
      bytes: withBlock(`CONFIG cluster 0 ${data.length}`, data),
      events: [{ type: "config", name: "cluster", data: data.toString("hex") }],
    },
    { bytes: line("END"), events: [{ type: "line", line: "END" }] },
  ]);
}

function stats(rng: Rng): Transcript {
  const lines = Array.from({ length: rng.int(0, 12) }, () => rng.pick(STAT_LINES));
  lines.push("END");
  return {
    bytes: Buffer.concat(lines.map(line)),
    events: lines.map((text) => ({ type: "line", line: text })),
  };
}

function simpleLine(rng: Rng): Transcript {
  const roll = rng.next();
  const text =
    roll < 0.7
      ? rng.pick(STATUS_LINES)
      : roll < 0.85
        ? String(rng.int(0, 1_000_000))
        : rng.chance(0.5)
          ? "18446744073709551615"
          : rng.digits(rng.int(1, 20));
  return { bytes: line(text), events: [{ type: "line", line: text }] };
}

function join(parts: readonly Transcript[]): Transcript {
  return {
    bytes: Buffer.concat(parts.map((part) => part.bytes)),
    events: parts.flatMap((part) => part.events),
  };
}

/** A valid reply stream: 1..12 replies of every kind, as a pipelining client receives them. */
export function validTranscript(rng: Rng, limits: ParserLimits): Transcript {
  const parts: Transcript[] = [];
  const count = rng.int(1, 12);
  for (let i = 0; i < count; i++) {
    const roll = rng.next();
    if (roll < 0.35) parts.push(retrieval(rng, limits));
    else if (roll < 0.55) parts.push(metaValue(rng, limits));
    else if (roll < 0.62) parts.push(config(rng));
    else if (roll < 0.7) parts.push(stats(rng));
    else parts.push(simpleLine(rng));
  }
  return join(parts);
}

// ---- generators: mutations and garbage ----

const INSERTS = [
  "\r\n",
  "\n",
  "\r",
  " ",
  "  ",
  "\x00",
  "\xff",
  "VALUE ",
  "VALUE k 0 ",
  "VA ",
  "VA 1",
  "CONFIG ",
  "CONFIG x 0 ",
  "END\r\n",
  "0",
  "-1",
  "99999999999999999999",
  "STAT ",
];

/** Declared sizes that must not be trusted: over the limit, past 2^53, not decimal. */
function hugeSize(rng: Rng, limits: ParserLimits): string {
  return rng.pick([
    String(limits.maxReplyValueBytes + 1),
    String(limits.maxReplyValueBytes * 16),
    String(2 ** 31),
    String(2 ** 32 + 5),
    String(2 ** 53 + 1),
    "9".repeat(15),
    "9".repeat(16),
    "9".repeat(21),
    "9".repeat(40),
    "-1",
    "1e9",
    "0x10",
    "",
    " ",
  ]);
}

const SIZE_FIELD = [
  /^(VALUE \S+ \S+ )(\d+)/gm, // VALUE <key> <flags> <bytes>
  /^(VA )(\d+)/gm,
  /^(CONFIG \S+ \S+ )(\d+)/gm,
];

/** Replaces one declared block size with `replace(old)`; unchanged if there is none. */
function rewriteSize(rng: Rng, input: Buffer, replace: (size: number) => string): Buffer {
  const text = input.toString("latin1");
  const matches: RegExpExecArray[] = [];
  for (const pattern of SIZE_FIELD) {
    for (const match of text.matchAll(pattern)) matches.push(match);
  }
  if (matches.length === 0) return input;
  const match = rng.pick(matches);
  const at = match.index + match[1]!.length;
  const next = replace(Number(match[2]));
  return Buffer.from(text.slice(0, at) + next + text.slice(at + match[2]!.length), "latin1");
}

/** One random edit of `input`. */
export function mutateOnce(rng: Rng, input: Buffer, limits: ParserLimits): Buffer {
  const length = input.length;
  const at = rng.int(0, length);
  const span = () => Math.min(length - at, rng.chance(0.8) ? rng.int(1, 8) : rng.int(9, 512));
  switch (rng.int(0, 10)) {
    case 0: {
      // Byte flip (one bit) or byte replacement.
      if (length === 0) return input;
      const out = Buffer.from(input);
      const i = rng.int(0, length - 1);
      out[i] = rng.chance(0.5) ? out[i]! ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
      return out;
    }
    case 1: {
      const inserted = rng.chance(0.6)
        ? Buffer.from(rng.pick(INSERTS), "latin1")
        : rng.bytes(rng.int(1, 16));
      return Buffer.concat([input.subarray(0, at), inserted, input.subarray(at)]);
    }
    case 2:
      return Buffer.concat([input.subarray(0, at), input.subarray(at + span())]);
    case 3:
      return input.subarray(0, at);
    case 4: {
      // Duplicate a span, right after itself or somewhere else.
      const copy = input.subarray(at, at + span());
      const to = rng.chance(0.5) ? at + copy.length : rng.int(0, length);
      return Buffer.concat([input.subarray(0, to), copy, input.subarray(to)]);
    }
    case 5:
      return rewriteSize(rng, input, () => hugeSize(rng, limits));
    case 6:
      // Declared size off by a little: the block end lands on the wrong bytes.
      return rewriteSize(rng, input, (size) =>
        String(Math.max(0, size + rng.pick([-2, -1, 1, 2]))),
      );
    case 7: {
      // A missing \r before a \n.
      const crlf: number[] = [];
      for (let i = input.indexOf("\r\n"); i !== -1; i = input.indexOf("\r\n", i + 2)) crlf.push(i);
      if (crlf.length === 0) return input;
      const i = rng.pick(crlf);
      return Buffer.concat([input.subarray(0, i), input.subarray(i + 1)]);
    }
    case 8: {
      // A line longer than maxLineBytes (with or without its \r\n).
      const long = Buffer.alloc(
        limits.maxLineBytes + rng.int(-2, 64),
        rng.pick([0x41, 0x20, 0x39]),
      );
      const end = rng.chance(0.5) ? Buffer.from("\r\n") : Buffer.alloc(0);
      return Buffer.concat([input.subarray(0, at), long, end, input.subarray(at)]);
    }
    case 9:
      // Swap two halves: replies out of place.
      return Buffer.concat([input.subarray(at), input.subarray(0, at)]);
    default: {
      // Overwrite a span with random bytes.
      const out = Buffer.from(input);
      const end = at + span();
      for (let i = at; i < end; i++) out[i] = rng.int(0, 255);
      return out;
    }
  }
}

/** 1..4 random edits of a valid transcript. */
export function mutate(rng: Rng, input: Buffer, limits: ParserLimits): Buffer {
  let out = input;
  const edits = rng.int(1, 4);
  for (let i = 0; i < edits; i++) out = mutateOnce(rng, out, limits);
  return out;
}

/** Pure garbage: random bytes, or random sequences of protocol-ish tokens. */
export function garbage(rng: Rng, limits: ParserLimits): Buffer {
  if (rng.chance(0.5)) return rng.bytes(rng.chance(0.8) ? rng.int(0, 256) : rng.int(257, 4096));
  const tokens = [...INSERTS, ...STATUS_LINES.map((text) => `${text}\r\n`)];
  const parts: string[] = [];
  const count = rng.int(1, 40);
  for (let i = 0; i < count; i++) {
    parts.push(rng.chance(0.15) ? hugeSize(rng, limits) : rng.pick(tokens));
  }
  return Buffer.from(parts.join(""), "latin1");
}

/** Cuts `input` into chunks: one byte each, at random sizes, or right around \r and \n. */
export function chunk(rng: Rng, input: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  const mode = input.length <= 2048 && rng.chance(0.15) ? 0 : rng.int(1, 3);
  let offset = 0;
  while (offset < input.length) {
    let size: number;
    if (mode === 0) size = 1;
    else if (mode === 1) size = rng.int(1, 16);
    else if (mode === 2) size = rng.int(1, Math.max(1, Math.ceil(input.length / 3)));
    else {
      // End the chunk just before, on or just after the next \r or \n.
      const cr = input.indexOf(rng.chance(0.5) ? 0x0d : 0x0a, offset);
      size = cr === -1 ? input.length - offset : Math.max(1, cr - offset + rng.int(0, 1));
    }
    chunks.push(input.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

// ---- running cases ----

export interface FeedOutcome {
  events: ReplyEvent[];
  /** The MemcacheProtocolError's message, when the parser rejected the input. */
  protocolError: string | undefined;
  /** Any other exception: a crash. */
  crash: unknown;
  /** Longest single feed() call, in ms. */
  slowestFeedMs: number;
  /** Largest bufferedBytes seen after a feed() that did not throw. */
  maxBufferedBytes: number;
}

/** Feeds `chunks` to a fresh parser, stopping at the first exception. */
export function feedParser(chunks: readonly Buffer[], limits: ParserLimits): FeedOutcome {
  const handler = new RecordingHandler();
  const parser = new ReplyParser(handler, limits);
  const outcome: FeedOutcome = {
    events: handler.events,
    protocolError: undefined,
    crash: undefined,
    slowestFeedMs: 0,
    maxBufferedBytes: 0,
  };
  for (const piece of chunks) {
    const started = performance.now();
    try {
      parser.feed(piece);
    } catch (error) {
      outcome.slowestFeedMs = Math.max(outcome.slowestFeedMs, performance.now() - started);
      if (error instanceof MemcacheProtocolError) outcome.protocolError = error.message;
      else outcome.crash = error;
      return outcome;
    }
    outcome.slowestFeedMs = Math.max(outcome.slowestFeedMs, performance.now() - started);
    outcome.maxBufferedBytes = Math.max(outcome.maxBufferedBytes, parser.bufferedBytes);
  }
  return outcome;
}

export interface FuzzOptions {
  /** Parser limits for every case. Default maxLineBytes 1024, maxReplyValueBytes 64 KiB. */
  limits: ParserLimits;
  /** A single feed() slower than this is a hang (confirmed by one replay). Default 50 ms. */
  hangMs: number;
  /** How many failing inputs to keep in the result. Default 5. */
  keepFailures: number;
  /**
   * Called about every progressEveryMs with the cases done so far and the result until then (a
   * long run is not silent). Default: none.
   */
  onProgress: ((done: number, soFar: Readonly<FuzzResult>) => void) | undefined;
  /** How often onProgress is called, ms. Default 2,000. */
  progressEveryMs: number;
}

export const fuzzDefaults: FuzzOptions = {
  limits: { maxLineBytes: 1024, maxReplyValueBytes: 64 * 1024 },
  hangMs: 50,
  keepFailures: 5,
  onProgress: undefined,
  progressEveryMs: 2_000,
};

export type FailureKind = "crash" | "hang" | "buffer" | "round-trip" | "chunking";

export interface FuzzFailure {
  kind: FailureKind;
  /** Which case (reproduce with the same seed). */
  index: number;
  /** What went wrong (the exception, the timing, the differing events). */
  detail: string;
  /** The input, hex (first 1,024 bytes). */
  hex: string;
  /** Its length in bytes. */
  length: number;
  /** The chunk sizes of the chunked feed. */
  chunkSizes: number[];
}

export interface FuzzResult {
  cases: number;
  /** Cases that were valid transcripts (no mutation). */
  validCases: number;
  /** Exceptions other than MemcacheProtocolError. */
  crashes: number;
  /** Cases with a feed() over hangMs (twice in a row). */
  hangs: number;
  /** Cases the parser rejected with MemcacheProtocolError (whole feed). */
  protocolErrors: number;
  /** Largest bufferedBytes seen; must be <= bufferLimit. */
  maxBufferedBytes: number;
  /** maxLineBytes + maxReplyValueBytes + 2. */
  bufferLimit: number;
  /** Cases whose bufferedBytes went over bufferLimit. */
  bufferViolations: number;
  /** Valid transcripts whose events differ from the ones they were built from, or that threw. */
  roundTripMismatches: number;
  /** Cases whose events or outcome differ between the whole and the chunked feed. */
  chunkingMismatches: number;
  /** Events reported over all whole feeds. */
  events: number;
  /** Slowest single feed() over the run, ms. */
  slowestFeedMs: number;
  durationMs: number;
  /** The first few failing inputs. */
  failures: FuzzFailure[];
}

/**
 * Runs `cases` seeded cases (about a quarter valid transcripts, half mutated ones, a quarter
 * garbage); the same seed always produces the same inputs and chunkings.
 */
export function runParserFuzz(
  cases: number,
  seed: number,
  options: Partial<FuzzOptions> = {},
): FuzzResult {
  const { limits, hangMs, keepFailures, onProgress, progressEveryMs } = {
    ...fuzzDefaults,
    ...options,
  };
  const rng = new Rng(seed);
  const started = performance.now();
  const result: FuzzResult = {
    cases,
    validCases: 0,
    crashes: 0,
    hangs: 0,
    protocolErrors: 0,
    maxBufferedBytes: 0,
    bufferLimit: limits.maxLineBytes + limits.maxReplyValueBytes + 2,
    bufferViolations: 0,
    roundTripMismatches: 0,
    chunkingMismatches: 0,
    events: 0,
    slowestFeedMs: 0,
    durationMs: 0,
    failures: [],
  };

  let nextProgressAt = started + progressEveryMs;
  for (let index = 0; index < cases; index++) {
    if (onProgress && index > 0 && index % 256 === 0 && performance.now() >= nextProgressAt) {
      result.durationMs = performance.now() - started;
      onProgress(index, result);
      nextProgressAt = performance.now() + progressEveryMs;
    }
    const roll = rng.next();
    let input: Buffer;
    let expected: ReplyEvent[] | undefined;
    if (roll < 0.25) {
      const transcript = validTranscript(rng, limits);
      input = transcript.bytes;
      expected = transcript.events;
      result.validCases++;
    } else if (roll < 0.75) {
      input = mutate(rng, validTranscript(rng, limits).bytes, limits);
    } else {
      input = garbage(rng, limits);
    }
    const chunks = chunk(rng, input);
    const kinds = new Set<FailureKind>();
    const details: string[] = [];
    const fail = (kind: FailureKind, detail: string) => {
      kinds.add(kind);
      details.push(`${kind}: ${detail}`);
    };

    const whole = feedParser([input], limits);
    const pieces = feedParser(chunks, limits);
    for (const outcome of [whole, pieces]) {
      if (outcome.crash !== undefined) fail("crash", describeError(outcome.crash));
      result.maxBufferedBytes = Math.max(result.maxBufferedBytes, outcome.maxBufferedBytes);
      result.slowestFeedMs = Math.max(result.slowestFeedMs, outcome.slowestFeedMs);
      if (outcome.maxBufferedBytes > result.bufferLimit) {
        fail("buffer", `bufferedBytes ${outcome.maxBufferedBytes} > ${result.bufferLimit}`);
      }
    }
    // A slow feed may be a GC pause or a busy machine: it counts as a hang only if it is slow
    // again on replay.
    for (const [outcome, replay] of [
      [whole, [input]],
      [pieces, chunks],
    ] as const) {
      if (outcome.slowestFeedMs > hangMs) {
        const again = feedParser(replay, limits);
        if (again.slowestFeedMs > hangMs) {
          fail("hang", `feed() took ${again.slowestFeedMs.toFixed(1)} ms (> ${hangMs} ms)`);
          break;
        }
      }
    }
    if (whole.protocolError !== undefined) result.protocolErrors++;
    result.events += whole.events.length;
    if (
      whole.crash === undefined &&
      pieces.crash === undefined &&
      ((whole.protocolError === undefined) !== (pieces.protocolError === undefined) ||
        !isDeepStrictEqual(whole.events, pieces.events))
    ) {
      fail(
        "chunking",
        `whole: ${whole.events.length} events, error ${whole.protocolError}; chunked: ${pieces.events.length} events, error ${pieces.protocolError}`,
      );
    }
    if (expected !== undefined) {
      if (whole.protocolError !== undefined || !isDeepStrictEqual(whole.events, expected)) {
        fail(
          "round-trip",
          `expected ${expected.length} events, got ${whole.events.length}; error ${whole.protocolError}`,
        );
      }
    }

    if (kinds.has("crash")) result.crashes++;
    if (kinds.has("hang")) result.hangs++;
    if (kinds.has("buffer")) result.bufferViolations++;
    if (kinds.has("round-trip")) result.roundTripMismatches++;
    if (kinds.has("chunking")) result.chunkingMismatches++;
    if (kinds.size > 0 && result.failures.length < keepFailures) {
      result.failures.push({
        kind: [...kinds][0]!,
        index,
        detail: details.join("; "),
        hex: input.subarray(0, 1024).toString("hex"),
        length: input.length,
        chunkSizes: chunks.map((piece) => piece.length),
      });
    }
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return `non-Error thrown: ${String(error)}`;
}

/**
 * Seeded inputs the parser rejects with MemcacheProtocolError before reporting any event: a garbage
 * reply that must close a client's connection (for tests over a socket).
 */
export function rejectedReplies(count: number, seed: number, limits: ParserLimits): Buffer[] {
  const rng = new Rng(seed);
  const out: Buffer[] = [];
  for (let attempt = 0; out.length < count && attempt < count * 1000; attempt++) {
    const input = rng.chance(0.5)
      ? mutate(rng, validTranscript(rng, limits).bytes, limits)
      : garbage(rng, limits);
    const outcome = feedParser([input], limits);
    if (outcome.protocolError !== undefined && outcome.events.length === 0) out.push(input);
  }
  return out;
}
