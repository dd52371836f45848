// Values <-> bytes plus memcached's 32-bit flags word, in the format Python's memcached clients
// share (pymemcache's serde, python-memcached, pylibmc), so a cache can be shared with them:
//
//   flags  we write                  we read                      pymemcache (serde) / pylibmc read
//   0      Buffer                    Buffer                       bytes / bytes
//   1      never                     a miss (pickle: never        unpickle / unpickle
//                                    decoded)
//   2      integer (number, bigint)  integer                      int / int
//   4      never                     integer (pylibmc's int)      int / int
//   8|t    never                     zlib-inflated, then as t     (compressed: python-memcached,
//                                    (t = 0, 2, 4, 16)            pylibmc with min_compress_len)
//   16     string (UTF-8)            string                       str / str
//   32     JSON (anything else)      JSON                         bytes / bytes
//   other  never                     a miss                       -
//
// JSON is 32 because it is the lowest bit both Python readers ignore: pymemcache tests the flags
// with & (16 text, 2 int, 4 long, 1 pickle) and pylibmc masks them with 1|2|4|16 (and 8 for zlib),
// so flags 32 read as plain bytes there, never as a number, a string or a pickle. No flags word we
// write has bit 1 set, so no Python reader ever unpickles anything we stored.
// The full table, with the default pymemcache client and PHP, is in the README ("Sharing a cache
// with Python (and PHP) services"). A value that cannot be decoded (a pickle, unknown flags, bad
// UTF-8, bad JSON, bad zlib) is reported as undefined, which the client turns into a miss.

import { crc32, inflateSync } from "node:zlib";
import { MemcacheIllegalInputError } from "./errors.ts";

export const FLAG_BYTES = 0;
/** pymemcache/pylibmc pickle. Never written, never decoded. */
export const FLAG_PICKLE = 1;
export const FLAG_INTEGER = 2;
/** pylibmc's int (and Python 2's long): read as an integer, never written. */
export const FLAG_LONG = 4;
/** python-memcached/pylibmc compression bit, combined with a type: read, never written. */
export const FLAG_ZLIB = 8;
export const FLAG_STRING = 16;
export const FLAG_JSON = 32;
/**
 * Flags of values this library stores for itself (e.g. the cutover's tombstones): the upper 16
 * bits are 0x7442 ("tB"), the lower ones free. Every reader takes them as a miss; Python readers
 * see plain bytes. The client does not report them as undecodable.
 */
export const FLAG_INTERNAL = 0x7442_0000;

/** Whether `flags` marks one of this library's internal values (see FLAG_INTERNAL). */
export function isInternalFlags(flags: number): boolean {
  return (flags & 0xffff_0000) >>> 0 === FLAG_INTERNAL;
}

/** Inflated size above which a zlib value reads as a miss (a bomb must not exhaust memory). */
export const MAX_INFLATED_BYTES = 16 * 1024 * 1024;

export interface Encoded {
  data: Buffer;
  flags: number;
}

/** Turns values into bytes + flags and back. Supply your own to the client to change the format. */
export interface Serde {
  encode(value: unknown): Encoded;
  /** Returns undefined when the bytes cannot be decoded: the caller treats that as a miss. */
  decode(data: Buffer, flags: number): unknown;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// Decimal text as Python's "%d" and memcached's incr write it; memcached pads a number that got
// shorter in place with trailing spaces ("99 "), which the callers trim first.
const DECIMAL = /^-?[0-9]+$/;

/**
 * Decimal text (optionally negative, surrounded by spaces) as a number, or a bigint outside the
 * safe integer range; undefined for anything else.
 */
export function parseDecimal(data: Buffer): number | bigint | undefined {
  const text = data.toString("latin1").trim();
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

/** The default serde: Buffer, string, integer (number or bigint) and JSON for everything else. */
export const defaultSerde: Serde = {
  encode(value: unknown): Encoded {
    if (Buffer.isBuffer(value)) return { data: value, flags: FLAG_BYTES };
    if (value instanceof Uint8Array) {
      return {
        data: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
        flags: FLAG_BYTES,
      };
    }
    if (typeof value === "string") return { data: Buffer.from(value, "utf8"), flags: FLAG_STRING };
    if (typeof value === "bigint" || (typeof value === "number" && Number.isSafeInteger(value))) {
      return { data: Buffer.from(String(value), "latin1"), flags: FLAG_INTEGER };
    }
    if (value === undefined || typeof value === "function" || typeof value === "symbol") {
      throw new MemcacheIllegalInputError(`cannot store a value of type ${typeof value}`);
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (error) {
      throw new MemcacheIllegalInputError(
        `value cannot be stored as JSON: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (json === undefined) throw new MemcacheIllegalInputError("value has no JSON form");
    return { data: Buffer.from(json, "utf8"), flags: FLAG_JSON };
  },

  decode(data: Buffer, flags: number): unknown {
    try {
      switch (flags) {
        case FLAG_BYTES:
          // Copy: `data` may be a view into a larger socket chunk the caller should not pin.
          return Buffer.from(data);
        case FLAG_STRING:
          return utf8.decode(data);
        case FLAG_INTEGER:
        case FLAG_LONG:
          return parseDecimal(data);
        case FLAG_JSON:
          return JSON.parse(utf8.decode(data));
        case FLAG_ZLIB | FLAG_BYTES:
        case FLAG_ZLIB | FLAG_STRING:
        case FLAG_ZLIB | FLAG_INTEGER:
        case FLAG_ZLIB | FLAG_LONG:
          return this.decode(
            inflateSync(data, { maxOutputLength: MAX_INFLATED_BYTES }),
            flags & ~FLAG_ZLIB,
          );
        default:
          // FLAG_PICKLE (alone or with FLAG_ZLIB) lands here too: a pickle is never decoded.
          return undefined;
      }
    } catch {
      return undefined;
    }
  },
};

/** Flags bit that marks a value carrying a CRC-32 trailer (see withChecksum). */
export const FLAG_CHECKSUM = 0x1_0000;

/**
 * Wraps a serde so every value carries a CRC-32 over its flags and bytes, and a value whose
 * checksum does not match (or that has none) decodes as a miss. memcached's text protocol has
 * no checksum of its own: TCP's (and TLS, for ElastiCache in-transit encryption) normally catch
 * damage in transit, this catches what gets past them. 4 bytes per value; values are no longer
 * readable by clients that do not know the format.
 */
export function withChecksum(inner: Serde): Serde {
  return {
    encode(value: unknown): Encoded {
      const encoded = inner.encode(value);
      const flags = (encoded.flags | FLAG_CHECKSUM) >>> 0;
      const out = Buffer.allocUnsafe(encoded.data.length + 4);
      encoded.data.copy(out, 0);
      out.writeUInt32BE(checksum(flags, encoded.data), encoded.data.length);
      return { data: out, flags };
    },
    decode(data: Buffer, flags: number): unknown {
      if ((flags & FLAG_CHECKSUM) === 0 || data.length < 4) return undefined;
      const body = data.subarray(0, data.length - 4);
      if (data.readUInt32BE(data.length - 4) !== checksum(flags, body)) return undefined;
      return inner.decode(body, (flags & ~FLAG_CHECKSUM) >>> 0);
    },
  };
}

function checksum(flags: number, data: Buffer): number {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(flags >>> 0, 0);
  return crc32(data, crc32(header));
}
