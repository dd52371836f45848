// memcached text and meta protocol, pure: command encoders (values -> bytes) and an incremental
// reply parser (bytes -> reply events). No sockets here, so every byte boundary is unit-testable.
// Reference: memcached's doc/protocol.txt.

import { MemcacheIllegalInputError, MemcacheProtocolError } from "./errors.ts";

const CR = 13;
const LF = 10;
const THIRTY_DAYS_SECONDS = 60 * 60 * 24 * 30;
const MAX_FLAGS = 0xffffffff;
const MAX_CAS_TEXT = "18446744073709551615"; // 2^64 - 1

/**
 * The one place where a TTL becomes memcached's `exptime`. memcached reads an exptime up to
 * 30 days as seconds from now and anything larger as an absolute Unix time, so a longer TTL is
 * sent as `now + ttl`. 0 means "never expires".
 */
export function toWireExptime(ttlSeconds: number, nowMs: number = Date.now()): number {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) {
    throw new MemcacheIllegalInputError(
      `ttlSeconds must be a whole number of seconds >= 0 (0 = no expiry), got ${ttlSeconds}`,
    );
  }
  if (ttlSeconds > THIRTY_DAYS_SECONDS) return Math.floor(nowMs / 1000) + ttlSeconds;
  return ttlSeconds;
}

/**
 * An `mg` reply's `t` flag (the seconds an item has left, -1 for no expiry) as a TTL to write it
 * again with: 0 for no expiry, at least 1 (an item about to expire says 0), undefined when the
 * reply has no number there.
 */
export function ttlLeft(t: string | undefined): number | undefined {
  const seconds = Number(t);
  if (t === undefined || !Number.isFinite(seconds)) return undefined;
  return seconds === -1 ? 0 : Math.max(1, seconds);
}

/** Storage commands of the classic text protocol. */
export type StorageVerb = "set" | "add" | "replace" | "append" | "prepend" | "cas";

/** `<verb> <key> <flags> <exptime> <bytes> [<cas>]\r\n<data>\r\n` as one buffer (one write). */
export function encodeStorage(
  verb: StorageVerb,
  key: string,
  flags: number,
  exptime: number,
  data: Buffer,
  cas?: string,
): Buffer {
  return withData(storageLine(verb, key, flags, exptime, data.length, cas), data);
}

/**
 * encodeStorage() for a value that is UTF-8 text of `bytes` bytes: one string, to be written as
 * UTF-8 (the command part is ASCII, so its bytes do not change). No Buffer is made for it.
 */
export function encodeStorageText(
  verb: StorageVerb,
  key: string,
  flags: number,
  exptime: number,
  text: string,
  bytes: number,
  cas?: string,
): string {
  return `${storageLine(verb, key, flags, exptime, bytes, cas)}${text}\r\n`;
}

function storageLine(
  verb: StorageVerb,
  key: string,
  flags: number,
  exptime: number,
  bytes: number,
  cas: string | undefined,
): string {
  return cas === undefined
    ? `${verb} ${key} ${flags} ${exptime} ${bytes}\r\n`
    : `${verb} ${key} ${flags} ${exptime} ${bytes} ${cas}\r\n`;
}

/** `ms <key> <datalen> <flags>*\r\n<data>\r\n`. */
export function encodeMetaSet(key: string, data: Buffer, metaFlags: readonly string[]): Buffer {
  return withData(metaSetLine(key, data.length, metaFlags), data);
}

/** encodeMetaSet() for UTF-8 text of `bytes` bytes, as one string (see encodeStorageText). */
export function encodeMetaSetText(
  key: string,
  text: string,
  bytes: number,
  metaFlags: readonly string[],
): string {
  return `${metaSetLine(key, bytes, metaFlags)}${text}\r\n`;
}

function metaSetLine(key: string, bytes: number, metaFlags: readonly string[]): string {
  return metaFlags.length === 0
    ? `ms ${key} ${bytes}\r\n`
    : `ms ${key} ${bytes} ${metaFlags.join(" ")}\r\n`;
}

function withData(header: string, data: Buffer): Buffer {
  const headerLength = header.length; // ASCII only: keys and flags are validated before this
  const out = Buffer.allocUnsafe(headerLength + data.length + 2);
  out.write(header, 0, "latin1");
  data.copy(out, headerLength);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

/** A command line with no data block, e.g. `get a b`, `delete k`, `mg k v f`. */
export function encodeLine(...parts: ReadonlyArray<string | number>): string {
  return `${parts.join(" ")}\r\n`;
}

/** Receives parsed replies in wire order. */
export interface ReplyHandler {
  /** `VALUE <key> <flags> <bytes> [<cas>]` and its data block (get, gets, gat, gats). */
  onValue(key: string, flags: number, data: Buffer, cas: string | undefined): void;
  /** `VA <size> <flags>*` and its data block (meta get/arithmetic); `flags` is the text after size. */
  onMetaValue(flags: string, data: Buffer): void;
  /** `CONFIG <name> <flags> <bytes>` and its data block (ElastiCache `config get cluster`). */
  onConfig(name: string, data: Buffer): void;
  /** Any other reply line, without its `\r\n`: STORED, END, HD, EN, VERSION x, STAT a b, 42, ... */
  onLine(line: string): void;
}

export interface ParserLimits {
  /** Longest reply line accepted, in bytes; a longer one is a protocol error. */
  maxLineBytes: number;
  /** Largest data block accepted, in bytes; a larger declared size is a protocol error. */
  maxReplyValueBytes: number;
}

export const parserDefaults: ParserLimits = {
  maxLineBytes: 8 * 1024,
  maxReplyValueBytes: 128 * 1024 * 1024,
};

const BLOCK_VALUE = 1;
const BLOCK_META = 2;
const BLOCK_CONFIG = 3;

/**
 * Incremental reply parser. Feed it socket chunks of any size; it calls the handler once per
 * complete reply element. A data block is read by its declared byte count, so value bytes that
 * look like `\r\nEND\r\n` are data, not protocol. Violations throw MemcacheProtocolError; after that (or
 * after stop()) the parser must not be fed again.
 */
export class ReplyParser {
  private rest: Buffer | null = null;
  // A data block that straddles chunks is copied into `block` (size + 2 for its "\r\n").
  private block: Buffer | null = null;
  private blockFilled = 0;
  private blockKind = 0;
  private blockKey = "";
  private blockFlags = 0;
  private blockCas: string | undefined;
  private stopped = false;
  private readonly handler: ReplyHandler;
  private readonly limits: ParserLimits;

  constructor(handler: ReplyHandler, limits: Partial<ParserLimits> = {}) {
    this.handler = handler;
    this.limits = { ...parserDefaults, ...limits };
  }

  /** Stops parsing at once, also in the middle of feed(); later chunks are ignored. */
  stop(): void {
    this.stopped = true;
    this.rest = null;
    this.block = null;
  }

  /** Bytes held for an incomplete reply (for tests and memory bounds). */
  get bufferedBytes(): number {
    return (this.rest?.length ?? 0) + (this.block === null ? 0 : this.blockFilled);
  }

  feed(chunk: Buffer): void {
    if (this.stopped) return;
    let offset = 0;
    if (this.block !== null) {
      offset = this.fillBlock(chunk);
      if (this.block !== null || this.stopped) return;
    }
    let data: Buffer;
    if (this.rest === null) {
      data = offset === 0 ? chunk : chunk.subarray(offset);
    } else {
      data = Buffer.concat([this.rest, offset === 0 ? chunk : chunk.subarray(offset)]);
      this.rest = null;
    }
    this.parse(data);
  }

  private parse(data: Buffer): void {
    const { maxLineBytes } = this.limits;
    let offset = 0;
    const length = data.length;
    while (offset < length) {
      // Reply lines are short: a plain loop beats a call into Buffer.indexOf for them. It looks
      // no further than the longest line allowed.
      const scanEnd = Math.min(length, offset + maxLineBytes + 1);
      let lf = offset;
      while (lf < scanEnd && data[lf] !== LF) lf++;
      if (lf === scanEnd) {
        if (scanEnd < length) throw tooLong(maxLineBytes);
        break;
      }
      if (lf === offset || data[lf - 1] !== CR) {
        throw new MemcacheProtocolError("reply line not terminated by \\r\\n");
      }
      const first = data[offset];
      if (
        first === 0x45 /* E */ &&
        lf - offset === 4 &&
        data[offset + 1] === 0x4e &&
        data[offset + 2] === 0x44
      ) {
        // "END": the most common line, without building a string.
        offset = lf + 1;
        this.handler.onLine("END");
      } else if (first === 0x56 /* V */ || first === 0x43 /* C */) {
        const start = lf + 1;
        let line = "";
        let size: number;
        if (lf - offset > 6 && isValuePrefix(data, offset)) {
          size = this.valueHeader(data, offset + 6, lf - 1);
        } else {
          line = data.toString("latin1", offset, lf - 1);
          size = this.blockHeader(line);
        }
        if (size >= 0) {
          const end = start + size;
          if (end + 2 <= length) {
            if (data[end] !== CR || data[end + 1] !== LF) throw badBlockEnd();
            this.emitBlock(data.subarray(start, end));
            if (this.stopped) return;
            offset = end + 2;
            continue;
          }
          // The block continues in later chunks: copy what is here into a buffer of its size.
          this.block = Buffer.allocUnsafe(size + 2);
          this.blockFilled = data.copy(this.block, 0, start, length);
          return;
        }
        offset = start;
        this.handler.onLine(line);
      } else {
        const line = commonLine(data, offset, lf - 1) ?? data.toString("latin1", offset, lf - 1);
        offset = lf + 1;
        this.handler.onLine(line);
      }
      if (this.stopped) return;
    }
    if (offset < length) {
      if (length - offset > maxLineBytes) throw tooLong(maxLineBytes);
      this.rest = data.subarray(offset);
    }
  }

  /** Copies chunk bytes into the pending block; returns how many bytes of chunk it used. */
  private fillBlock(chunk: Buffer): number {
    const block = this.block!;
    const used = chunk.copy(block, this.blockFilled, 0, block.length - this.blockFilled);
    this.blockFilled += used;
    if (this.blockFilled < block.length) return used;
    if (block[block.length - 2] !== CR || block[block.length - 1] !== LF) throw badBlockEnd();
    this.block = null;
    this.emitBlock(block.subarray(0, block.length - 2));
    return used;
  }

  /**
   * Parses `<key> <flags> <bytes> [<cas>]` of a VALUE line straight from the bytes (the hot path
   * of every get) and remembers the fields; returns the block size.
   */
  private valueHeader(data: Buffer, start: number, end: number): number {
    const keyEnd = data.indexOf(0x20, start);
    if (keyEnd <= start || keyEnd >= end) throw malformedBytes(data, start, end);
    let pos = keyEnd + 1;
    let flags = 0;
    let digits = 0;
    for (; pos < end && data[pos] !== 0x20; pos++, digits++) {
      const digit = data[pos]! - 48;
      if (digit < 0 || digit > 9) throw malformedBytes(data, start, end);
      flags = flags * 10 + digit;
    }
    if (digits === 0 || flags > MAX_FLAGS || pos >= end) throw malformedBytes(data, start, end);
    let size = 0;
    digits = 0;
    for (pos++; pos < end && data[pos] !== 0x20; pos++, digits++) {
      const digit = data[pos]! - 48;
      if (digit < 0 || digit > 9) throw malformedBytes(data, start, end);
      size = size * 10 + digit;
    }
    if (digits === 0 || digits > 15) throw malformedBytes(data, start, end);
    let cas: string | undefined;
    if (pos < end) {
      cas = data.toString("latin1", pos + 1, end);
      if (!isCas(cas)) throw malformedBytes(data, start, end);
    }
    this.blockKind = BLOCK_VALUE;
    this.blockKey = latin1(data, start, keyEnd);
    this.blockFlags = flags;
    this.blockCas = cas;
    return this.checkSize(size);
  }

  private checkSize(size: number): number {
    if (size > this.limits.maxReplyValueBytes) {
      throw new MemcacheProtocolError(
        `reply announces a ${size}-byte value, over maxReplyValueBytes (${this.limits.maxReplyValueBytes})`,
      );
    }
    return size;
  }

  /**
   * If `line` starts a VA or CONFIG data block, remembers its header fields and returns the block
   * size; otherwise returns -1. (VALUE headers are read by valueHeader().)
   */
  private blockHeader(line: string): number {
    let sizeField: string | undefined;
    if (line.startsWith("VA ")) {
      const space = line.indexOf(" ", 3);
      sizeField = space === -1 ? line.slice(3) : line.slice(3, space);
      this.blockKind = BLOCK_META;
      this.blockKey = space === -1 ? "" : line.slice(space + 1);
    } else if (line.startsWith("CONFIG ")) {
      const parts = line.split(" ");
      if (parts.length !== 4) throw malformed(line);
      this.blockKind = BLOCK_CONFIG;
      this.blockKey = parts[1]!;
      parseFlags(parts[2]!, line);
      sizeField = parts[3];
    } else {
      return -1;
    }
    return this.checkSize(parseUint(sizeField ?? "", line));
  }

  private emitBlock(data: Buffer): void {
    if (this.blockKind === BLOCK_VALUE) {
      this.handler.onValue(this.blockKey, this.blockFlags, data, this.blockCas);
    } else if (this.blockKind === BLOCK_META) {
      this.handler.onMetaValue(this.blockKey, data);
    } else {
      this.handler.onConfig(this.blockKey, data);
    }
  }
}

// The one-line replies of storage, delete, touch and meta commands, recognised from their bytes
// so that the common case builds no string; by length, then bytes.
const COMMON_LINES = new Map<number, Array<[Buffer, string]>>();
for (const line of [
  "STORED",
  "NOT_STORED",
  "EXISTS",
  "NOT_FOUND",
  "DELETED",
  "TOUCHED",
  "HD",
  "EN",
  "NF",
  "NS",
  "EX",
  "MN",
  "OK",
]) {
  const list = COMMON_LINES.get(line.length) ?? [];
  list.push([Buffer.from(line, "latin1"), line]);
  COMMON_LINES.set(line.length, list);
}

/** The reply line `data[start, end)` as a shared constant string if it is a common one. */
function commonLine(data: Buffer, start: number, end: number): string | undefined {
  const candidates = COMMON_LINES.get(end - start);
  if (candidates === undefined) return undefined;
  outer: for (const [bytes, line] of candidates) {
    for (let i = 0; i < bytes.length; i++) {
      if (data[start + i] !== bytes[i]) continue outer;
    }
    return line;
  }
  return undefined;
}

/** `data[start, end)` as a latin1 string; short ones (keys) without a call into C++. */
function latin1(data: Buffer, start: number, end: number): string {
  if (end - start > 32) return data.toString("latin1", start, end);
  let text = "";
  for (let i = start; i < end; i++) text += String.fromCharCode(data[i]!);
  return text;
}

/** A flags word is 32 bits (memcached's `client_flags_t`); more is not memcached talking. */
function parseFlags(text: string, line: string): number {
  const flags = parseUint(text, line);
  if (flags > MAX_FLAGS) throw malformed(line);
  return flags;
}

/** A CAS token: 1 to 20 decimal digits, at most 2^64 - 1. */
function isCas(text: string): boolean {
  if (text.length === 0 || text.length > 20) return false;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return false;
  }
  // Same length: decimal text compares as its number does.
  return text.length < 20 || text <= MAX_CAS_TEXT;
}

function parseUint(text: string, line: string): number {
  if (text.length === 0 || text.length > 20) throw malformed(line);
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) throw malformed(line);
    value = value * 10 + digit;
  }
  return value;
}

function isValuePrefix(data: Buffer, offset: number): boolean {
  return (
    data[offset] === 0x56 && // V (the caller also lets C through, for CONFIG)
    data[offset + 1] === 0x41 && // A
    data[offset + 2] === 0x4c && // L
    data[offset + 3] === 0x55 && // U
    data[offset + 4] === 0x45 && // E
    data[offset + 5] === 0x20
  );
}

function malformedBytes(data: Buffer, start: number, end: number): MemcacheProtocolError {
  return malformed(`VALUE ${data.toString("latin1", start, end)}`);
}

function malformed(line: string): MemcacheProtocolError {
  return new MemcacheProtocolError(`malformed reply header: ${JSON.stringify(line.slice(0, 120))}`);
}

function badBlockEnd(): MemcacheProtocolError {
  return new MemcacheProtocolError("data block not followed by \\r\\n (byte count does not match)");
}

function tooLong(max: number): MemcacheProtocolError {
  return new MemcacheProtocolError(`reply line longer than maxLineBytes (${max}) without \\r\\n`);
}

/** Meta reply: a two-letter code (HD, VA, EN, NF, NS, EX, MN) and its return flags. */
export interface MetaReply {
  code: string;
  /** Return flags by letter, e.g. `{ t: "59", c: "123", f: "1" }`; a flag without a token maps to "". */
  flags: Record<string, string>;
  /** The value block (only with code VA). */
  value?: Buffer;
}

/** Parses the flags part of a meta reply line (`t59 c123 W`) into a record. */
export function parseMetaFlags(text: string): Record<string, string> {
  const flags: Record<string, string> = {};
  if (text.length === 0) return flags;
  for (const token of text.split(" ")) {
    if (token.length > 0) flags[token[0]!] = token.slice(1);
  }
  return flags;
}
