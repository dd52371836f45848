// Unit tests of the pure memcached protocol layer: the incremental ReplyParser fed canned bytes
// (every reply type, every chunk boundary, protocol violations, stop()), the command encoders,
// toWireExptime and parseMetaFlags. No sockets.

import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { MemcacheIllegalInputError, MemcacheProtocolError } from "../../../lib/memcache/errors.ts";
import {
  encodeLine,
  encodeMetaSet,
  encodeMetaSetText,
  encodeStorage,
  encodeStorageText,
  type ParserLimits,
  parseMetaFlags,
  type ReplyHandler,
  ReplyParser,
  toWireExptime,
  ttlLeft,
} from "../../../lib/memcache/protocol.ts";
import { thrownBy } from "../../helpers/client.ts";

type ReplyEvent =
  | { value: [key: string, flags: number, data: string, cas: string | undefined] }
  | { meta: [flags: string, data: string] }
  | { config: [name: string, data: string] }
  | { line: string };

/** Records every handler call as a plain object (data as latin1, which keeps every byte). */
class Recorder implements ReplyHandler {
  readonly events: ReplyEvent[] = [];
  /** Copies of the data blocks, in order, for byte-exact comparisons. */
  readonly blocks: Buffer[] = [];
  /** Called after each recorded event with the number of events so far. */
  afterEvent: ((count: number) => void) | undefined;

  onValue(key: string, flags: number, data: Buffer, cas: string | undefined): void {
    this.blocks.push(Buffer.from(data));
    this.record({ value: [key, flags, data.toString("latin1"), cas] });
  }

  onMetaValue(flags: string, data: Buffer): void {
    this.blocks.push(Buffer.from(data));
    this.record({ meta: [flags, data.toString("latin1")] });
  }

  onConfig(name: string, data: Buffer): void {
    this.blocks.push(Buffer.from(data));
    this.record({ config: [name, data.toString("latin1")] });
  }

  onLine(line: string): void {
    this.record({ line });
  }

  private record(event: ReplyEvent): void {
    this.events.push(event);
    this.afterEvent?.(this.events.length);
  }
}

function bytes(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

/** Feeds `chunks` in order to a fresh parser and returns what it reported. */
function feedAll(chunks: readonly Buffer[], limits?: Partial<ParserLimits>) {
  const recorder = new Recorder();
  const parser = new ReplyParser(recorder, limits);
  for (const chunk of chunks) parser.feed(chunk);
  return { events: recorder.events, blocks: recorder.blocks, parser };
}

function oneByteChunks(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i++) chunks.push(data.subarray(i, i + 1));
  return chunks;
}

function splitAt(data: Buffer, cuts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(data.subarray(start, cut));
    start = cut;
  }
  chunks.push(data.subarray(start));
  return chunks;
}

/**
 * Feeds each chunking of one transcript and returns a description of every chunking whose
 * events differ from `expected`, that throws, or that leaves bytes buffered (empty = all good).
 */
function chunkingMismatches(
  chunkings: Iterable<{ label: string; chunks: Buffer[] }>,
  expected: readonly ReplyEvent[],
): string[] {
  const mismatches: string[] = [];
  for (const { label, chunks } of chunkings) {
    try {
      const { events, parser } = feedAll(chunks);
      if (!isDeepStrictEqual(events, expected)) {
        mismatches.push(`${label}: got ${JSON.stringify(events)}`);
      } else if (parser.bufferedBytes !== 0) {
        mismatches.push(`${label}: ${parser.bufferedBytes} bytes still buffered`);
      }
    } catch (error) {
      mismatches.push(`${label}: threw ${String(error)}`);
    }
  }
  return mismatches;
}

function* everyTwoWaySplit(data: Buffer) {
  for (let cut = 0; cut <= data.length; cut++) {
    yield { label: `split at ${cut}`, chunks: splitAt(data, [cut]) };
  }
}

/** mulberry32: a tiny seeded PRNG so random chunkings are the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function* randomSplits(data: Buffer, cases: number, seed: number) {
  const random = seededRandom(seed);
  for (let n = 0; n < cases; n++) {
    const cutCount = 1 + Math.floor(random() * 12);
    const cuts: number[] = [];
    for (let i = 0; i < cutCount; i++) cuts.push(Math.floor(random() * (data.length + 1)));
    cuts.sort((a, b) => a - b); // repeated cuts make empty chunks, which must be harmless
    yield { label: `cuts ${cuts.join(",")}`, chunks: splitAt(data, cuts) };
  }
}

const configData = "1\nhost|10.0.0.1|11211\n";
// Value bytes that look like protocol: they must come through as data, by byte count.
const trickyData = "a\r\nEND\r\nVALUE x 0 3\r\nb";

interface CannedReply {
  name: string;
  wire: string;
  events: ReplyEvent[];
}

const replies: CannedReply[] = [
  { name: "STORED", wire: "STORED\r\n", events: [{ line: "STORED" }] },
  { name: "NOT_STORED", wire: "NOT_STORED\r\n", events: [{ line: "NOT_STORED" }] },
  { name: "EXISTS", wire: "EXISTS\r\n", events: [{ line: "EXISTS" }] },
  { name: "NOT_FOUND", wire: "NOT_FOUND\r\n", events: [{ line: "NOT_FOUND" }] },
  { name: "DELETED", wire: "DELETED\r\n", events: [{ line: "DELETED" }] },
  { name: "TOUCHED", wire: "TOUCHED\r\n", events: [{ line: "TOUCHED" }] },
  { name: "OK", wire: "OK\r\n", events: [{ line: "OK" }] },
  { name: "END", wire: "END\r\n", events: [{ line: "END" }] },
  { name: "incr number", wire: "42\r\n", events: [{ line: "42" }] },
  { name: "VERSION", wire: "VERSION 1.6.18\r\n", events: [{ line: "VERSION 1.6.18" }] },
  {
    name: "STAT lines and END",
    wire: "STAT pid 1234\r\nSTAT uptime 56\r\nSTAT version 1.6.18\r\nEND\r\n",
    events: [
      { line: "STAT pid 1234" },
      { line: "STAT uptime 56" },
      { line: "STAT version 1.6.18" },
      { line: "END" },
    ],
  },
  { name: "ERROR", wire: "ERROR\r\n", events: [{ line: "ERROR" }] },
  {
    name: "CLIENT_ERROR",
    wire: "CLIENT_ERROR bad data chunk\r\n",
    events: [{ line: "CLIENT_ERROR bad data chunk" }],
  },
  {
    name: "SERVER_ERROR",
    wire: "SERVER_ERROR object too large for cache\r\n",
    events: [{ line: "SERVER_ERROR object too large for cache" }],
  },
  {
    name: "VALUE without cas",
    wire: "VALUE k 5 3\r\nabc\r\nEND\r\n",
    events: [{ value: ["k", 5, "abc", undefined] }, { line: "END" }],
  },
  {
    name: "VALUE with cas",
    wire: "VALUE k 5 3 12345\r\nabc\r\nEND\r\n",
    events: [{ value: ["k", 5, "abc", "12345"] }, { line: "END" }],
  },
  {
    name: "multiple VALUEs then END",
    wire: "VALUE a 0 1\r\n1\r\nVALUE bb 1 2\r\n22\r\nVALUE ccc 4294967295 3 9\r\n333\r\nEND\r\n",
    events: [
      { value: ["a", 0, "1", undefined] },
      { value: ["bb", 1, "22", undefined] },
      { value: ["ccc", 4294967295, "333", "9"] },
      { line: "END" },
    ],
  },
  {
    name: "zero-byte VALUE",
    wire: "VALUE k 0 0\r\n\r\nEND\r\n",
    events: [{ value: ["k", 0, "", undefined] }, { line: "END" }],
  },
  {
    name: "VALUE whose data looks like protocol",
    wire: `VALUE k 0 ${trickyData.length}\r\n${trickyData}\r\nEND\r\n`,
    events: [{ value: ["k", 0, trickyData, undefined] }, { line: "END" }],
  },
  {
    name: "VALUE with every byte value",
    wire: `VALUE bin 0 256\r\n${String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i))}\r\n`,
    events: [
      {
        value: [
          "bin",
          0,
          String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i)),
          undefined,
        ],
      },
    ],
  },
  { name: "meta HD", wire: "HD\r\n", events: [{ line: "HD" }] },
  { name: "meta HD with flags", wire: "HD t59 c123 W\r\n", events: [{ line: "HD t59 c123 W" }] },
  { name: "meta EN", wire: "EN\r\n", events: [{ line: "EN" }] },
  { name: "meta NF", wire: "NF\r\n", events: [{ line: "NF" }] },
  { name: "meta NS", wire: "NS\r\n", events: [{ line: "NS" }] },
  { name: "meta EX", wire: "EX\r\n", events: [{ line: "EX" }] },
  { name: "meta MN", wire: "MN\r\n", events: [{ line: "MN" }] },
  {
    name: "meta VA with flags",
    wire: "VA 2 f1 t-1 c7\r\nhi\r\n",
    events: [{ meta: ["f1 t-1 c7", "hi"] }],
  },
  { name: "empty meta VA without flags", wire: "VA 0\r\n\r\n", events: [{ meta: ["", ""] }] },
  {
    name: "CONFIG block",
    wire: `CONFIG cluster 0 ${configData.length}\r\n${configData}\r\nEND\r\n`,
    events: [{ config: ["cluster", configData] }, { line: "END" }],
  },
];

const transcript = bytes(replies.map((r) => r.wire).join(""));
const transcriptEvents = replies.flatMap((r) => r.events);

describe("ReplyParser", () => {
  describe("reply types", () => {
    it.each(replies)("reports a $name reply", ({ wire, events }) => {
      const result = feedAll([bytes(wire)]);
      expect(result.events).toEqual(events);
      expect(result.parser.bufferedBytes).toBe(0);
    });

    it("reports every reply of a concatenated transcript in wire order", () => {
      expect(feedAll([transcript]).events).toEqual(transcriptEvents);
    });

    it("reports nothing for a reply that is not yet complete", () => {
      expect(feedAll([bytes("STORED\r")]).events).toEqual([]);
      expect(feedAll([bytes("VALUE k 0 3\r\nab")]).events).toEqual([]);
      expect(feedAll([bytes("VALUE k 0 3\r\nabc\r")]).events).toEqual([]);
    });
  });

  describe("chunk boundaries", () => {
    it("reports the same events for the transcript split in two at every position", () => {
      expect(chunkingMismatches(everyTwoWaySplit(transcript), transcriptEvents)).toEqual([]);
    });

    it("reports the same events for the transcript fed one byte at a time", () => {
      const chunkings = [{ label: "one byte at a time", chunks: oneByteChunks(transcript) }];
      expect(chunkingMismatches(chunkings, transcriptEvents)).toEqual([]);
    });

    it("reports the same events for 200 seeded random multi-way splits", () => {
      expect(chunkingMismatches(randomSplits(transcript, 200, 0x5eed), transcriptEvents)).toEqual(
        [],
      );
    });

    it("delivers value bytes that look like END and VALUE lines as data at every split", () => {
      const wire = bytes(`VALUE k 0 ${trickyData.length}\r\n${trickyData}\r\nEND\r\n`);
      const expected: ReplyEvent[] = [{ value: ["k", 0, trickyData, undefined] }, { line: "END" }];
      expect(feedAll([wire]).events).toEqual(expected);
      expect(chunkingMismatches(everyTwoWaySplit(wire), expected)).toEqual([]);
    });

    it("delivers a 500 KiB value fed in 64 KiB chunks byte-identical", () => {
      const random = seededRandom(500);
      const payload = Buffer.alloc(500 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = Math.floor(random() * 256);
      const header = bytes(`VALUE big 7 ${payload.length}\r\n`);
      const wire = Buffer.concat([header, payload, bytes("\r\nEND\r\n")]);
      const chunkSize = 64 * 1024;
      const chunks: Buffer[] = [];
      for (let i = 0; i < wire.length; i += chunkSize) chunks.push(wire.subarray(i, i + chunkSize));

      const recorder = new Recorder();
      const parser = new ReplyParser(recorder);
      parser.feed(chunks[0]!);
      // Only the block's own bytes are held while it is incomplete.
      expect(parser.bufferedBytes).toBe(chunkSize - header.length);
      for (const chunk of chunks.slice(1)) parser.feed(chunk);

      expect(recorder.events.map((e) => ("value" in e ? e.value[0] : e))).toEqual([
        "big",
        { line: "END" },
      ]);
      const received = recorder.blocks[0]!;
      expect(received.length).toBe(payload.length);
      expect(received.equals(payload)).toBe(true);
      expect(parser.bufferedBytes).toBe(0);
    });
  });

  describe("protocol violations", () => {
    it.each([
      ["a line ending in a bare \\n", "STORED\n"],
      ["a bare \\n after a good line", "STORED\r\nEND\n"],
      ["an empty line ending in a bare \\n", "\n"],
      ["a VALUE header ending in a bare \\n", "VALUE k 0 1\na\r\n"],
    ])("throws MemcacheProtocolError for %s", (_name, wire) => {
      expect(() => feedAll([bytes(wire)])).toThrow(MemcacheProtocolError);
      expect(() => feedAll(oneByteChunks(bytes(wire)))).toThrow(MemcacheProtocolError);
    });

    it.each([
      ["shorter than announced", "VALUE k 0 2\r\nabc\r\nEND\r\n"],
      ["longer than announced", "VALUE k 0 4\r\nabc\r\nEND\r\n"],
      ["a zero-byte block followed by data", "VALUE k 0 0\r\nx\r\nEND\r\n"],
      ["a meta VA block of the wrong size", "VA 1\r\nhi\r\n"],
      ["a CONFIG block of the wrong size", "CONFIG cluster 0 1\r\nhi\r\nEND\r\n"],
    ])("throws MemcacheProtocolError at every split for a data block %s", (_name, text) => {
      const wire = bytes(text);
      expect(() => feedAll([wire])).toThrow(MemcacheProtocolError);
      const notThrown: number[] = [];
      for (let cut = 0; cut <= wire.length; cut++) {
        const error = (() => {
          try {
            feedAll(splitAt(wire, [cut]));
          } catch (e) {
            return e;
          }
          return undefined;
        })();
        if (!(error instanceof MemcacheProtocolError)) notThrown.push(cut);
      }
      expect(notThrown).toEqual([]);
    });

    it.each([
      ["non-numeric flags", "VALUE k x 3\r\nabc\r\n"],
      ["non-numeric size", "VALUE k 0 3x\r\nabc\r\n"],
      ["a negative size", "VALUE k 0 -1\r\n"],
      ["an empty size (double space)", "VALUE k 0  3\r\nabc\r\n"],
      ["non-numeric cas", "VALUE k 0 3 abc\r\nabc\r\n"],
      ["too few fields", "VALUE k 0\r\n"],
      ["too many fields", "VALUE k 0 3 1 2\r\nabc\r\n"],
      ["a meta VA without a numeric size", "VA x f1\r\n"],
      ["a CONFIG header with too few fields", "CONFIG cluster 3\r\nabc\r\n"],
      ["a CONFIG header with non-numeric flags", "CONFIG cluster x 3\r\nabc\r\n"],
      // memcached's flags word is 32 bits, its CAS 64: anything larger is not memcached talking.
      ["flags of 2^32 (one past the 32-bit word)", "VALUE k 4294967296 3\r\nabc\r\n"],
      ["flags of 9999999999 (10 digits, over 32 bits)", "VALUE k 9999999999 3\r\nabc\r\n"],
      ["flags of 2^32 and a cas", "VALUE k 4294967296 3 7\r\nabc\r\n"],
      ["a cas of 2^64 (one past 64 bits)", "VALUE k 0 3 18446744073709551616\r\nabc\r\n"],
      ["a cas of 21 digits", "VALUE k 0 3 100000000000000000000\r\nabc\r\n"],
      ["a CONFIG header with flags of 2^32", "CONFIG cluster 4294967296 3\r\nabc\r\n"],
    ])("throws MemcacheProtocolError for a block header with %s", (_name, wire) => {
      const error = thrownBy(() => feedAll([bytes(wire)]));
      expect(error).toBeInstanceOf(MemcacheProtocolError);
      expect((error as Error).message).toMatch(/malformed reply header/);
      expect(() => feedAll(oneByteChunks(bytes(wire)))).toThrow(/malformed reply header/);
    });

    it("takes the largest flags word and CAS memcached can send (2^32 - 1, 2^64 - 1)", () => {
      const wire = bytes("VALUE k 4294967295 3 18446744073709551615\r\nabc\r\nEND\r\n");
      const expected = [
        { value: ["k", 4294967295, "abc", "18446744073709551615"] },
        { line: "END" },
      ];
      expect(feedAll([wire]).events).toEqual(expected);
      expect(feedAll(oneByteChunks(wire)).events).toEqual(expected);
    });

    it.each([
      ["CALUE", "CALUE k 0 3\r\n"],
      ["VALUX", "VALUX k 0 3\r\n"],
      ["XALUE", "XALUE k 0 3\r\n"],
    ])(
      "does not take a %s line for a VALUE header: it is a line the connection refuses",
      (_name, text) => {
        const line = text.slice(0, -2);
        expect(feedAll([bytes(text)]).events).toEqual([{ line }]);
        expect(feedAll(oneByteChunks(bytes(text))).events).toEqual([{ line }]);
      },
    );

    it("throws MemcacheProtocolError once a line without \\n outgrows maxLineBytes", () => {
      const error = thrownBy(() => feedAll([bytes("A".repeat(100))], { maxLineBytes: 64 }));
      expect(error).toBeInstanceOf(MemcacheProtocolError);
      expect((error as Error).message).toMatch(/maxLineBytes \(64\)/);
    });

    it("never buffers more than maxLineBytes of a line fed one byte at a time", () => {
      const parser = new ReplyParser(new Recorder(), { maxLineBytes: 64 });
      let fed = 0;
      let largestBuffer = 0;
      const error = thrownBy(() => {
        for (const chunk of oneByteChunks(bytes("A".repeat(100)))) {
          parser.feed(chunk);
          fed++;
          largestBuffer = Math.max(largestBuffer, parser.bufferedBytes);
        }
      });
      expect(error).toBeInstanceOf(MemcacheProtocolError);
      expect(fed).toBeLessThan(100);
      expect(largestBuffer).toBeLessThanOrEqual(64);
    });

    it("throws MemcacheProtocolError for a complete line longer than maxLineBytes", () => {
      expect(() => feedAll([bytes(`${"A".repeat(100)}\r\n`)], { maxLineBytes: 64 })).toThrow(
        MemcacheProtocolError,
      );
    });

    it("accepts lines within maxLineBytes", () => {
      const line = "S".repeat(40);
      expect(feedAll([bytes(`${line}\r\n`)], { maxLineBytes: 64 }).events).toEqual([{ line }]);
    });

    it.each([
      ["VALUE", "VALUE k 0 17\r\n"],
      ["meta VA", "VA 17 f1\r\n"],
      ["CONFIG", "CONFIG cluster 0 17\r\n"],
    ])(
      "throws MemcacheProtocolError on a %s header announcing more than maxReplyValueBytes",
      (_, wire) => {
        // Thrown on the header alone: nothing of the announced size is allocated or awaited.
        const error = thrownBy(() => feedAll([bytes(wire)], { maxReplyValueBytes: 16 }));
        expect(error).toBeInstanceOf(MemcacheProtocolError);
        expect((error as Error).message).toMatch(/17-byte value, over maxReplyValueBytes \(16\)/);
      },
    );

    it("accepts a value of exactly maxReplyValueBytes", () => {
      const data = "x".repeat(16);
      const { events } = feedAll([bytes(`VALUE k 0 16\r\n${data}\r\n`)], {
        maxReplyValueBytes: 16,
      });
      expect(events).toEqual([{ value: ["k", 0, data, undefined] }]);
    });
  });

  describe("stop()", () => {
    it("halts parsing mid-chunk when called from onLine", () => {
      const recorder = new Recorder();
      const parser = new ReplyParser(recorder);
      recorder.afterEvent = (count) => count === 2 && parser.stop();
      parser.feed(bytes("STORED\r\nEND\r\nDELETED\r\nVALUE k 0 1\r\nx\r\n"));
      expect(recorder.events).toEqual([{ line: "STORED" }, { line: "END" }]);
      expect(parser.bufferedBytes).toBe(0);
    });

    it("halts parsing when called from onValue of a block completed in a later chunk", () => {
      const recorder = new Recorder();
      const parser = new ReplyParser(recorder);
      recorder.afterEvent = () => parser.stop();
      parser.feed(bytes("VALUE a 0 3\r\nab"));
      parser.feed(bytes("c\r\nEND\r\n"));
      expect(recorder.events).toEqual([{ value: ["a", 0, "abc", undefined] }]);
    });

    it("releases a buffered partial line on stop()", () => {
      const parser = new ReplyParser(new Recorder());
      parser.feed(bytes("STORED\r\nNOT_STO"));
      expect(parser.bufferedBytes).toBe(7);
      parser.stop();
      expect(parser.bufferedBytes).toBe(0);
    });

    it("ignores chunks fed after stop()", () => {
      const recorder = new Recorder();
      const parser = new ReplyParser(recorder);
      parser.feed(bytes("STORED\r\nVALUE k 0 3\r\na"));
      parser.stop();
      expect(parser.bufferedBytes).toBe(0);
      parser.feed(bytes("bc\r\nEND\r\nOK\r\n"));
      expect(recorder.events).toEqual([{ line: "STORED" }]);
    });

    it("reports exactly the events before the stop, for a stop after each event of the transcript", () => {
      const wrong: string[] = [];
      for (let n = 1; n <= transcriptEvents.length; n++) {
        for (const [label, chunks] of [
          ["one chunk", [transcript]],
          ["byte by byte", oneByteChunks(transcript)],
        ] as const) {
          const recorder = new Recorder();
          const parser = new ReplyParser(recorder);
          recorder.afterEvent = (count) => count === n && parser.stop();
          for (const chunk of chunks) parser.feed(chunk);
          if (!isDeepStrictEqual(recorder.events, transcriptEvents.slice(0, n))) {
            wrong.push(`stop after ${n}, ${label}: got ${recorder.events.length} events`);
          }
        }
      }
      expect(wrong).toEqual([]);
    });
  });

  describe("bufferedBytes", () => {
    it("counts the bytes of an incomplete line and of an incomplete block", () => {
      const recorder = new Recorder();
      const parser = new ReplyParser(recorder);
      parser.feed(bytes("STOR"));
      expect(parser.bufferedBytes).toBe(4);
      parser.feed(bytes("ED\r\nVALUE k 0 10\r\nabc"));
      expect(parser.bufferedBytes).toBe(3);
      parser.feed(bytes("defghij\r\nEN"));
      expect(parser.bufferedBytes).toBe(2);
      parser.feed(bytes("D\r\n"));
      expect(parser.bufferedBytes).toBe(0);
      expect(recorder.events).toEqual([
        { line: "STORED" },
        { value: ["k", 0, "abcdefghij", undefined] },
        { line: "END" },
      ]);
    });

    it("returns to 0 after a complete transcript, fed whole or byte by byte", () => {
      expect(feedAll([transcript]).parser.bufferedBytes).toBe(0);
      expect(feedAll(oneByteChunks(transcript)).parser.bufferedBytes).toBe(0);
    });
  });
});

describe("encoders", () => {
  it("encodes a storage command as header, data and \\r\\n", () => {
    expect(encodeStorage("set", "k", 1, 0, Buffer.from("ab")).toString("latin1")).toBe(
      "set k 1 0 2\r\nab\r\n",
    );
  });

  it("appends the cas token to a cas command's header", () => {
    expect(encodeStorage("cas", "k", 1, 60, Buffer.from("ab"), "12345").toString("latin1")).toBe(
      "cas k 1 60 2 12345\r\nab\r\n",
    );
  });

  it("copies binary data byte for byte and counts bytes, not characters", () => {
    const data = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0xc3, 0xa9]);
    const encoded = encodeStorage("add", "bin", 0, 0, data);
    expect(encoded).toEqual(Buffer.concat([bytes("add bin 0 0 6\r\n"), data, bytes("\r\n")]));
  });

  it("encodes a meta set with its flags", () => {
    expect(encodeMetaSet("k", Buffer.from("hi"), ["T60", "F1", "I"]).toString("latin1")).toBe(
      "ms k 2 T60 F1 I\r\nhi\r\n",
    );
  });

  it("encodes a storage command for UTF-8 text as one string with the byte count", () => {
    const text = "héllo 👋";
    const bytes = Buffer.byteLength(text, "utf8");
    expect(encodeStorageText("set", "k", 1, 0, text, bytes)).toBe(
      `set k 1 0 ${bytes}\r\n${text}\r\n`,
    );
    expect(encodeStorageText("cas", "k", 16, 60, "ab", 2, "99")).toBe("cas k 16 60 2 99\r\nab\r\n");
    // Written as UTF-8, the text form is byte for byte the buffer form.
    expect(Buffer.from(encodeStorageText("add", "k", 0, 0, text, bytes), "utf8")).toEqual(
      encodeStorage("add", "k", 0, 0, Buffer.from(text, "utf8")),
    );
  });

  it("encodes a meta set for UTF-8 text as one string", () => {
    expect(encodeMetaSetText("k", "ü", 2, ["T60", "F1"])).toBe("ms k 2 T60 F1\r\nü\r\n");
    expect(encodeMetaSetText("k", "", 0, [])).toBe("ms k 0\r\n\r\n");
  });

  it("encodes a meta set without flags", () => {
    expect(encodeMetaSet("k", Buffer.alloc(0), []).toString("latin1")).toBe("ms k 0\r\n\r\n");
  });

  it("encodes a command line by joining its parts with spaces", () => {
    expect(encodeLine("delete", "k")).toBe("delete k\r\n");
    expect(encodeLine("touch", "k", 60)).toBe("touch k 60\r\n");
    expect(encodeLine("get", "a", "b", "c")).toBe("get a b c\r\n");
  });
});

describe("ttlLeft (an mg reply's t flag as a TTL to write again)", () => {
  it("reads -1 as no expiry (0), keeps the seconds left, and makes an item about to expire 1", () => {
    expect(ttlLeft("-1")).toBe(0);
    expect(ttlLeft("299")).toBe(299);
    expect(ttlLeft("0")).toBe(1);
  });

  it("is undefined without a number", () => {
    expect(ttlLeft(undefined)).toBeUndefined();
    expect(ttlLeft("x")).toBeUndefined();
  });
});

describe("toWireExptime", () => {
  const nowMs = 1_700_000_000_999;
  const thirtyDays = 60 * 60 * 24 * 30;

  it("keeps 0 (never expires)", () => {
    expect(toWireExptime(0, nowMs)).toBe(0);
  });

  it("sends a short TTL as relative seconds", () => {
    expect(toWireExptime(60, nowMs)).toBe(60);
  });

  it("sends exactly 30 days as relative seconds", () => {
    expect(toWireExptime(thirtyDays, nowMs)).toBe(2_592_000);
  });

  it("sends a TTL over 30 days as an absolute Unix time", () => {
    expect(toWireExptime(thirtyDays + 1, nowMs)).toBe(1_700_000_000 + thirtyDays + 1);
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])(
    "throws MemcacheIllegalInputError for ttlSeconds %s",
    (ttl) => {
      expect(() => toWireExptime(ttl, nowMs)).toThrow(MemcacheIllegalInputError);
    },
  );
});

describe("parseMetaFlags", () => {
  it("maps each flag letter to its token, and a bare flag to an empty string", () => {
    expect(parseMetaFlags("t59 c123 W")).toEqual({ t: "59", c: "123", W: "" });
  });

  it("returns no flags for an empty string", () => {
    expect(parseMetaFlags("")).toEqual({});
  });

  it("ignores repeated spaces between flags", () => {
    expect(parseMetaFlags("f1  t-1 ")).toEqual({ f: "1", t: "-1" });
  });
});
