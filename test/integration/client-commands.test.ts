// Every MemcacheClient command against a real memcached: results of each reply, TTLs (expiry
// and the 30-day absolute-time switch), values of every size and kind byte for byte, and
// values that cannot be decoded read as misses.

import { randomBytes } from "node:crypto";
import { describe, expect, vi } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheClientError,
  MemcacheIllegalInputError,
  MemcacheUnknownCommandError,
} from "../../lib/memcache/errors.ts";
import { startRecordingRelay } from "../../tools/recording-relay.ts";
import { counters, nodeStats } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

let keyCount = 0;

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `commands:${keyCount}:${name}`;
}

/** Remaining TTL in seconds as the server reports it (-1: never expires). */
async function serverTtl(client: MemcacheClient, k: string): Promise<number> {
  const reply = await client.metaGet(k, ["t"]);
  expect(reply.code).toBe("HD");
  return Number(reply.flags.t);
}

describe("get and set", () => {
  it("misses before a set and hits after it", async ({ client }) => {
    const k = key("get");
    expect(await client.get(k)).toBeUndefined();
    expect(await client.set(k, "value")).toBe(true);
    expect(await client.get(k)).toBe("value");
  });

  it("overwrites a value with set", async ({ client }) => {
    const k = key("overwrite");
    await client.set(k, "first");
    await client.set(k, "second");
    expect(await client.get(k)).toBe("second");
  });

  it("reads replies spread over many socket reads, and keeps values handed out intact", async ({
    client,
  }) => {
    // Replies are read into one reused buffer per socket: what the parser keeps across reads
    // (values of a reply not yet complete) and what it hands out (a meta value) must be copies.
    const keys = Array.from({ length: 100 }, (_, i) => key(`read:${i}`));
    const values = keys.map((_, i) => Buffer.alloc(2_000, i));
    await Promise.all(keys.map((k, i) => client.set(k, values[i]!)));
    const many = await client.getMany<Buffer>(keys); // about 200 KB in one reply
    expect(keys.map((k) => many.get(k))).toEqual(values);
    const meta = await client.metaGet(keys[7]!, ["v"]);
    await client.getMany(keys);
    expect(meta.value).toEqual(values[7]);
  });
});

describe("getMany", () => {
  it("returns the hits of one call and leaves the misses out", async ({ client }) => {
    const [a, b, missing] = [key("a"), key("b"), key("missing")];
    await client.set(a, "A");
    await client.set(b, { b: true });
    const found = await client.getMany([a, missing, b]);
    expect(found).toEqual(
      new Map<string, unknown>([
        [a, "A"],
        [b, { b: true }],
      ]),
    );
  });

  it("asks the server once per distinct key when keys repeat", async ({ client }) => {
    const [a, missing] = [key("dup"), key("dup-missing")];
    await client.set(a, "A");
    const before = await counters(client, ["cmd_get"]);
    const found = await client.getMany([a, a, missing, a, missing]);
    const after = await counters(client, ["cmd_get"]);
    expect(found).toEqual(new Map([[a, "A"]]));
    expect(after.cmd_get - before.cmd_get).toBe(2);
  });

  it("returns an empty map for no keys without asking the server", async ({ client }) => {
    const before = await counters(client, ["cmd_get"]);
    expect(await client.getMany([])).toEqual(new Map());
    expect((await counters(client, ["cmd_get"])).cmd_get).toBe(before.cmd_get);
  });

  it("splits 300 keys of 200 characters over several request lines and gets every one", async ({
    client,
  }) => {
    const prefix = key("long");
    const keys = Array.from({ length: 300 }, (_, i) =>
      `${prefix}:${i}:`.padEnd(200, "x").slice(0, 200),
    );
    expect(new Set(keys).size).toBe(300);
    expect(keys.every((k) => k.length === 200)).toBe(true);
    // Every other key stored: hits and misses interleave across the line splits.
    await Promise.all(keys.map((k, i) => (i % 2 === 0 ? client.set(k, i) : undefined)));

    const before = await counters(client, ["cmd_get", "get_hits", "get_misses"]);
    const found = await client.getMany(keys);
    const after = await counters(client, ["cmd_get", "get_hits", "get_misses"]);

    expect(found.size).toBe(150);
    keys.forEach((k, i) => {
      expect(found.get(k)).toBe(i % 2 === 0 ? i : undefined);
    });
    expect(after.cmd_get - before.cmd_get).toBe(300);
    expect(after.get_hits - before.get_hits).toBe(150);
    expect(after.get_misses - before.get_misses).toBe(150);
  });
});

describe("gets and cas", () => {
  it("stores with the token from gets", async ({ client }) => {
    const k = key("cas");
    await client.set(k, 1);
    const item = await client.gets<number>(k);
    expect(item).toMatchObject({ value: 1, flags: 2 });
    expect(item!.cas).toMatch(/^[0-9]+$/);
    expect(await client.cas(k, 2, item!.cas)).toBe("stored");
    expect(await client.get(k)).toBe(2);
  });

  it("answers exists when someone set the key after gets", async ({ client }) => {
    const k = key("cas-exists");
    await client.set(k, "mine");
    const item = await client.gets(k);
    await client.set(k, "theirs");
    expect(await client.cas(k, "late", item!.cas)).toBe("exists");
    expect(await client.get(k)).toBe("theirs");
  });

  it("answers not_found when the key was deleted after gets", async ({ client }) => {
    const k = key("cas-gone");
    await client.set(k, "x");
    const item = await client.gets(k);
    await client.delete(k);
    expect(await client.cas(k, "y", item!.cas)).toBe("not_found");
    expect(await client.get(k)).toBeUndefined();
  });

  it("returns undefined from gets on a miss", async ({ client }) => {
    expect(await client.gets(key("gets-miss"))).toBeUndefined();
  });
});

describe("add and replace", () => {
  it("adds only when the key is absent", async ({ client }) => {
    const k = key("add");
    expect(await client.add(k, "first")).toBe(true);
    expect(await client.add(k, "second")).toBe(false);
    expect(await client.get(k)).toBe("first");
  });

  it("replaces only when the key exists", async ({ client }) => {
    const k = key("replace");
    expect(await client.replace(k, "nothing")).toBe(false);
    expect(await client.get(k)).toBeUndefined();
    await client.set(k, "old");
    expect(await client.replace(k, "new")).toBe(true);
    expect(await client.get(k)).toBe("new");
  });
});

describe("append and prepend", () => {
  it("adds raw bytes around a string value and keeps it a string", async ({ client }) => {
    const k = key("pend");
    await client.set(k, "middle");
    expect(await client.append(k, "-end")).toBe(true);
    expect(await client.prepend(k, Buffer.from("start-"))).toBe(true);
    expect(await client.get(k)).toBe("start-middle-end");
  });

  it("returns false when the key is absent and stores nothing", async ({ client }) => {
    const k = key("pend-missing");
    expect(await client.append(k, "x")).toBe(false);
    expect(await client.prepend(k, "x")).toBe(false);
    expect(await client.get(k)).toBeUndefined();
  });
});

describe("delete", () => {
  it("returns true when the key existed and false after that", async ({ client }) => {
    const k = key("delete");
    await client.set(k, "x");
    expect(await client.delete(k)).toBe(true);
    expect(await client.delete(k)).toBe(false);
    expect(await client.get(k)).toBeUndefined();
  });
});

describe("incr and decr", () => {
  it("returns undefined for a missing key and creates nothing", async ({ client }) => {
    const k = key("incr-missing");
    expect(await client.incr(k, 1)).toBeUndefined();
    expect(await client.decr(k, 1)).toBeUndefined();
    expect(await client.get(k)).toBeUndefined();
  });

  it("adds to a counter seeded by set and reads back as a number", async ({ client }) => {
    const k = key("incr");
    await client.set(k, 5);
    expect(await client.incr(k, 10)).toBe(15);
    expect(await client.incr(k)).toBe(16);
    expect(await client.get(k)).toBe(16);
  });

  it("stops at 0 when decr goes below it", async ({ client }) => {
    const k = key("decr");
    await client.set(k, 3);
    expect(await client.decr(k, 10)).toBe(0);
    expect(await client.get(k)).toBe(0);
  });

  it("reads back as a number after decr shrinks the digits", async ({ client }) => {
    const k = key("decr-digits");
    await client.set(k, 100);
    expect(await client.decr(k, 1)).toBe(99);
    expect(await client.get(k)).toBe(99);
    expect(await client.decr(k, 95)).toBe(4);
    expect(await client.get(k)).toBe(4);
  });

  it("rejects incr on a non-numeric value with MemcacheClientError and works on the next call", async ({
    client,
  }) => {
    const k = key("incr-text");
    await client.set(k, "abc");
    await expect(client.incr(k, 1)).rejects.toBeInstanceOf(MemcacheClientError);
    expect(await client.get(k)).toBe("abc");
  });

  it("keeps the connection and the commands pipelined behind an incr refused on a non-numeric value", async ({
    client,
  }) => {
    const k = key("incr-text-pipelined");
    const other = key("behind-the-refused-incr");
    await client.set(k, "abc");
    await client.set(other, "still here");
    const [refused, behind] = await Promise.allSettled([client.incr(k, 1), client.get(other)]);
    expect(refused.status === "rejected" && refused.reason).toBeInstanceOf(MemcacheClientError);
    expect(behind).toEqual({ status: "fulfilled", value: "still here" });
  });

  it("returns a bigint past 2^53 and wraps at 2^64", async ({ client }) => {
    const k = key("incr-big");
    await client.set(k, 2n ** 64n - 2n);
    expect(await client.incr(k, 1)).toBe(2n ** 64n - 1n);
    expect(await client.get(k)).toBe(2n ** 64n - 1n);
    expect(await client.incr(k, 1)).toBe(0);
  });
});

describe("touch, gat and gats", () => {
  it("touch sets a new TTL and returns false for a missing key", async ({ client }) => {
    const k = key("touch");
    await client.set(k, "x");
    expect(await serverTtl(client, k)).toBe(-1);
    expect(await client.touch(k, 500)).toBe(true);
    expect(await serverTtl(client, k)).toBeGreaterThan(490);
    expect(await client.touch(key("touch-missing"), 500)).toBe(false);
  });

  it("gat returns the value and resets its TTL", async ({ client }) => {
    const k = key("gat");
    await client.set(k, "x", { ttlSeconds: 100 });
    expect(await client.gat(k, 1000)).toBe("x");
    const ttl = await serverTtl(client, k);
    expect(ttl).toBeGreaterThan(990);
    expect(ttl).toBeLessThanOrEqual(1000);
    expect(await client.gat(key("gat-missing"), 1000)).toBeUndefined();
  });

  it("gats returns the value with its CAS token and resets its TTL", async ({ client }) => {
    const k = key("gats");
    await client.set(k, "x", { ttlSeconds: 100 });
    const item = await client.gats(k, 2000);
    expect(item).toMatchObject({ value: "x", flags: 16 });
    expect(await serverTtl(client, k)).toBeGreaterThan(1990);
    expect(await client.cas(k, "y", item!.cas)).toBe("stored");
  });
});

describe("TTL", () => {
  it("expires a value once the server's clock passes its TTL", async ({ client }) => {
    const k = key("ttl");
    await client.set(k, "short-lived", { ttlSeconds: 1 });
    expect(await client.get(k)).toBe("short-lived");
    await vi.waitFor(
      async () => {
        expect(await client.get(k)).toBeUndefined();
      },
      { timeout: 3_000, interval: 50 },
    );
  });

  it("stores a TTL over 30 days as an absolute time, so the value does not expire at once", async ({
    client,
  }) => {
    const k = key("ttl-long");
    const ttlSeconds = 31 * 24 * 60 * 60;
    expect(await client.set(k, "long-lived", { ttlSeconds })).toBe(true);
    expect(await client.get(k)).toBe("long-lived");
    const ttl = await serverTtl(client, k);
    expect(ttl).toBeGreaterThan(ttlSeconds - 5);
    // memcached's clock ticks once a second and may trail the wall clock by a tick or two.
    expect(ttl).toBeLessThanOrEqual(ttlSeconds + 2);
  });

  it("touches with a TTL over 30 days without expiring the value", async ({ client }) => {
    const k = key("touch-long");
    await client.set(k, "x");
    expect(await client.touch(k, 40 * 24 * 60 * 60)).toBe(true);
    expect(await client.get(k)).toBe("x");
  });
});

describe("values", () => {
  it.for([
    ["an empty string", ""],
    ["an empty Buffer", Buffer.alloc(0)],
    ["a 1-byte Buffer", Buffer.from([0xff])],
    ["a 1-character string", "z"],
    ["unicode text with emoji and CJK", "héllo 👋🏽 世界 ключ \u0000 end"],
    ["a string that starts with a byte-order mark", "\uFEFFbom"],
    [
      "a Buffer with CRLF, NUL and an END line inside",
      Buffer.from("a\r\nb\u0000c\r\nEND\r\nd\r\n"),
    ],
    ["a JSON object", { id: 7, name: "ü", tags: ["a", "b"], nested: { ok: true, n: null } }],
    ["a JSON array", [1, "two", { three: 3 }]],
    ["a non-integer number", 1.5],
    ["a negative integer", -42],
    ["bigint 2^63", 2n ** 63n],
    ["true", true],
  ])("round-trips %s", async ([_name, value], { client }) => {
    const k = key("value");
    expect(await client.set(k, value)).toBe(true);
    expect(await client.get(k)).toEqual(value);
  });

  it("stores a string as its UTF-8 bytes with set, add, cas and metaSet alike", async ({
    client,
  }) => {
    const text = "héllo 👋🏽 世界 \u0000 \uFEFF end";
    const utf8 = Buffer.from(text, "utf8");
    const k = key("utf8");
    const stored: Buffer[] = [];
    const raw = async () => (await client.metaGet(k, ["v"])).value!;
    await client.set(k, text);
    stored.push(await raw());
    await client.delete(k);
    await client.add(k, text);
    stored.push(await raw());
    await client.cas(k, text, (await client.gets(k))!.cas);
    stored.push(await raw());
    await client.metaSet(k, text);
    stored.push(await raw());
    expect(stored).toEqual([utf8, utf8, utf8, utf8]);
    expect(await client.get(k)).toBe(text);
  });

  it("round-trips a 500 KiB random Buffer byte for byte", async ({ client }) => {
    const k = key("big");
    const value = randomBytes(500 * 1024);
    await client.set(k, value);
    const back = await client.get<Buffer>(k);
    expect(Buffer.isBuffer(back)).toBe(true);
    expect(back!.length).toBe(value.length);
    expect(back!.equals(value)).toBe(true);
  });

  it("returns bigint 2^63 as a bigint, not a rounded number", async ({ client }) => {
    const k = key("bigint");
    await client.set(k, 2n ** 63n);
    expect(await client.get(k)).toBe(9223372036854775808n);
  });
});

describe("values that cannot be decoded", () => {
  it("returns a miss for JSON flags over bytes that are not JSON", async ({ client }) => {
    const k = key("bad-json");
    expect(await client.set(k, Buffer.from("{not json"), { flags: 32 })).toBe(true);
    expect(await client.get(k)).toBeUndefined();
  });

  it("returns a miss for flags no serde format uses", async ({ client }) => {
    const k = key("bad-flags");
    await client.set(k, Buffer.from("whatever"), { flags: 77 });
    expect(await client.get(k)).toBeUndefined();
  });

  it("returns a miss for string flags over invalid UTF-8", async ({ client }) => {
    const k = key("bad-utf8");
    await client.set(k, Buffer.from([0x61, 0xc3, 0x28, 0xff]), { flags: 16 });
    expect(await client.get(k)).toBeUndefined();
  });

  it("leaves an undecodable value out of getMany and keeps the good ones", async ({ client }) => {
    const [bad, good] = [key("bad-many"), key("good-many")];
    await client.set(bad, Buffer.from("{"), { flags: 32 });
    await client.set(good, "fine");
    expect(await client.getMany([bad, good])).toEqual(new Map([[good, "fine"]]));
  });
});

describe("server commands", () => {
  it("flushAll invalidates every item", async ({ client }) => {
    const [a, b] = [key("flush-a"), key("flush-b")];
    await client.set(a, 1);
    await client.set(b, 2);
    await client.flushAll();
    expect(await client.getMany([a, b])).toEqual(new Map());
  });

  it("flushAll sends a delay over 30 days as the absolute Unix time memcached expects, and flushes nothing now", async ({
    spawnMemcached,
    openClient,
  }) => {
    // memcached reads a flush_all delay over 30 days as a Unix time: sent raw, 31 days would
    // be a moment in 1970 and no flush would ever happen. What goes on the wire is the check.
    const own = await spawnMemcached(); // a delayed flush must not reach the file's memcached
    const relay = await startRecordingRelay(own);
    try {
      const c = openClient(relay.endpoint);
      const k = key("flush-later");
      await c.set(k, "kept");
      const delaySeconds = 31 * 24 * 3600;
      const expected = Math.floor(Date.now() / 1000) + delaySeconds;

      await c.flushAll(delaySeconds);

      const sent = Buffer.concat(relay.streams()).toString("latin1");
      const [, at] = /flush_all (\d+)\r\n/.exec(sent) ?? [];
      expect(Number(at)).toBeGreaterThanOrEqual(expected);
      expect(Number(at)).toBeLessThanOrEqual(expected + 2);
      expect(await c.get(k)).toBe("kept");
    } finally {
      await relay.close();
    }
  });

  it("flushAll sends a delay of up to 30 days as seconds from now", async ({
    spawnMemcached,
    openClient,
  }) => {
    const own = await spawnMemcached();
    const relay = await startRecordingRelay(own);
    try {
      await openClient(relay.endpoint).flushAll(30 * 24 * 3600);
      expect(Buffer.concat(relay.streams()).toString("latin1")).toContain(
        `flush_all ${30 * 24 * 3600}\r\n`,
      );
    } finally {
      await relay.close();
    }
  });

  it("version reports memcached 1.6 for the node", async ({ memcached, client }) => {
    const versions = await client.version();
    expect(Object.keys(versions)).toEqual([memcached.endpoint]);
    expect(versions[memcached.endpoint]).toMatch(/^1\.6\./);
  });

  it("stats reports the server's counters", async ({ memcached, client }) => {
    const stats = await nodeStats(client);
    expect(stats.curr_items).toMatch(/^[0-9]+$/);
    expect(stats.pid).toBe(String(memcached.pid));
  });

  it('stats("settings") reports item_size_max', async ({ client }) => {
    const settings = await nodeStats(client, "settings");
    expect(settings.item_size_max).toBe(String(1024 * 1024));
  });
});

describe("meta protocol", () => {
  it("detects meta support on memcached 1.6.18", async ({ client }) => {
    expect(await client.hasMeta()).toBe(true);
  });

  it("metaSet stores a value that metaGet returns with flags, TTL and CAS", async ({ client }) => {
    const k = key("meta");
    const value = { meta: ["ok", 1] };
    expect((await client.metaSet(k, value, ["T60"])).code).toBe("HD");
    const reply = await client.metaGet(k, ["v", "f", "t", "c"]);
    expect(reply.code).toBe("VA");
    expect(reply.flags.f).toBe("32");
    expect(Number(reply.flags.t)).toBeGreaterThan(55);
    expect(Number(reply.flags.t)).toBeLessThanOrEqual(60);
    expect(reply.flags.c).toMatch(/^[0-9]+$/);
    expect(client.decodeMeta(reply)).toEqual(value);
    expect(await client.get(k)).toEqual(value);
  });

  it("metaGet answers EN on a miss", async ({ client }) => {
    const reply = await client.metaGet(key("meta-miss"), ["v", "f"]);
    expect(reply.code).toBe("EN");
    expect(client.decodeMeta(reply)).toBeUndefined();
  });

  it("metaDelete answers HD, then NF once the key is gone", async ({ client }) => {
    const k = key("meta-delete");
    await client.set(k, "x");
    expect((await client.metaDelete(k)).code).toBe("HD");
    expect((await client.metaDelete(k)).code).toBe("NF");
    expect(await client.get(k)).toBeUndefined();
  });

  it("metaArithmetic with N0 J10 creates a missing counter at 10", async ({ client }) => {
    const k = key("meta-counter");
    const reply = await client.metaArithmetic(k, ["N0", "J10", "v"]);
    expect(reply.code).toBe("VA");
    expect(reply.value?.toString("latin1")).toBe("10");
    const next = await client.metaArithmetic(k, ["D5", "v"]);
    expect(next.value?.toString("latin1")).toBe("15");
  });

  it("metaNoop answers MN", async ({ client }) => {
    expect((await client.metaNoop()).code).toBe("MN");
  });

  it("refuses the q flag with MemcacheIllegalInputError and sends nothing", async ({
    memcached,
  }) => {
    const fresh = new MemcacheClient({ servers: memcached.endpoint, timeoutMs: 1000 });
    try {
      await expect(fresh.metaGet(key("meta-q"), ["v", "q"])).rejects.toBeInstanceOf(
        MemcacheIllegalInputError,
      );
      await expect(fresh.metaDelete(key("meta-q"), ["q"])).rejects.toBeInstanceOf(
        MemcacheIllegalInputError,
      );
      expect(fresh.nodes[0]!.isOpen).toBe(false);
    } finally {
      fresh.close();
    }
  });
});

describe("configGet on plain memcached", () => {
  it("rejects with MemcacheUnknownCommandError and keeps the connection usable", async ({
    client,
  }) => {
    const k = key("after-config");
    await client.set(k, "still here");
    const before = await counters(client, ["total_connections"]);
    await expect(client.configGet()).rejects.toBeInstanceOf(MemcacheUnknownCommandError);
    expect(await client.get(k)).toBe("still here");
    expect(client.nodes[0]!.isOpen).toBe(true);
    expect((await counters(client, ["total_connections"])).total_connections).toBe(
      before.total_connections,
    );
  });
});
