// Unit tests of the key rules: assertValidKey refuses anything that could break the text
// protocol, and safeKey turns arbitrary text into a key that always passes.

import { describe, expect, it } from "vitest";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";
import { assertValidKey, MAX_KEY_BYTES, safeKey } from "../../../lib/memcache/keys.ts";
import { thrownBy } from "../../helpers/client.ts";

/** `length` printable ASCII characters (0x21..0x7e), cycling through all of them. */
function printableAscii(length: number): string {
  return Array.from({ length }, (_, i) => String.fromCharCode(0x21 + (i % 94))).join("");
}

describe("assertValidKey", () => {
  it("accepts 250 printable ASCII characters covering 0x21..0x7e", () => {
    const key = printableAscii(250);
    expect(key).toContain("!");
    expect(key).toContain("~");
    expect(() => assertValidKey(key)).not.toThrow();
  });

  it("accepts a one-character key", () => {
    expect(() => assertValidKey("k")).not.toThrow();
  });

  it.each<[string, unknown, RegExp]>([
    ["the empty string", "", /1\.\.250 bytes, got 0 characters.*safeKey/],
    ["251 characters", "k".repeat(251), /1\.\.250 bytes, got 251 characters.*safeKey/],
    ["a space", "a b", /a space at index 1.*safeKey/],
    ["\\r\\n (command injection)", "k\r\nflush_all", /control character 0x0d at index 1.*safeKey/],
    ["NUL", "k\0", /control character 0x00 at index 1/],
    ["a tab", "\tk", /control character 0x09 at index 0/],
    ["DEL (0x7f)", "k\x7f", /control character 0x7f at index 1/],
    ["unicode é", "café", /non-ASCII character U\+00E9 at index 3.*safeKey/],
    ["a number", 42, /key must be a string, got number/],
    ["undefined", undefined, /key must be a string, got undefined/],
  ])("rejects %s with a helpful MemcacheIllegalInputError", (_name, key, message) => {
    const error = thrownBy(() => assertValidKey(key));
    expect(error).toBeInstanceOf(MemcacheIllegalInputError);
    expect((error as Error).message).toMatch(message);
  });
});

describe("safeKey", () => {
  it("passes a plain key through unchanged", () => {
    expect(safeKey("product-42")).toBe("product-42");
  });

  it("passes a plain key through unchanged after the prefix", () => {
    expect(safeKey("product-42", "shop:")).toBe("shop:product-42");
  });

  it("passes through every allowed punctuation character", () => {
    expect(safeKey("a_b.c:d~e/f@g+h=i,j-k")).toBe("a_b.c:d~e/f@g+h=i,j-k");
  });

  it("passes through an input that exactly fills 250 bytes with its prefix", () => {
    expect(safeKey("x".repeat(245), "pre::")).toBe(`pre::${"x".repeat(245)}`);
  });

  it("hashes an input that would overflow 250 bytes only because of the prefix", () => {
    expect(safeKey("x".repeat(246), "pre::")).toMatch(/^pre::#/);
  });

  const needsHashing: Array<[string, string]> = [
    ["a space", "hello world"],
    ["\\r\\n", "k\r\nflush_all"],
    ["NUL", "k\0"],
    ["unicode", "café ☕ 😀"],
    ["%0D%0A-decoded text", decodeURIComponent("user%0D%0Aset%20x%200%200%201")],
    ["300 characters", "x".repeat(300)],
    ["the empty string", ""],
    ["a hash mark", "#abc"],
  ];

  describe.each(["", "tenant-7:"])("with prefix %j", (prefix) => {
    it.each(needsHashing)("hashes an input with %s into a valid key", (_name, input) => {
      const key = safeKey(input, prefix);
      expect(() => assertValidKey(key)).not.toThrow();
      expect(key.length).toBeLessThanOrEqual(MAX_KEY_BYTES);
      expect(key.startsWith(`${prefix}#`)).toBe(true);
      expect(key).not.toBe(prefix + input);
    });

    it("hashes the same input to the same key every time", () => {
      for (const [, input] of needsHashing)
        expect(safeKey(input, prefix)).toBe(safeKey(input, prefix));
    });

    it("hashes different inputs to different keys", () => {
      const keys = needsHashing.map(([, input]) => safeKey(input, prefix));
      expect(new Set(keys).size).toBe(needsHashing.length);
    });
  });

  it("hashes an input that looks like a hashed key, so it never collides with one", () => {
    const hashedForm = safeKey("hello world");
    expect(hashedForm).toMatch(/^#/);
    // Feeding another input's hashed form back in must not yield that same key.
    expect(safeKey(hashedForm)).not.toBe(hashedForm);
    expect(safeKey(hashedForm)).toMatch(/^#/);
    expect(safeKey("#abc")).not.toBe("#abc");
  });

  it("accepts the longest prefix whose hashed key still fits in 250 bytes", () => {
    const prefix = "p".repeat(MAX_KEY_BYTES - 44);
    const key = safeKey("needs hashing", prefix);
    expect(key.length).toBe(MAX_KEY_BYTES);
    expect(() => assertValidKey(key)).not.toThrow();
  });

  it("throws MemcacheIllegalInputError for a prefix too long to leave room for the hash", () => {
    const error = thrownBy(() => safeKey("product-42", "p".repeat(MAX_KEY_BYTES - 43)));
    expect(error).toBeInstanceOf(MemcacheIllegalInputError);
    expect((error as Error).message).toMatch(/prefix too long/);
  });

  it("throws MemcacheIllegalInputError for a prefix that is not a valid key", () => {
    expect(() => safeKey("product-42", "bad prefix:")).toThrow(MemcacheIllegalInputError);
  });
});
