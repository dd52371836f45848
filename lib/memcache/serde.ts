// Values <-> bytes plus memcached's 32-bit flags word. The flags say how to decode on read:
//   0 raw bytes (Buffer)   1 UTF-8 string   2 integer (decimal ASCII, what incr/decr keep)   3 JSON
// 0..2 match pymemcache's bytes/text/int, so those values read the same from Python.
// A value that cannot be decoded (unknown flags, bad UTF-8, bad JSON) is reported as undefined,
// which the client turns into a miss.

import { crc32 } from "node:zlib";
import { IllegalInputError } from "./errors.ts";

export const FLAG_BYTES = 0;
export const FLAG_STRING = 1;
export const FLAG_INTEGER = 2;
export const FLAG_JSON = 3;

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
const INTEGER = /^-?[0-9]{1,20}$/;

function decodeInteger(text: string): number | bigint | undefined {
  if (!INTEGER.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

/** The default serde: Buffer, string, integer (number or bigint) and JSON for everything else. */
export const defaultSerde: Serde = {
  encode(value: unknown): Encoded {
    if (Buffer.isBuffer(value)) return { data: value, flags: FLAG_BYTES };
    if (value instanceof Uint8Array) {
      return { data: Buffer.from(value.buffer, value.byteOffset, value.byteLength), flags: 0 };
    }
    if (typeof value === "string") return { data: Buffer.from(value, "utf8"), flags: FLAG_STRING };
    if (typeof value === "bigint" || (typeof value === "number" && Number.isSafeInteger(value))) {
      return { data: Buffer.from(String(value), "latin1"), flags: FLAG_INTEGER };
    }
    if (value === undefined || typeof value === "function" || typeof value === "symbol") {
      throw new IllegalInputError(`cannot store a value of type ${typeof value}`);
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (error) {
      throw new IllegalInputError(`value cannot be stored as JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (json === undefined) throw new IllegalInputError("value has no JSON form");
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
          return decodeInteger(data.toString("latin1").trim());
        case FLAG_JSON:
          return JSON.parse(utf8.decode(data));
        default:
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
