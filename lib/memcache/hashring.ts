// Consistent hashing compatible with libmemcached's weighted ketama (MEMCACHED_DISTRIBUTION_
// CONSISTENT_KETAMA + MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, MD5), which is what PHP's memcached
// extension (Memcached::OPT_LIBKETAMA_COMPATIBLE), pylibmc ("ketama_weighted") and other
// libmemcached-based clients use, and which reproduces last.fm's original libketama continuum.
// So a key lands on the same node whichever of those clients reads it.
//
// The algorithm, as published:
//   - each server gets floor(weight / totalWeight * 40 * serverCount + 1e-10) * 4 points;
//   - for i in 0 .. points/4 - 1, md5("<host>-<i>") (port 11211) or md5("<host>:<port>-<i>")
//     gives 16 bytes = four little-endian uint32 points;
//   - a key's hash is the first four bytes of md5(key), little-endian;
//   - the key goes to the first point >= its hash, wrapping around to the first point.

import { hash } from "node:crypto";

export interface RingNode<T> {
  /** Host as configured (hostname or IP): part of the hashed point names. */
  host: string;
  port: number;
  /** Relative weight (default 1). */
  weight?: number;
  value: T;
}

const POINTS_PER_SERVER = 160;
const DEFAULT_PORT = 11211;

/**
 * How many 4-point groups a server gets. libmemcached computes this in single precision
 * (`float pct = w / W; floor((float)(pct * 160 / 4 * (float)n + 1e-10))`), where the 1e-10 is
 * lost in rounding; Math.fround reproduces each step, so e.g. 25 equal servers get 39 groups
 * (156 points), as there, not 40.
 */
export function pointGroups(weight: number, totalWeight: number, serverCount: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  const scaled = f(f(f(pct * POINTS_PER_SERVER) / 4) * f(serverCount));
  return Math.floor(f(scaled + 1e-10));
}

/** md5(text), first four bytes as a little-endian unsigned 32-bit number. */
export function ketamaHash(text: string): number {
  // Keys are printable ASCII (checked before routing), where a string's UTF-16 code units are
  // its bytes: MD5 in plain JS then needs no Buffer and no call into C++ (~5x faster than
  // node:crypto for a short key). Anything else takes node:crypto over its UTF-8 bytes.
  return md5FirstWordAscii(text) ?? hash("md5", text, "buffer").readUInt32LE(0);
}

// ---- MD5 (RFC 1321) of ASCII text, first word of the digest only ----

// One block's 16 message words and the running digest, reused (JS runs one call at a time).
const words = new Int32Array(16);
const state = new Int32Array(4);

/**
 * md5(text)'s first four bytes as a little-endian uint32, or undefined when `text` holds a code
 * unit above 0x7f (then its UTF-8 bytes differ from its code units; node:crypto handles it).
 * Checked against node:crypto on random keys of every length 0..300 in hashring.test.ts.
 */
export function md5FirstWordAscii(text: string): number | undefined {
  const length = text.length;
  // Padding: 0x80, zeros, then the length in bits in the last 8 bytes of the final block.
  const blocks = ((length + 8) >>> 6) + 1;
  state[0] = 0x67452301;
  state[1] = 0xefcdab89;
  state[2] = 0x98badcfe;
  state[3] = 0x10325476;
  for (let n = 0; n < blocks; n++) {
    const base = n << 6;
    for (let w = 0; w < 16; w++) {
      const i = base + (w << 2);
      if (i + 3 < length) {
        const c0 = text.charCodeAt(i);
        const c1 = text.charCodeAt(i + 1);
        const c2 = text.charCodeAt(i + 2);
        const c3 = text.charCodeAt(i + 3);
        if ((c0 | c1 | c2 | c3) > 0x7f) return undefined;
        words[w] = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
      } else {
        let word = 0;
        for (let byte = 0; byte < 4; byte++) {
          const j = i + byte;
          let code = 0;
          if (j < length) {
            code = text.charCodeAt(j);
            if (code > 0x7f) return undefined;
          } else if (j === length) {
            code = 0x80;
          }
          word |= code << (byte << 3);
        }
        words[w] = word;
      }
    }
    if (n === blocks - 1) {
      words[14] = length << 3;
      words[15] = length >>> 29;
    }
    compress();
  }
  return state[0]! >>> 0;
}

/** Per-step additive constants: floor(|sin(i + 1)| * 2^32). */
const K = Int32Array.from({ length: 64 }, (_, i) =>
  Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32),
);
/** Left rotations, four per round. */
const R = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/** One MD5 block: mixes `words` into `state`; one loop per round, so no branch per step. */
function compress(): void {
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let t: number;
  for (let i = 0; i < 16; i++) {
    t = (a + ((b & c) | (~b & d)) + K[i]! + words[i]!) | 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotate(t, R[i & 3]!)) | 0;
  }
  for (let i = 16; i < 32; i++) {
    t = (a + ((d & b) | (~d & c)) + K[i]! + words[(5 * i + 1) & 15]!) | 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotate(t, R[4 + (i & 3)]!)) | 0;
  }
  for (let i = 32; i < 48; i++) {
    t = (a + (b ^ c ^ d) + K[i]! + words[(3 * i + 5) & 15]!) | 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotate(t, R[8 + (i & 3)]!)) | 0;
  }
  for (let i = 48; i < 64; i++) {
    t = (a + (c ^ (b | ~d)) + K[i]! + words[(7 * i) & 15]!) | 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotate(t, R[12 + (i & 3)]!)) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
}

function rotate(x: number, bits: number): number {
  return (x << bits) | (x >>> (32 - bits));
}

export class HashRing<T> {
  readonly nodes: readonly RingNode<T>[];
  private readonly points: Uint32Array;
  private readonly owners: T[];

  constructor(nodes: readonly RingNode<T>[]) {
    this.nodes = nodes;
    const totalWeight = nodes.reduce((sum, node) => sum + (node.weight ?? 1), 0);
    const entries: Array<{ point: number; owner: T }> = [];
    for (const node of nodes) {
      const hashes = pointGroups(node.weight ?? 1, totalWeight, nodes.length);
      const name = node.port === DEFAULT_PORT ? node.host : `${node.host}:${node.port}`;
      for (let i = 0; i < hashes; i++) {
        const digest = hash("md5", `${name}-${i}`, "buffer");
        for (let j = 0; j < 4; j++)
          entries.push({ point: digest.readUInt32LE(j * 4), owner: node.value });
      }
    }
    entries.sort((a, b) => a.point - b.point);
    this.points = Uint32Array.from(entries, (entry) => entry.point);
    this.owners = entries.map((entry) => entry.owner);
  }

  /** The node for `key`, or undefined for an empty ring. */
  get(key: string): T | undefined {
    return this.owners[this.indexFor(ketamaHash(key))];
  }

  /** Index of the first point >= hash, wrapping to 0. */
  private indexFor(hash: number): number {
    const points = this.points;
    let low = 0;
    let high = points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (points[middle]! < hash) low = middle + 1;
      else high = middle;
    }
    return low === points.length ? 0 : low;
  }
}
