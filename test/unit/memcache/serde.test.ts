// Unit tests of the default serde: values <-> bytes plus the flags word Python's clients share
// (0 bytes, 16 UTF-8 string, 2 integer, 32 JSON; 4 and zlib-compressed values read), and
// undecodable bytes — pickles above all — reported as a miss.

import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";
import {
  defaultSerde,
  FLAG_BYTES,
  FLAG_CHECKSUM,
  FLAG_INTEGER,
  FLAG_INTERNAL,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_PICKLE,
  FLAG_STRING,
  FLAG_ZLIB,
  isInternalFlags,
  MAX_INFLATED_BYTES,
  withChecksum,
} from "../../../lib/memcache/serde.ts";

function roundTrip(value: unknown): { flags: number; decoded: unknown } {
  const { data, flags } = defaultSerde.encode(value);
  return { flags, decoded: defaultSerde.decode(data, flags) };
}

describe("defaultSerde", () => {
  describe("round trips", () => {
    it("round-trips a Buffer of arbitrary bytes with flags 0", () => {
      const value = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x41]);
      const { flags, decoded } = roundTrip(value);
      expect(flags).toBe(FLAG_BYTES);
      expect(Buffer.isBuffer(decoded)).toBe(true);
      expect(decoded).toEqual(value);
    });

    it.each([
      "",
      "hello",
      "héllo wörld",
      "日本語のテキスト",
      "emoji 😀 and 𝄞 outside the BMP",
      "line\r\nbreaks\0and NUL",
    ])("round-trips the string %j with flags 16", (value) => {
      expect(roundTrip(value)).toEqual({ flags: FLAG_STRING, decoded: value });
    });

    it.each([0, 1, -1, -42, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER])(
      "round-trips the integer %d with flags 2",
      (value) => {
        expect(roundTrip(value)).toEqual({ flags: FLAG_INTEGER, decoded: value });
      },
    );

    it.each([2n ** 63n, 2n ** 64n - 1n, -(2n ** 63n)])(
      "round-trips the bigint %s with flags 2",
      (value) => {
        expect(roundTrip(value)).toEqual({ flags: FLAG_INTEGER, decoded: value });
      },
    );

    it("stores integers as decimal ASCII, the form incr/decr work on", () => {
      expect(defaultSerde.encode(-42).data.toString("latin1")).toBe("-42");
      expect(defaultSerde.encode(2n ** 63n).data.toString("latin1")).toBe("9223372036854775808");
    });

    it.each<[string, unknown]>([
      ["an object", { a: 1, nested: { b: [1, "two", null] }, text: "é😀" }],
      ["an array", [1, "x", { y: false }]],
      ["an empty object", {}],
      ["null", null],
      ["true", true],
      ["false", false],
      ["a fractional number", 1.5],
    ])("round-trips %s as JSON with flags 32", (_name, value) => {
      expect(roundTrip(value)).toEqual({ flags: FLAG_JSON, decoded: value });
    });

    // U+FEFF is an ordinary character when it is not at the start of a decoded string; at the
    // start, TextDecoder strips it as a byte order mark unless created with ignoreBOM: true.
    it("round-trips a string that starts with U+FEFF", () => {
      expect(roundTrip("\uFEFFx")).toEqual({ flags: FLAG_STRING, decoded: "\uFEFFx" });
    });
  });

  describe("decode", () => {
    it("reads an integer padded with trailing spaces, as memcached leaves it after decr", () => {
      expect(defaultSerde.decode(Buffer.from("5   ", "latin1"), FLAG_INTEGER)).toBe(5);
      expect(defaultSerde.decode(Buffer.from("10 ", "latin1"), FLAG_INTEGER)).toBe(10);
    });

    it("reads pylibmc's integers (flags 4) and Python's big and negative ones", () => {
      expect(defaultSerde.decode(Buffer.from("42"), FLAG_LONG)).toBe(42);
      expect(defaultSerde.decode(Buffer.from("-7"), FLAG_INTEGER)).toBe(-7);
      expect(defaultSerde.decode(Buffer.from("1180591620717411303424"), FLAG_LONG)).toBe(2n ** 70n);
    });

    it.each<[string, Buffer, number, unknown]>([
      ["bytes", Buffer.from([0, 1, 2, 255]), FLAG_BYTES, Buffer.from([0, 1, 2, 255])],
      ["a string", Buffer.from("héllo wörld ".repeat(20)), FLAG_STRING, "héllo wörld ".repeat(20)],
      ["an integer", Buffer.from("123456789"), FLAG_INTEGER, 123456789],
      ["a long", Buffer.from("98765"), FLAG_LONG, 98765],
    ])(
      "inflates %s compressed with zlib (flags | 8), as pylibmc and python-memcached write it",
      (_name, raw, type, expected) => {
        expect(defaultSerde.decode(deflateSync(raw), type | FLAG_ZLIB)).toEqual(expected);
      },
    );

    it("reads a zlib value that inflates past MAX_INFLATED_BYTES as a miss (no zlib bomb)", () => {
      const bomb = deflateSync(Buffer.alloc(MAX_INFLATED_BYTES + 1));
      expect(bomb.length).toBeLessThan(64 * 1024);
      expect(defaultSerde.decode(bomb, FLAG_ZLIB | FLAG_STRING)).toBeUndefined();
      const fits = deflateSync(Buffer.alloc(MAX_INFLATED_BYTES));
      expect((defaultSerde.decode(fits, FLAG_ZLIB | FLAG_BYTES) as Buffer).length).toBe(
        MAX_INFLATED_BYTES,
      );
    });

    // A pickle with flags 1 is never decoded, however harmless or plausible its bytes: a
    // protocol-0 pickle is printable text, and returning it as a string would be a wrong value.
    it.each<[string, Buffer]>([
      ["a protocol-0 pickle of a str", Buffer.from("Vx\np0\n.")],
      ["a protocol-0 pickle of an int", Buffer.from("I42\n.")],
      [
        "a protocol-5 pickle of a list",
        Buffer.from("80059509000000000000005d94284b014b02652e", "hex"),
      ],
      ["decimal text", Buffer.from("123")],
      ["plain text", Buffer.from("hello")],
      ["JSON", Buffer.from('{"a":1}')],
    ])(
      "returns undefined for %s with the pickle flag (1), also zlib-compressed (9)",
      (_name, data) => {
        expect(defaultSerde.decode(data, FLAG_PICKLE)).toBeUndefined();
        expect(defaultSerde.decode(deflateSync(data), FLAG_PICKLE | FLAG_ZLIB)).toBeUndefined();
      },
    );

    it("returns a copy of the bytes, not a view of the caller's buffer", () => {
      const source = Buffer.from("abc");
      const decoded = defaultSerde.decode(source, FLAG_BYTES) as Buffer;
      source[0] = 0x7a;
      expect(decoded.toString("latin1")).toBe("abc");
    });

    it.each<[string, Buffer, number]>([
      ["unknown flags 3 (pymemcache: int, pylibmc: an error)", Buffer.from("abc"), 3],
      ["unknown flags 64", Buffer.from("abc"), 64],
      ["unknown flags 99", Buffer.from("abc"), 99],
      ["unknown flags 48 (PHP's zlib-compressed string)", Buffer.from("abc"), 48],
      ["invalid UTF-8 with flags 16", Buffer.from([0x61, 0xff, 0xfe]), FLAG_STRING],
      ["truncated UTF-8 with flags 16", Buffer.from([0xc3]), FLAG_STRING],
      ["invalid JSON with flags 32", Buffer.from("{not json"), FLAG_JSON],
      ["invalid UTF-8 with flags 32", Buffer.from([0x22, 0xff, 0x22]), FLAG_JSON],
      ["non-numeric text with flags 4", Buffer.from("abc"), FLAG_LONG],
      ["bytes that are not zlib with flags 8", Buffer.from("abc"), FLAG_ZLIB],
      ["zlib-compressed text with flags 16 but no zlib bit", deflateSync("abc"), FLAG_STRING],
      ["a lambda-memcache internal value (tombstone)", Buffer.from("invalidated"), FLAG_INTERNAL],
      ["non-numeric text with flags 2", Buffer.from("abc"), FLAG_INTEGER],
      ["a fraction with flags 2", Buffer.from("1.5"), FLAG_INTEGER],
      ["digits followed by text with flags 2", Buffer.from("12abc"), FLAG_INTEGER],
      ["empty data with flags 2", Buffer.alloc(0), FLAG_INTEGER],
    ])("returns undefined (a miss) for %s", (_name, data, flags) => {
      expect(defaultSerde.decode(data, flags)).toBeUndefined();
    });
  });

  describe("encode", () => {
    it("writes only flags 0, 2, 16 and 32: never the pickle bit, never one Python reads as another type", () => {
      const values: unknown[] = [
        Buffer.from("x"),
        new Uint8Array([1]),
        "",
        "I42\n.",
        "Vx\np0\n.",
        0,
        -5,
        2n ** 70n,
        1.5,
        true,
        null,
        [1],
        { a: "b" },
        Number.NaN,
      ];
      const flags = new Set(values.map((value) => defaultSerde.encode(value).flags));
      expect([...flags].sort((a, b) => a - b)).toEqual([0, 2, 16, 32]);
      for (const flag of flags) expect(flag & FLAG_PICKLE).toBe(0);
    });

    it("marks lambda-memcache's own values by the upper 16 bits only", () => {
      expect(isInternalFlags(FLAG_INTERNAL)).toBe(true);
      expect(isInternalFlags(FLAG_INTERNAL | 0x40)).toBe(true);
      expect(isInternalFlags(0x7443_0000)).toBe(false);
      for (const flags of [0, 1, 2, 16, 32, FLAG_CHECKSUM | 16]) {
        expect(isInternalFlags(flags)).toBe(false);
      }
    });

    it.each<[string, unknown]>([
      ["undefined", undefined],
      ["a function", () => 1],
      ["a symbol", Symbol("s")],
      ["an object holding a bigint (no JSON form)", { a: 1n }],
      [
        "a circular object",
        (() => {
          const o: Record<string, unknown> = {};
          o.self = o;
          return o;
        })(),
      ],
    ])("throws MemcacheIllegalInputError for %s", (_name, value) => {
      expect(() => defaultSerde.encode(value)).toThrow(MemcacheIllegalInputError);
    });

    it("encodes a Uint8Array as its bytes with flags 0", () => {
      const encoded = defaultSerde.encode(new Uint8Array([1, 2, 3]));
      expect(encoded.flags).toBe(FLAG_BYTES);
      expect(encoded.data).toEqual(Buffer.from([1, 2, 3]));
    });

    it("encodes only the viewed bytes of a Uint8Array that is a slice of a larger buffer", () => {
      const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
      expect(defaultSerde.encode(view).data).toEqual(Buffer.from([1, 2, 3]));
    });

    it("encodes a string as UTF-8", () => {
      expect(defaultSerde.encode("é").data).toEqual(Buffer.from([0xc3, 0xa9]));
    });
  });
});

describe("withChecksum", () => {
  const checked = withChecksum(defaultSerde);

  it.each<[string, unknown]>([
    ["a string", "héllo"],
    ["JSON", { a: [1, 2, 3] }],
    ["an integer", 42],
    ["bytes", Buffer.from([0, 13, 10, 255])],
  ])("round-trips %s and marks the flags", (_name, value) => {
    const encoded = checked.encode(value);
    expect(encoded.flags & FLAG_CHECKSUM).toBe(FLAG_CHECKSUM);
    expect(checked.decode(encoded.data, encoded.flags)).toEqual(value);
  });

  it("reads a value with any single flipped bit as a miss", () => {
    const encoded = checked.encode({ name: "product 42", price: 1999 });
    for (let byte = 0; byte < encoded.data.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = Buffer.from(encoded.data);
        damaged[byte]! ^= 1 << bit;
        expect(checked.decode(damaged, encoded.flags)).toBeUndefined();
      }
    }
  });

  it("reads a value whose flags changed in transit as a miss", () => {
    const encoded = checked.encode("text");
    expect(checked.decode(encoded.data, (encoded.flags ^ 2) >>> 0)).toBeUndefined();
  });

  it("reads a value without a checksum as a miss", () => {
    const plain = defaultSerde.encode("text");
    expect(checked.decode(plain.data, plain.flags)).toBeUndefined();
  });
});
