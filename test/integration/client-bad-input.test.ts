// Hostile keys, oversized values and bad options against a real memcached: each is refused
// with MemcacheIllegalInputError before a byte is written (the server's counters do not move and the
// key an injection targets survives), safeKey() makes the same text usable, and a value the
// server refuses leaves the connection in step.

import { describe, expect } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { MemcacheIllegalInputError, MemcacheServerError } from "../../lib/memcache/errors.ts";
import { safeKey } from "../../lib/memcache/keys.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

const hostileKeys: ReadonlyArray<readonly [string, string]> = [
  ["a space", "a b"],
  ["CRLF", "a\r\nb"],
  ["NUL", "a\u0000b"],
  ["251 characters", "k".repeat(251)],
  ["Cyrillic", "ключ"],
  ["a command injection", "a\r\ndelete victim"],
  ["the empty string", ""],
];

/** Every keyed call the client offers, applied to one key. */
const keyedCalls: ReadonlyArray<
  readonly [string, (c: MemcacheClient, k: string) => Promise<unknown>]
> = [
  ["get", (c, k) => c.get(k)],
  ["set", (c, k) => c.set(k, "x")],
  ["delete", (c, k) => c.delete(k)],
  ["getMany", (c, k) => c.getMany(["fine", k])],
  ["incr", (c, k) => c.incr(k, 1)],
  ["touch", (c, k) => c.touch(k, 10)],
  ["metaGet", (c, k) => c.metaGet(k)],
  ["gets", (c, k) => c.gets(k)],
  ["add", (c, k) => c.add(k, "x")],
  ["cas", (c, k) => c.cas(k, "x", "1")],
  ["decr", (c, k) => c.decr(k, 1)],
  ["gat", (c, k) => c.gat(k, 10)],
  ["metaSet", (c, k) => c.metaSet(k, "x")],
  ["metaDelete", (c, k) => c.metaDelete(k)],
  ["metaArithmetic", (c, k) => c.metaArithmetic(k, ["N0"])],
];

const watchedCounters = [
  "cmd_get",
  "cmd_set",
  "cmd_touch",
  "delete_hits",
  "delete_misses",
  "incr_hits",
  "incr_misses",
  "decr_hits",
  "decr_misses",
  "total_connections",
] as const;

function cyclic(): object {
  const value: { self?: unknown } = {};
  value.self = value;
  return value;
}

// Tests take the file's client as `observer` (it observes the server and is never given bad
// input) and `extraClient` as `newClient`: each test's own client, the one that gets bad input.

describe("hostile keys", () => {
  it("refuses every hostile key in every keyed call before anything is sent", async ({
    client: observer,
    extraClient: newClient,
  }) => {
    await observer.set("victim", "alive");
    await observer.set("fine", "ok");
    const before = await counters(observer, watchedCounters);
    const client = newClient();

    for (const [keyName, hostile] of hostileKeys) {
      for (const [callName, call] of keyedCalls) {
        const attempt = call(client, hostile);
        expect(client.nodes[0]!.inFlight, `${callName} with ${keyName}`).toBe(0);
        await expect(attempt, `${callName} with ${keyName}`).rejects.toBeInstanceOf(
          MemcacheIllegalInputError,
        );
      }
    }

    expect(client.nodes[0]!.isOpen).toBe(false); // not even a socket was opened
    expect(await counters(observer, watchedCounters)).toEqual(before);
    expect(await observer.get("victim")).toBe("alive");
  });

  it("names the offending character and points to safeKey()", async ({
    extraClient: newClient,
  }) => {
    const client = newClient();
    await expect(client.get("a\r\ndelete victim")).rejects.toThrow(
      /control character 0x0d at index 1.*safeKey/,
    );
    await expect(client.get("k".repeat(251))).rejects.toThrow(/1\.\.250 bytes.*safeKey/);
  });

  it("accepts a key of exactly 250 printable characters", async ({ extraClient: newClient }) => {
    const client = newClient();
    const longest = "k".repeat(250);
    expect(await client.set(longest, "edge")).toBe(true);
    expect(await client.get(longest)).toBe("edge");
  });

  it("stores and reads every hostile text through safeKey() without touching other keys", async ({
    client: observer,
    extraClient: newClient,
  }) => {
    await observer.set("victim", "alive");
    const client = newClient();
    const safe = hostileKeys.map(([, hostile]) => safeKey(hostile, "user:"));
    expect(new Set(safe).size).toBe(hostileKeys.length);

    for (const [i, k] of safe.entries()) {
      expect(await client.set(k, `value ${i}`)).toBe(true);
    }
    for (const [i, k] of safe.entries()) {
      expect(await client.get(k)).toBe(`value ${i}`);
    }
    expect(await client.getMany(safe)).toEqual(new Map(safe.map((k, i) => [k, `value ${i}`])));
    expect(await observer.get("victim")).toBe("alive");
    expect(await observer.get("a")).toBeUndefined();
  });
});

describe("oversized values", () => {
  it("refuses a 2 MiB value before sending it", async ({
    client: observer,
    extraClient: newClient,
  }) => {
    const client = newClient();
    const before = await counters(observer, ["cmd_set"]);
    await expect(client.set("too-big", Buffer.alloc(2 * 1024 * 1024))).rejects.toThrow(
      MemcacheIllegalInputError,
    );
    await expect(client.metaSet("too-big", Buffer.alloc(2 * 1024 * 1024))).rejects.toThrow(
      MemcacheIllegalInputError,
    );
    // A string is measured in UTF-8 bytes: 600 Ki characters of 2 bytes each are over 1 MiB.
    await expect(client.set("too-big", "é".repeat(600 * 1024))).rejects.toThrow(/1228800 bytes/);
    await expect(client.metaSet("too-big", "é".repeat(600 * 1024))).rejects.toThrow(
      MemcacheIllegalInputError,
    );
    expect(client.nodes[0]!.isOpen).toBe(false);
    expect((await counters(observer, ["cmd_set"])).cmd_set).toBe(before.cmd_set);
    expect(await observer.get("too-big")).toBeUndefined();
  });

  it("surfaces the server's too-large refusal and keeps the same connection in step", async ({
    extraClient: newClient,
  }) => {
    const client = newClient({ maxValueBytes: 4 * 1024 * 1024 });
    await client.set("small", "before");
    const node = client.nodes[0]!;
    const before = await counters(client, ["total_connections"]);

    const refused = client.set("large", Buffer.alloc(1024 * 1024 + 1, 0x61));
    await expect(refused).rejects.toBeInstanceOf(MemcacheServerError);
    await expect(refused).rejects.toThrow(/too large/);

    expect(node.isOpen).toBe(true);
    expect(await client.get("small")).toBe("before");
    expect(await client.get("large")).toBeUndefined();
    expect((await counters(client, ["total_connections"])).total_connections).toBe(
      before.total_connections,
    );
  });
  it("keeps requests pipelined behind a refused value in step", async ({
    extraClient: newClient,
  }) => {
    const client = newClient({ maxValueBytes: 4 * 1024 * 1024 });
    await client.set("small", "before");
    const [refused, read, stored] = await Promise.allSettled([
      client.set("large", Buffer.alloc(3 * 1024 * 1024, 0x62)),
      client.get("small"),
      client.set("after", "after"),
    ]);
    expect(refused!.status === "rejected" && refused!.reason).toBeInstanceOf(MemcacheServerError);
    expect(read).toEqual({ status: "fulfilled", value: "before" });
    expect(stored).toEqual({ status: "fulfilled", value: true });
    expect(await client.get("after")).toBe("after");
  });
});

describe("bad options", () => {
  it.for([
    ["ttlSeconds -1", (c: MemcacheClient) => c.set("opt", "x", { ttlSeconds: -1 })],
    ["ttlSeconds 1.5", (c: MemcacheClient) => c.set("opt", "x", { ttlSeconds: 1.5 })],
    ["ttlSeconds NaN", (c: MemcacheClient) => c.set("opt", "x", { ttlSeconds: Number.NaN })],
    ["flags -1", (c: MemcacheClient) => c.set("opt", "x", { flags: -1 })],
    ["flags 2^32", (c: MemcacheClient) => c.set("opt", "x", { flags: 2 ** 32 })],
    ["incr delta -1", (c: MemcacheClient) => c.incr("opt", -1)],
    ["incr delta 1.5", (c: MemcacheClient) => c.incr("opt", 1.5)],
    ["decr delta -1n", (c: MemcacheClient) => c.decr("opt", -1n)],
    ['cas token "abc"', (c: MemcacheClient) => c.cas("opt", "x", "abc")],
    ["touch ttlSeconds -5", (c: MemcacheClient) => c.touch("opt", -5)],
    ["gat ttlSeconds 0.5", (c: MemcacheClient) => c.gat("opt", 0.5)],
    ["an undefined value", (c: MemcacheClient) => c.set("opt", undefined)],
    ["a value with a cycle", (c: MemcacheClient) => c.set("opt", cyclic())],
    ["an object holding a bigint", (c: MemcacheClient) => c.set("opt", { n: 1n })],
    ['stats group "items\\r\\n"', (c: MemcacheClient) => c.stats("items\r\nflush_all")],
    ['stats group "reset" (not a STAT listing)', (c: MemcacheClient) => c.stats("reset")],
    ['stats group "detail"', (c: MemcacheClient) => c.stats("detail")],
    ["a cas token over 2^64-1", (c: MemcacheClient) => c.cas("opt", "x", "18446744073709551616")],
  ] as const)(
    "refuses %s with MemcacheIllegalInputError without sending",
    async ([_name, call], { extraClient: newClient }) => {
      const client = newClient();
      await expect(call(client)).rejects.toBeInstanceOf(MemcacheIllegalInputError);
      expect(client.nodes[0]!.isOpen).toBe(false);
    },
  );

  it.for([
    ["-1", -1],
    ["1.5", 1.5],
    ["NaN", Number.NaN],
  ] as const)(
    "refuses flushAll with delaySeconds %s and flushes nothing",
    async ([_name, delaySeconds], { client: observer, extraClient: newClient }) => {
      await observer.set("survivor", "kept");
      const client = newClient();
      await expect(client.flushAll(delaySeconds)).rejects.toBeInstanceOf(MemcacheIllegalInputError);
      expect(client.nodes[0]!.isOpen).toBe(false);
      expect(await observer.get("survivor")).toBe("kept");
    },
  );

  it.each(["not a host:port:x", "127.0.0.1:0", "127.0.0.1:65536", "", "a,,b"])(
    "refuses the server address %j with a TypeError naming the servers option",
    (servers) => {
      expect(() => new MemcacheClient({ servers })).toThrow(
        /^lambda-memcache: MemcacheClient option "servers" has .* is not host:port/,
      );
      expect(() => new MemcacheClient({ servers })).toThrow(TypeError);
    },
  );
});

describe("corrupt entries", () => {
  it("gets an undecodable value as undefined with a CAS token that lets cas() repair it", async ({
    client: observer,
    extraClient: newClient,
  }) => {
    await observer.set("corrupt", Buffer.from("{not json"), { flags: 32 });
    const client = newClient();
    expect(await client.get("corrupt")).toBeUndefined();
    const item = await client.gets("corrupt");
    expect(item).toBeDefined();
    expect(item!.value).toBeUndefined();
    expect(await client.cas("corrupt", { repaired: true }, item!.cas)).toBe("stored");
    expect(await client.get("corrupt")).toEqual({ repaired: true });
  });
});
