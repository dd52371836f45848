// Key placement against the real libmemcached, through pylibmc with behaviors
// {"ketama_weighted": True} (the README's setting): memcached_generate_hash() names the server
// libmemcached would send each key to, without connecting, so any host names and ports can be
// compared — 11211 (hashed as "host-i") and others ("host:port-i"), weights, many servers. Then
// the same through real memcached processes: what one side stores, the other finds.

import { randomBytes } from "node:crypto";
import { afterAll, describe, expect } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { HashRing } from "../../lib/memcache/hashring.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";
import { type PythonAgent, py } from "../helpers/python.ts";

interface Server {
  host: string;
  port: number;
  weight: number;
}

/** The Python agent, from the fixtures. */
let python: PythonAgent;

it.beforeAll(({ python: agent }) => {
  python = agent;
});

/** Printable ASCII without space: the characters a memcached key may hold. */
function randomKeys(count: number): string[] {
  return Array.from({ length: count }, (_, i) =>
    [...randomBytes(1 + (i % 60))].map((b) => String.fromCharCode(0x21 + (b % 94))).join(""),
  );
}

const spec = (server: Server) => `${server.host}:${server.port}:${server.weight}`;

/** Keys our ring places on another server than libmemcached does. */
async function disagreements(
  servers: readonly Server[],
  keys: readonly string[],
  behaviors?: Record<string, unknown>,
): Promise<string[]> {
  const ring = new HashRing(servers.map((server, index) => ({ ...server, value: index })));
  const theirs = await python.ring(servers.map(spec), [...keys], behaviors);
  return keys.filter((key, i) => ring.get(key) !== theirs[i]);
}

const equal = (hosts: string[], port = 11211): Server[] =>
  hosts.map((host) => ({ host, port, weight: 1 }));
const elastiCache = (count: number): Server[] =>
  equal(
    Array.from(
      { length: count },
      (_, i) => `mycluster.abc123.${String(i + 1).padStart(4, "0")}.use1.cache.amazonaws.com`,
    ),
  );

const rings: Array<[string, Server[]]> = [
  [
    "libmemcached's test-vector ring (8 servers on 11211, weights 600..100)",
    [600, 300, 200, 350, 1000, 800, 950, 100].map((weight, i) => ({
      host: `10.0.1.${i + 1}`,
      port: 11211,
      weight,
    })),
  ],
  ["3 ElastiCache nodes on 11211", elastiCache(3)],
  ["10 ElastiCache nodes on 11211", elastiCache(10)],
  ["25 equal servers (libmemcached's single-precision count: 156 points each)", elastiCache(25)],
  [
    "weights 7,3,4,9,2",
    [7, 3, 4, 9, 2].map((weight, i) => ({ host: `10.0.2.${i + 1}`, port: 11211, weight })),
  ],
  [
    "loopback on other ports",
    [20001, 20002, 20003].map((port) => ({ host: "127.0.0.1", port, weight: 1 })),
  ],
  [
    "host names on mixed ports, unequal weights",
    [
      { host: "cache-a.example.com", port: 11211, weight: 5 },
      { host: "cache-b.example.com", port: 11212, weight: 1 },
      { host: "cache-c.example.com", port: 11211, weight: 2 },
      { host: "10.0.0.9", port: 6000, weight: 7 },
      { host: "cache-e.example.com", port: 11213, weight: 3 },
    ],
  ],
];

describe("HashRing against libmemcached (pylibmc, ketama_weighted)", () => {
  it.each(rings)("places 5,000 random keys where libmemcached does: %s", async (_what, servers) => {
    expect(await disagreements(servers, randomKeys(5_000))).toEqual([]);
  });

  it("is checked by a comparison that can fail: unweighted ketama (100 points) disagrees", async () => {
    const servers = elastiCache(3);
    const keys = randomKeys(2_000);
    const differ = await disagreements(servers, keys, { ketama: true });
    expect(differ.length).toBeGreaterThan(100);
  });
});

describe("through real memcached processes", () => {
  let nodes: MemcachedProcess[];
  let client: MemcacheClient;
  let endpoints: string[];

  it.beforeAll(async ({ spawnFileMemcached }) => {
    nodes = await Promise.all([spawnFileMemcached(), spawnFileMemcached(), spawnFileMemcached()]);
    endpoints = nodes.map((node) => node.endpoint);
    client = new MemcacheClient({ servers: endpoints, timeoutMs: patientTimeoutMs });
  });

  afterAll(() => {
    client?.close();
  });

  const keys = Array.from({ length: 300 }, (_, i) => `ring:${i}`);

  it("pylibmc finds every key Node stored on 3 nodes, and on the same node", async () => {
    await Promise.all(keys.map((key) => client.set(key, `from node ${key}`)));
    const found = await python.request<Record<string, unknown>>({
      op: "get_many",
      client: "pylibmc",
      servers: endpoints,
      keys,
    });
    expect(Object.keys(found).sort()).toEqual([...keys].sort());
    // Each node holds exactly the keys our ring gives it.
    for (const [index, node] of nodes.entries()) {
      const single = new MemcacheClient({ servers: node.endpoint, timeoutMs: 2_000 });
      const held = await single.getMany(keys);
      single.close();
      const expected = keys.filter((key) => client.cluster.nodeFor(key) === client.nodes[index]);
      expect([...held.keys()].sort()).toEqual(expected.sort());
    }
  });

  it("Node finds every key pylibmc stored on 3 nodes", async () => {
    const items = Object.fromEntries(
      keys.map((key) => [`${key}:py`, py.str(`from python ${key}`)]),
    );
    await python.request({ op: "set_many", client: "pylibmc", servers: endpoints, items });
    const found = await client.getMany(Object.keys(items));
    expect(found.size).toBe(keys.length);
    expect(found.get("ring:7:py")).toBe("from python ring:7");
  });
});
