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
  // One-shot hash (no Hash object): keys and node names are ASCII, so UTF-8 equals Latin-1 here.
  return hash("md5", text, "buffer").readUInt32LE(0);
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
