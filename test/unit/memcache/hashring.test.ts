// HashRing against libmemcached's weighted ketama: the published test vectors, and the properties
// consistent hashing is used for (balance, little movement when nodes join or leave). Placement
// against the real libmemcached (through pylibmc) is test/integration/hashring-libmemcached.test.ts.

import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  HashRing,
  ketamaHash,
  md5FirstWordAscii,
  type RingNode,
} from "../../../lib/memcache/hashring.ts";

interface Server {
  host: string;
  port: number;
  weight: number;
}

function md5(text: string): Buffer {
  return createHash("md5").update(text, "latin1").digest();
}

function ringOf(servers: readonly Server[]): HashRing<string> {
  return new HashRing(servers.map((server) => ({ ...server, value: idOf(server) })));
}

function idOf(server: { host: string; port: number }): string {
  return `${server.host}:${server.port}`;
}

/** Equal-weight servers named like ElastiCache nodes, all on 11211. */
function elastiCacheServers(count: number, first = 1): Server[] {
  return Array.from({ length: count }, (_, i) => ({
    host: `mycluster.abc123.${String(first + i).padStart(4, "0")}.use1.cache.amazonaws.com`,
    port: 11211,
    weight: 1,
  }));
}

function keys(count: number, prefix = "key:"): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

describe("libmemcached compatibility", () => {
  // Eight servers on 11211 with unequal weights and the expected owners of 20 keys, from
  // libmemcached's tests/ketama_test_cases.h (weighted ketama, MD5), the continuum libketama,
  // PHP memcached and pylibmc share.
  const weights = [600, 300, 200, 350, 1000, 800, 950, 100];
  const servers: Server[] = weights.map((weight, i) => ({
    host: `10.0.1.${i + 1}`,
    port: 11211,
    weight,
  }));
  const ring = new HashRing(servers.map((server) => ({ ...server, value: server.host })));

  const vectors: Array<[key: string, server: string]> = [
    ["SVa_]_V41)", "10.0.1.7"],
    ["*/Z;?V(.\\8", "10.0.1.1"],
    ["30C1*Z*S/_", "10.0.1.2"],
    ["ERR:EC58G>", "10.0.1.7"],
    ["1I=cTMNTKF", "10.0.1.5"],
    ["]VG<`I*Z8)", "10.0.1.5"],
    ["UUTC`-V159", "10.0.1.5"],
    ["@7RU6C6T+Z", "10.0.1.5"],
    ["/XLN0@+36;", "10.0.1.1"],
    ["4(`X;\\V.^c", "10.0.1.1"],
    ["726bW=9*a4", "10.0.1.7"],
    ["\\`)<B)UE,c", "10.0.1.1"],
    ["P1[Ma3=K1/", "10.0.1.8"],
    ["C89I.-V?cT", "10.0.1.8"],
    ["D[HE+cFXDK", "10.0.1.3"],
    ["P1L?NAB[)K", "10.0.1.1"],
    ["cDT0)Z5P6,", "10.0.1.5"],
    ["@JW`+[WAO8", "10.0.1.5"],
    ["\\39DKW^)N_", "10.0.1.3"],
    ["EM75N0+[X1", "10.0.1.4"],
  ];

  it.each(vectors)("puts %j on %s", (key, server) => {
    expect(ring.get(key)).toBe(server);
  });

  it.each([
    ["SVa_]_V41)", 443691461],
    ["ERR:EC58G>", 2148406511],
    ["P1[Ma3=K1/", 1989324036],
  ])("hashes %j to %d (first four bytes of MD5, little-endian)", (key, hash) => {
    expect(ketamaHash(key)).toBe(hash);
  });

  it("hashes like node:crypto's MD5 for random printable keys of every length 0..300", () => {
    // Lengths around 55/56 and 119/120 are where the padding spills into another block.
    let checked = 0;
    for (let length = 0; length <= 300; length++) {
      for (let sample = 0; sample < 20; sample++) {
        const key = Array.from(randomBytes(length), (byte) =>
          String.fromCharCode(0x21 + (byte % 94)),
        ).join("");
        expect(md5FirstWordAscii(key), JSON.stringify(key)).toBe(md5(key).readUInt32LE(0));
        checked++;
      }
    }
    expect(checked).toBe(301 * 20);
  });

  it("hashes ASCII control and space characters too (node names, bench keys)", () => {
    for (const text of ["", " ", "a b", "\t\r\n", "\x00\x7f", "host-0", "10.0.0.1:11212-159"]) {
      expect(md5FirstWordAscii(text)).toBe(md5(text).readUInt32LE(0));
    }
  });

  it("leaves text with non-ASCII characters to node:crypto, over its UTF-8 bytes", () => {
    for (const text of ["caf\u00e9", "\u{1f600}", `${"x".repeat(70)}\u0080`]) {
      expect(md5FirstWordAscii(text)).toBeUndefined();
      expect(ketamaHash(text)).toBe(
        createHash("md5").update(text, "utf8").digest().readUInt32LE(0),
      );
    }
  });

  it("wraps a hash past the last point to the owner of the ring's first point", () => {
    expect(ketamaHash("VDEAAAAA")).toBe(0xfffcd1b5);
    // The lowest point and the highest, computed independently of HashRing.
    let lowest = { point: Number.POSITIVE_INFINITY, host: "" };
    let highest = 0;
    const totalWeight = weights.reduce((sum, weight) => sum + weight, 0);
    for (const server of servers) {
      const groups = Math.floor((server.weight / totalWeight) * 40 * servers.length + 1e-10);
      for (let i = 0; i < groups; i++) {
        const digest = md5(`${server.host}-${i}`);
        for (let j = 0; j < 4; j++) {
          const point = digest.readUInt32LE(4 * j);
          if (point < lowest.point) lowest = { point, host: server.host };
          highest = Math.max(highest, point);
        }
      }
    }
    expect(highest).toBeLessThan(0xfffcd1b5); // so the key really is past the last point
    expect(ring.get("VDEAAAAA")).toBe(lowest.host);
  });
});

describe("properties", () => {
  it("returns undefined for every key on an empty ring", () => {
    const ring = new HashRing<string>([]);
    expect(ring.get("a")).toBeUndefined();
    expect(ring.get("VDEAAAAA")).toBeUndefined();
  });

  it("gives every key to the only node", () => {
    const ring = new HashRing([{ host: "10.0.0.1", port: 11211, value: "only" }]);
    const owners = new Set(keys(1000).map((key) => ring.get(key)));
    expect(owners).toEqual(new Set(["only"]));
  });

  // libmemcached-compatible ketama has 160 points per server, so a node's share of the ring
  // varies by about 1/sqrt(160) = 8%; the most loaded of 3..10 nodes lands around 1.07..1.16
  // times the mean. The project target is 1.10: measured values are logged here and in
  // `npm run bench:cluster`; the assertion is the bound the compatible algorithm can keep.
  it("keeps the busiest of 3..10 equal nodes within 1.20x the mean over 100,000 keys", () => {
    const all = keys(100_000);
    const imbalance: Record<number, number> = {};
    for (let count = 3; count <= 10; count++) {
      const ring = ringOf(elastiCacheServers(count));
      const perNode = new Map<string, number>();
      for (const key of all) {
        const owner = ring.get(key)!;
        perNode.set(owner, (perNode.get(owner) ?? 0) + 1);
      }
      expect(perNode.size).toBe(count);
      imbalance[count] = Math.max(...perNode.values()) / (all.length / count);
    }
    const worst = Math.max(...Object.values(imbalance));
    console.log(
      `ketama max/mean keys per node (target 1.10): ${Object.entries(imbalance)
        .map(([count, value]) => `${count}: ${value.toFixed(3)}`)
        .join(", ")}; worst ${worst.toFixed(3)}${worst > 1.1 ? " (target MISSED)" : ""}`,
    );
    expect(worst).toBeLessThanOrEqual(1.2);
  });

  it("moves about a fifth of the keys, all of them to the new node, when a 5th node joins 4", () => {
    const four = elastiCacheServers(4);
    const fifth = elastiCacheServers(1, 5)[0]!;
    const before = ringOf(four);
    const after = ringOf([...four, fifth]);
    const all = keys(100_000);
    let moved = 0;
    const movedElsewhere: string[] = [];
    for (const key of all) {
      const from = before.get(key);
      const to = after.get(key);
      if (from === to) continue;
      moved++;
      if (to !== idOf(fifth)) movedElsewhere.push(key);
    }
    const share = moved / all.length;
    console.log(`share of keys moved when a 5th node joins 4: ${share.toFixed(4)} (ideal 0.20)`);
    expect(movedElsewhere).toEqual([]);
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThanOrEqual(0.23);
  });

  it("moves only the removed node's keys when a node leaves", () => {
    const five = elastiCacheServers(5);
    const removed = five[2]!;
    const before = ringOf(five);
    const after = ringOf(five.filter((server) => server !== removed));
    let removedKeys = 0;
    const movedWrongly: string[] = [];
    for (const key of keys(100_000)) {
      const from = before.get(key);
      const to = after.get(key);
      if (from === idOf(removed)) {
        removedKeys++;
        if (to === idOf(removed)) movedWrongly.push(key);
      } else if (from !== to) {
        movedWrongly.push(key);
      }
    }
    expect(removedKeys).toBeGreaterThan(0);
    expect(movedWrongly).toEqual([]);
  });

  it("places nodes by host and port, so reordering the node list changes nothing", () => {
    const servers = elastiCacheServers(6);
    const forward = ringOf(servers);
    const backward = ringOf([...servers].reverse());
    const differing = keys(10_000).filter((key) => forward.get(key) !== backward.get(key));
    expect(differing).toEqual([]);
  });

  it("gives a node with twice the weight about twice the keys", () => {
    const nodes: RingNode<string>[] = [
      { host: "10.0.0.1", port: 11211, weight: 1, value: "light" },
      { host: "10.0.0.2", port: 11211, weight: 2, value: "heavy" },
      { host: "10.0.0.3", port: 11211, weight: 1, value: "other" },
    ];
    const ring = new HashRing(nodes);
    const counts = { light: 0, heavy: 0, other: 0 };
    for (const key of keys(100_000)) counts[ring.get(key) as keyof typeof counts]++;
    const ratio = counts.heavy / ((counts.light + counts.other) / 2);
    expect(ratio).toBeGreaterThan(1.6);
    expect(ratio).toBeLessThan(2.4);
  });
});
