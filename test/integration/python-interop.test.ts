// Sharing a cache with Python services, against the real clients (Debian's pymemcache 3.5.2 and
// pylibmc 1.6.3 under /usr/bin/python3, see test/fixtures/python/agent.py) and a real memcached:
// every value type in both directions, nothing we write ever unpickled there, pickles never
// decoded here (a miss, reported), counters shared by the counter rule.

import { afterAll, describe, expect } from "vitest";
import { casIncrement, increment, readCounter } from "../../lib/cache/counters.ts";
import { MemcacheClient, type UndecodableValue } from "../../lib/memcache/client.ts";
import { FLAG_INTERNAL } from "../../lib/memcache/serde.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";
import { type PyResult, type PythonAgent, type PythonClient, py } from "../helpers/python.ts";

let client: MemcacheClient;
let python: PythonAgent;
let servers: string[];
const reported: UndecodableValue[] = [];
let keyCount = 0;

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `py:${keyCount}:${name}`;
}

// memcached and the Python agent come from the fixtures; the client here reports what it cannot
// decode.
it.beforeAll(({ memcached, python: agent }) => {
  python = agent;
  servers = [memcached.endpoint];
  client = new MemcacheClient({
    servers: memcached.endpoint,
    timeoutMs: patientTimeoutMs,
    onUndecodable: (value) => reported.push(value),
  });
});

afterAll(() => {
  client?.close();
});

const readers: PythonClient[] = ["pymemcache", "pymemcache-serde", "pylibmc"];

const bytesOf = (text: string | Buffer) => py.bytes(text);

/**
 * A pickle that calls builtins.len("abc") when loaded: a reader that unpickles it gets 3, one
 * that reads it as text gets the text. A user could type exactly this into a form.
 */
const PICKLE_TEXT = "cbuiltins\nlen\n(S'abc'\ntR.";

describe("values Node writes, read by Python", () => {
  // [what, value, pymemcache (no serde), pymemcache with pickle_serde, pylibmc]
  const cases: Array<[string, unknown, PyResult, PyResult, PyResult]> = [
    [
      "a Buffer",
      Buffer.from([0, 1, 0xff, 0x0d, 0x0a]),
      bytesOf(Buffer.from([0, 1, 0xff, 0x0d, 0x0a])),
      bytesOf(Buffer.from([0, 1, 0xff, 0x0d, 0x0a])),
      bytesOf(Buffer.from([0, 1, 0xff, 0x0d, 0x0a])),
    ],
    ["a string", "héllo 😀", bytesOf("héllo 😀"), py.str("héllo 😀"), py.str("héllo 😀")],
    [
      "a string that is a pickle",
      PICKLE_TEXT,
      bytesOf(PICKLE_TEXT),
      py.str(PICKLE_TEXT),
      py.str(PICKLE_TEXT),
    ],
    ["a string of digits", "123", bytesOf("123"), py.str("123"), py.str("123")],
    ["an empty string", "", bytesOf(""), py.str(""), py.str("")],
    ["an integer", 42, bytesOf("42"), py.int(42), py.int(42)],
    ["a negative integer", -7, bytesOf("-7"), py.int(-7), py.int(-7)],
    [
      "a bigint",
      2n ** 70n,
      bytesOf("1180591620717411303424"),
      py.int(2n ** 70n),
      py.int(2n ** 70n),
    ],
    [
      "an object (JSON)",
      { a: 1, b: [true, null] },
      bytesOf('{"a":1,"b":[true,null]}'),
      bytesOf('{"a":1,"b":[true,null]}'),
      bytesOf('{"a":1,"b":[true,null]}'),
    ],
    ["an array (JSON)", [1, "x"], bytesOf('[1,"x"]'), bytesOf('[1,"x"]'), bytesOf('[1,"x"]')],
    ["true (JSON)", true, bytesOf("true"), bytesOf("true"), bytesOf("true")],
    ["null (JSON)", null, bytesOf("null"), bytesOf("null"), bytesOf("null")],
    ["a fraction (JSON)", 1.5, bytesOf("1.5"), bytesOf("1.5"), bytesOf("1.5")],
    ["a JSON number that looks like an int", [7], bytesOf("[7]"), bytesOf("[7]"), bytesOf("[7]")],
  ];

  it.each(cases)(
    "%s: each reader gets its own type, none an error or an unpickled object",
    async (_what, value, plain, serde, libmc) => {
      const k = key("to-python");
      await client.set(k, value);
      const got = await Promise.all(readers.map((reader) => python.get(reader, servers, k)));
      expect(got).toEqual([plain, serde, libmc]);
    },
  );

  it("never writes a flags word with the pickle bit, whatever the value", async () => {
    const values: unknown[] = cases.map(([, value]) => value);
    for (const value of values) {
      const k = key("flags");
      await client.set(k, value);
      const item = await client.gets(k);
      expect(item).toBeDefined();
      expect(item!.flags & 1).toBe(0);
    }
  });
});

describe("values Python writes, read by Node", () => {
  // [writer, what, Python value, what our get returns]
  const cases: Array<[PythonClient, string, Parameters<PythonAgent["set"]>[3], unknown]> = [
    ["pymemcache-serde", "bytes", py.bytes(Buffer.from([0, 0xfe])), Buffer.from([0, 0xfe])],
    ["pymemcache-serde", "a str", py.str("héllo 😀"), "héllo 😀"],
    ["pymemcache-serde", "a str of digits", py.str("123"), "123"],
    ["pymemcache-serde", "an int", py.int(42), 42],
    ["pymemcache-serde", "a negative int", py.int(-7), -7],
    ["pymemcache-serde", "an int past 2^53", py.int(2n ** 53n + 1n), 2n ** 53n + 1n],
    ["pymemcache-serde", "an int past 2^64", py.int(2n ** 70n), 2n ** 70n],
    ["pylibmc", "bytes", py.bytes("raw"), Buffer.from("raw")],
    ["pylibmc", "a str", py.str("héllo 😀"), "héllo 😀"],
    ["pylibmc", "an int (flags 4)", py.int(42), 42],
    ["pylibmc", "an int past 2^64", py.int(2n ** 70n), 2n ** 70n],
    ["pylibmc", "True (stored as the int 1, as pylibmc reads it back)", py.bool(true), 1],
    ["pylibmc", "False (the int 0)", py.bool(false), 0],
    ["pymemcache", "bytes (no serde)", py.bytes("raw"), Buffer.from("raw")],
    ["pymemcache", "a str (no serde: bytes, flags 0)", py.str("text"), Buffer.from("text")],
    [
      "pymemcache-json",
      "a dict (the README's JsonSerde, flags 32)",
      py.json({ a: [1, 2] }),
      { a: [1, 2] },
    ],
    ["pymemcache-json", "a list (JsonSerde)", py.json([1, "x"]), [1, "x"]],
    ["pymemcache-json", "a str (JsonSerde: as pickle_serde)", py.str("s"), "s"],
  ];

  it.each(cases)("%s %s", async (writer, _what, value, expected) => {
    const k = key("from-python");
    expect(await python.set(writer, servers, k, value)).toBe(true);
    expect(await client.get(k)).toEqual(expected);
    expect((await client.getMany([k])).get(k)).toEqual(expected);
    expect((await client.gets(k))?.value).toEqual(expected);
  });

  it.each<[string, Parameters<PythonAgent["set"]>[3], unknown]>([
    ["a str", py.str("compressed text ".repeat(50)), "compressed text ".repeat(50)],
    [
      "bytes",
      py.bytes("compressed bytes ".repeat(50)),
      Buffer.from("compressed bytes ".repeat(50)),
    ],
  ])("reads %s pylibmc compressed with zlib (min_compress_len)", async (_what, value, expected) => {
    const k = key("zlib");
    await python.set("pylibmc", servers, k, value, { min_compress_len: 10 });
    const item = await client.gets(k);
    expect(item!.flags & 8).toBe(8);
    expect(item!.data.length).toBeLessThan(100);
    expect(item!.value).toEqual(expected);
  });

  // pymemcache's serializer pickles anything but bytes, str and int (bool included); pylibmc
  // pickles anything but bytes, str, int and bool.
  it.each<[PythonClient, string, Parameters<PythonAgent["set"]>[3]]>([
    ["pymemcache-serde", "a dict", py.json({ a: 1 })],
    ["pymemcache-serde", "a list", py.json([1, 2])],
    ["pymemcache-serde", "a float", py.float(1.5)],
    ["pymemcache-serde", "True", py.bool(true)],
    ["pymemcache-serde", "None", py.none()],
    ["pylibmc", "a dict", py.json({ a: 1 })],
    ["pylibmc", "a float", py.float(1.5)],
    ["pylibmc", "None", py.none()],
  ])(
    "never decodes a pickle: %s %s reads as a miss and is reported",
    async (writer, _what, value) => {
      const k = key("pickle");
      await python.set(writer, servers, k, value);
      reported.length = 0;

      expect(await client.get(k)).toBeUndefined();
      expect((await client.getMany([k])).has(k)).toBe(false);
      const item = await client.gets(k);
      expect(item?.value).toBeUndefined();
      expect(item?.flags).toBe(1);
      expect(reported).toEqual([
        { key: k, flags: 1, bytes: item!.data.length },
        { key: k, flags: 1, bytes: item!.data.length },
        { key: k, flags: 1, bytes: item!.data.length },
      ]);
    },
  );

  it("reads an old-style (protocol 0) pickle, which is printable text, as a miss, not as its text", async () => {
    const k = key("pickle-0");
    await python.set("pymemcache", servers, k, py.bytes("S'a string'\np0\n."), { flags: 1 });
    expect(await python.get("pymemcache-serde", servers, k)).toEqual(py.str("a string"));
    expect(await client.get(k)).toBeUndefined();
  });
});

describe("the onUndecodable report", () => {
  it("leaves out this library's own internal values (tombstones), which read as misses", async () => {
    const k = key("internal");
    await client.set(k, Buffer.from("invalidated"), { flags: FLAG_INTERNAL });
    reported.length = 0;
    expect(await client.get(k)).toBeUndefined();
    expect(reported).toEqual([]);
    expect(await python.get("pylibmc", servers, k)).toEqual(py.bytes("invalidated"));
  });

  it("never turns a miss into a failure when the observer throws", async ({ memcached: mc }) => {
    const k = key("throwing-observer");
    await client.set(k, Buffer.from("x"), { flags: 1 });
    const throwing = new MemcacheClient({
      servers: mc.endpoint,
      onUndecodable: () => {
        throw new Error("observer bug");
      },
    });
    try {
      expect(await throwing.get(k)).toBeUndefined();
      expect(await throwing.getMany([k])).toEqual(new Map());
    } finally {
      throwing.close();
    }
  });
});

describe("counters shared with Python (the counter rule: decimal text, any flags)", () => {
  it.each<[PythonClient, string]>([
    ["pymemcache", "flags 0"],
    ["pymemcache-serde", "flags 2"],
    ["pylibmc", "flags 4"],
  ])(
    "counts on from a %s counter (%s) by CAS and incr, and Python counts on from ours",
    async (writer, _flags) => {
      const k = key("counter");
      await python.set(writer, servers, k, py.int(123));
      expect(await python.request({ op: "incr", client: writer, servers, key: k })).toBe("124");

      expect(await readCounter(client, k)).toBe(124);
      expect(await casIncrement(client, k)).toBe(125);
      expect(await increment(client, k)).toBe(126);
      expect(await python.request({ op: "incr", client: writer, servers, key: k })).toBe("127");
      const back = await python.get(writer, servers, k);
      expect(back).toEqual(writer === "pymemcache" ? py.bytes("127") : py.int(127));
    },
  );

  it("agrees with Python on a counter past 2^53, both ways", async () => {
    const k = key("big-counter");
    await python.set("pylibmc", servers, k, py.int(2n ** 53n + 1n));
    expect(await readCounter(client, k)).toBe(2n ** 53n + 1n);
    expect(await casIncrement(client, k, 10)).toBe(2n ** 53n + 11n);
    expect(await python.get("pylibmc", servers, k)).toEqual(py.int(2n ** 53n + 11n));
    expect(await python.get("pymemcache-serde", servers, k)).toEqual(py.int(2n ** 53n + 11n));
  });
});
