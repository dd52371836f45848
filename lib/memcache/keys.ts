// Key rules. The client refuses any key that could break the text protocol before a byte is
// written; safeKey() turns arbitrary (user-supplied) text into a key that always passes.

import { createHash } from "node:crypto";
import { MemcacheIllegalInputError } from "./errors.ts";

/** memcached's limit on key length, in bytes. */
export const MAX_KEY_BYTES = 250;

/**
 * Throws MemcacheIllegalInputError unless `key` is 1..250 characters of printable ASCII (0x21..0x7e):
 * no space, no control character (so no `\r\n` command injection), no non-ASCII byte.
 */
export function assertValidKey(key: unknown): asserts key is string {
  if (typeof key !== "string") {
    throw new MemcacheIllegalInputError(`key must be a string, got ${typeof key}`);
  }
  const length = key.length;
  if (length === 0 || length > MAX_KEY_BYTES) {
    throw new MemcacheIllegalInputError(
      `key must be 1..${MAX_KEY_BYTES} bytes, got ${length} characters; use safeKey() for long or user-supplied keys`,
    );
  }
  for (let i = 0; i < length; i++) {
    const c = key.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) {
      throw new MemcacheIllegalInputError(
        `key contains ${describeChar(c)} at index ${i}; keys are printable ASCII without spaces — use safeKey() for user-supplied text`,
      );
    }
  }
}

function describeChar(c: number): string {
  if (c === 0x20) return "a space";
  if (c < 0x20 || c === 0x7f) return `control character 0x${c.toString(16).padStart(2, "0")}`;
  return `non-ASCII character U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

// Characters passed through unchanged by safeKey. `#` is deliberately not among them: hashed keys
// contain `#`, so no raw input can ever collide with the hashed form of another input.
const PASS_THROUGH = /^[A-Za-z0-9_.:~/@+=,-]*$/;

/**
 * Builds a key from untrusted text: `prefix + input` when the input uses only
 * `[A-Za-z0-9_.:~/@+=,-]` and the result fits in 250 bytes; otherwise `prefix + "#" +
 * base64url(sha256(input))`. Distinct inputs never share a key (up to SHA-256 collisions).
 */
export function safeKey(input: string, prefix = ""): string {
  if (prefix.length > 0) assertValidKey(prefix);
  if (prefix.length + 44 > MAX_KEY_BYTES) {
    throw new MemcacheIllegalInputError(
      `key prefix too long (${prefix.length} > ${MAX_KEY_BYTES - 44})`,
    );
  }
  if (
    input.length > 0 &&
    prefix.length + input.length <= MAX_KEY_BYTES &&
    PASS_THROUGH.test(input)
  ) {
    return prefix + input;
  }
  return `${prefix}#${createHash("sha256").update(input, "utf8").digest("base64url")}`;
}
