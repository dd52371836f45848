// The reply parser under fuzzing, CI-sized (`npm run fuzz` runs the same at 200,000 cases):
// seeded random and mutated real transcripts never crash it, never hang it and never make it
// buffer more than its limits; valid transcripts parse the same in any chunking. Then the same
// garbage over a socket: a client that receives it rejects with MemcacheProtocolError, destroys the
// connection, and the next call works on a fresh one.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemcacheClient } from "../../../lib/memcache/client.ts";
import { MemcacheError, MemcacheProtocolError } from "../../../lib/memcache/errors.ts";
import {
  fuzzDefaults,
  garbage,
  mutate,
  Rng,
  rejectedReplies,
  runParserFuzz,
  validTranscript,
} from "../../../tools/fuzz.ts";
import { answerLines, type FakeServer, startFakeServer } from "../../helpers/fake-server.ts";

const SEED = 20_240_611;

describe("ReplyParser under fuzzing", () => {
  it("survives 5,000 random and mutated transcripts: no crash, no hang, bounded buffer", () => {
    const result = runParserFuzz(5_000, SEED);
    // The failing inputs (hex) are in the message when this fails.
    expect(result.failures, JSON.stringify(result.failures, null, 2)).toEqual([]);
    expect(result.crashes).toBe(0);
    expect(result.hangs).toBe(0);
    expect(result.bufferViolations).toBe(0);
    expect(result.maxBufferedBytes).toBeLessThanOrEqual(
      fuzzDefaults.limits.maxLineBytes + fuzzDefaults.limits.maxReplyValueBytes + 2,
    );
    // Valid transcripts round-trip, and no input parses differently when chunked.
    expect(result.roundTripMismatches).toBe(0);
    expect(result.chunkingMismatches).toBe(0);
    // The run exercised both sides: plenty of accepted and of rejected input.
    expect(result.validCases).toBeGreaterThan(1_000);
    expect(result.protocolErrors).toBeGreaterThan(1_000);
    expect(result.events).toBeGreaterThan(10_000);
  });

  it("reports progress while it runs (a long run is not silent)", () => {
    const reports: Array<[number, number]> = [];
    const result = runParserFuzz(1_000, SEED, {
      progressEveryMs: 0,
      onProgress: (done, soFar) => reports.push([done, soFar.validCases]),
    });
    expect(reports.map(([done]) => done)).toEqual([256, 512, 768]);
    // The counts so far grow with the cases done, and stay within the final ones.
    expect(reports.map(([, valid]) => valid)).toEqual(
      [...reports.map(([, v]) => v)].sort((a, b) => a - b),
    );
    expect(reports.at(-1)![1]).toBeLessThanOrEqual(result.validCases);
    expect(reports[0]![1]).toBeGreaterThan(0);
  });

  it("is deterministic for a seed", () => {
    const first = runParserFuzz(300, SEED);
    const second = runParserFuzz(300, SEED);
    expect({ ...second, durationMs: 0, slowestFeedMs: 0 }).toEqual({
      ...first,
      durationMs: 0,
      slowestFeedMs: 0,
    });
  });
});

describe("a client receiving fuzzed garbage replies", () => {
  const limits = fuzzDefaults.limits;
  let server: FakeServer;
  /** Garbage replies still to send, in order, each instead of one well-formed reply. */
  let scripted: Buffer[] = [];
  let closedByClient = 0;
  let closeSeen: (() => void) | undefined;

  /** The well-formed reply to a request line, by its verb. */
  const wellFormed = (line: string): string => {
    const verb = line.split(" ", 1)[0];
    if (verb === "get" || verb === "gets") return "VALUE k 16 2 77\r\nok\r\nEND\r\n";
    if (verb === "stats") return "STAT pid 1\r\nEND\r\n";
    if (verb === "mg") return "EN\r\n";
    if (verb === "mn") return "MN\r\n";
    if (verb === "version") return "VERSION 1.6.18\r\n";
    return "NOT_FOUND\r\n"; // delete, incr, touch
  };

  beforeAll(async () => {
    // Every request line is answered with the next scripted garbage reply, if any, else well.
    const answer = answerLines((line) => scripted.shift() ?? wellFormed(line));
    server = await startFakeServer((socket, index) => {
      socket.on("close", () => {
        closedByClient++;
        closeSeen?.();
      });
      answer(socket, index);
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  const newClient = () =>
    new MemcacheClient({
      servers: server.endpoint,
      timeoutMs: 100,
      // Garbage after garbage must not mark the node dead: every case should reach the server.
      failuresBeforeDead: Number.MAX_SAFE_INTEGER,
      maxLineBytes: limits.maxLineBytes,
      maxReplyValueBytes: limits.maxReplyValueBytes,
    });

  it("rejects get with MemcacheProtocolError, closes the socket, and the next call works", async () => {
    const garbageReplies = rejectedReplies(20, SEED, limits);
    expect(garbageReplies).toHaveLength(20);
    const client = newClient();
    try {
      for (const [i, reply] of garbageReplies.entries()) {
        scripted = [reply];
        const closed = new Promise<void>((resolve) => {
          closeSeen = resolve;
        });
        const closedBefore = closedByClient;
        const settled = await settle(client.get("k"));
        expect(
          settled.error,
          `garbage #${i}: ${reply.toString("hex").slice(0, 200)}`,
        ).toBeInstanceOf(MemcacheProtocolError);
        await closed; // the server saw the client close the connection
        expect(closedByClient).toBe(closedBefore + 1);
        expect(client.nodes[0]!.isOpen).toBe(false);
        // The next call opens a new connection and gets a well-formed reply.
        const connectionsBefore = server.connections;
        await expect(client.get("k")).resolves.toBe("ok");
        expect(server.connections).toBe(connectionsBefore + 1);
      }
    } finally {
      client.close();
    }
  });

  it("settles every command on any garbage with a MemcacheError, never anything else", async () => {
    const rng = new Rng(SEED + 1);
    const calls: ReadonlyArray<
      readonly [string, boolean, (client: MemcacheClient) => Promise<unknown>]
    > = [
      // [name, whether the connection layer checks the whole reply, call]
      ["get", true, (c) => c.get("k")],
      ["gets", true, (c) => c.gets("k")],
      ["stats", true, (c) => c.stats()],
      ["mg", false, (c) => c.metaGet("k")],
      ["mn", false, (c) => c.metaNoop()],
      ["version", false, (c) => c.version()],
      ["delete", false, (c) => c.delete("k")],
      ["incr", false, (c) => c.incr("k", 1)],
    ];
    const outcomes: Record<string, number> = {};
    const client = newClient();
    try {
      for (let i = 0; i < 150; i++) {
        const [name, checkedWhole, call] = rng.pick(calls);
        const reply = rng.chance(0.6)
          ? mutate(rng, validTranscript(rng, limits).bytes, limits)
          : garbage(rng, limits);
        scripted = [reply];
        const label = `#${i} ${name} <- ${reply.toString("hex").slice(0, 200)}`;
        const settled = await settle(call(client));
        const outcome = settled.error === undefined ? "resolved" : settled.error.name;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (settled.error !== undefined) {
          expect(settled.error, label).toBeInstanceOf(MemcacheError);
        }
        if (checkedWhole && settled.error instanceof MemcacheProtocolError) {
          expect(client.nodes[0]!.isOpen, label).toBe(false);
        }
        // Start the next case on a fresh connection: leftover garbage must not answer it.
        client.close();
        scripted = [];
      }
      await expect(client.get("k")).resolves.toBe("ok");
      console.info("outcomes of 150 garbage replies:", JSON.stringify(outcomes));
      // Both sides were exercised, and no call was refused without reaching the server.
      expect(outcomes.MemcacheProtocolError).toBeGreaterThan(10);
      expect(outcomes.resolved).toBeGreaterThan(10);
      expect(outcomes.MemcacheNodeDeadError).toBeUndefined();
    } finally {
      client.close();
    }
  });

  it("closes the connection when a line reply is not one the command can get", async () => {
    const client = newClient();
    try {
      for (const call of [
        () => client.delete("k"),
        () => client.version(),
        () => client.incr("k"),
      ]) {
        scripted = [Buffer.from("HELLO\r\n")];
        const settled = await settle(call());
        expect(settled.error).toBeInstanceOf(MemcacheProtocolError);
        expect(client.nodes[0]!.isOpen).toBe(false);
      }
    } finally {
      client.close();
    }
  });
});

/** How a promise settled: its value, or the error it rejected with. */
async function settle(promise: Promise<unknown>): Promise<{ value?: unknown; error?: Error }> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error: error as Error };
  }
}
