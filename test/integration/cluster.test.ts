// A client over a cluster found by Auto Discovery: three real memcached processes behind a
// stand-in configuration endpoint (test/helpers/discovery-server.ts). Keys spread by the ring,
// nodes join and leave on a version bump (lazily, on the first command after the refresh
// interval), bad discovery replies change nothing, a plain memcached endpoint means static mode,
// getMany is one round trip per node, dead nodes are not remapped, and discovered hostnames are
// what TLS verifies.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { setTimeout as delay } from "node:timers/promises";
import tls from "node:tls";
import { afterAll, afterEach, describe, expect, vi } from "vitest";
import { type ClientOptions, MemcacheClient } from "../../lib/memcache/client.ts";
import type { Connection } from "../../lib/memcache/connection.ts";
import {
  MemcacheConnectionClosedError,
  MemcacheDiscoveryError,
  type MemcacheError,
  MemcacheNodeDeadError,
  MemcacheProtocolError,
  MemcacheTimeoutError,
  MemcacheUnknownCommandError,
} from "../../lib/memcache/errors.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import type { TestCertificates } from "../../tools/tls.ts";
import { counters, describeError, rejection, timed } from "../helpers/client.ts";
import {
  clusterConfigReply,
  type DiscoveryServer,
  startDiscoveryServer,
} from "../helpers/discovery-server.ts";
import { it } from "../helpers/fixtures.ts";

/** Refresh interval of the clients that watch for node changes. */
const REFRESH_MS = 200;

/** The file's three memcached processes (from the fixtures; stopped when the file ends). */
let nodes: MemcachedProcess[] = [];
let discovery: DiscoveryServer;
const clients: MemcacheClient[] = [];
/** The config version last advertised: every change bumps it, as ElastiCache does. */
let version = 0;

it.beforeAll(async ({ spawnFileMemcached }) => {
  [nodes, discovery] = await Promise.all([
    Promise.all([spawnFileMemcached(), spawnFileMemcached(), spawnFileMemcached()]),
    startDiscoveryServer(),
  ]);
});

afterEach(() => {
  vi.restoreAllMocks();
  for (const client of clients.splice(0)) client.close();
  discovery.answerNormally();
});

afterAll(async () => {
  await discovery?.close();
});

/** Makes the discovery endpoint list `processes` under a new config version. */
function advertise(processes: readonly MemcachedProcess[], server = discovery): void {
  version++;
  server.setNodes(
    version,
    processes.map((memcached) => ({ host: "127.0.0.1", ip: "127.0.0.1", port: memcached.port })),
  );
}

/** A client whose nodes come from the discovery endpoint. */
function clusterClient(options: Partial<ClientOptions> = {}): MemcacheClient {
  const client = new MemcacheClient({
    configEndpoint: discovery.endpoint,
    timeoutMs: 1000,
    connectTimeoutMs: 1000,
    ...options,
  });
  clients.push(client);
  return client;
}

/** A client of one memcached process only: sees what that node holds. */
function nodeClient(memcached: MemcachedProcess): MemcacheClient {
  const client = new MemcacheClient({ servers: memcached.endpoint, timeoutMs: 1000 });
  clients.push(client);
  return client;
}

function keysFor(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}:${i}`);
}

function ownedBy(client: MemcacheClient, keys: readonly string[], memcached: MemcachedProcess) {
  return keys.filter((key) => client.cluster.nodeFor(key).port === memcached.port);
}

/** The keys among `keys` that `memcached` holds, sorted. */
async function heldBy(memcached: MemcachedProcess, keys: readonly string[]): Promise<string[]> {
  return [...(await nodeClient(memcached).getMany(keys)).keys()].sort();
}

function nodeCounters<const K extends string>(memcached: MemcachedProcess, names: readonly K[]) {
  return counters(nodeClient(memcached), names);
}

/**
 * Runs `poke` (a command, which is what lets a lazy refresh start) until `condition` holds;
 * fails after `timeoutMs` naming `what` it waited for.
 */
async function pokeUntil(
  what: string,
  condition: () => boolean,
  poke: () => Promise<unknown>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await poke().catch(() => {});
    if (condition()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

function ports(connections: readonly Connection[]): number[] {
  return connections.map((connection) => connection.port).sort((a, b) => a - b);
}

function portsOf(processes: readonly MemcachedProcess[]): number[] {
  return processes.map((memcached) => memcached.port).sort((a, b) => a - b);
}

describe("keys over discovered nodes", () => {
  it("stores each key on the node the ring names, spread over all three, and reads all back", async () => {
    advertise(nodes);
    const client = clusterClient();
    const keys = keysFor("spread", 300);
    const stored = await Promise.all(keys.map((key) => client.set(key, `value of ${key}`)));
    expect(stored.every(Boolean)).toBe(true);
    expect(ports(client.nodes)).toEqual(portsOf(nodes));

    for (const node of nodes) {
      const expected = ownedBy(client, keys, node);
      expect(expected.length).toBeGreaterThan(0);
      expect(await heldBy(node, keys)).toEqual(expected.sort());
    }

    const all = await client.getMany<string>(keys);
    expect(all.size).toBe(300);
    for (const key of keys) expect(all.get(key)).toBe(`value of ${key}`);
  });
});

describe("node changes from Auto Discovery", () => {
  it("uses a 4th node after a version bump once the refresh interval has passed, keeping the open connections", async ({
    spawnMemcached: startExtra,
  }) => {
    advertise(nodes);
    const client = clusterClient({ refreshIntervalMs: REFRESH_MS });
    await Promise.all(keysFor("grow:before", 60).map((key) => client.set(key, key)));
    const before = [...client.nodes];
    expect(ports(before)).toEqual(portsOf(nodes));
    expect(before.every((node) => node.isOpen)).toBe(true);

    const fourth = await startExtra();
    const requestsBefore = discovery.requests;
    advertise([...nodes, fourth]);
    await pokeUntil(
      "the client to list 4 nodes",
      () => client.nodes.length === 4,
      () => client.get("grow:probe"),
    );
    expect(discovery.requests).toBeGreaterThan(requestsBefore);
    expect(ports(client.nodes)).toEqual(portsOf([...nodes, fourth]));

    for (const old of before) {
      const now = client.nodes.find((node) => node.port === old.port);
      expect(now).toBe(old);
      expect(old.isOpen).toBe(true);
    }

    const keys = keysFor("grow:after", 200);
    await Promise.all(keys.map((key) => client.set(key, key)));
    const onFourth = ownedBy(client, keys, fourth);
    expect(onFourth.length).toBeGreaterThan(0);
    expect(await heldBy(fourth, keys)).toEqual(onFourth.sort());
    expect((await client.getMany(keys)).size).toBe(200);
  });

  it("stops sending to a node removed by a version bump and closes its connection", async () => {
    advertise(nodes);
    const client = clusterClient({ refreshIntervalMs: REFRESH_MS });
    const [kept1, kept2, removed] = nodes as [MemcachedProcess, MemcachedProcess, MemcachedProcess];
    await Promise.all(keysFor("shrink:before", 60).map((key) => client.set(key, key)));
    const removedConnection = client.nodes.find((node) => node.port === removed.port)!;
    expect(removedConnection.isOpen).toBe(true);

    // Poke with a key of a kept node: a request in flight to the removed node when the refresh
    // closes its connection may still reach memcached after the counters below are read.
    const probe = keysFor("shrink:probe", 50).find(
      (key) => client.cluster.nodeFor(key).port !== removed.port,
    )!;
    advertise([kept1, kept2]);
    await pokeUntil(
      "the client to list 2 nodes",
      () => client.nodes.length === 2,
      () => client.get(probe),
    );
    expect(ports(client.nodes)).toEqual(portsOf([kept1, kept2]));
    expect(removedConnection.isOpen).toBe(false);

    const names = ["cmd_get", "cmd_set"] as const;
    const removedBefore = await nodeCounters(removed, names);
    const keptBefore = await Promise.all([kept1, kept2].map((n) => nodeCounters(n, names)));
    const keys = keysFor("shrink:after", 200);
    await Promise.all(keys.map((key) => client.set(key, key)));
    expect((await client.getMany(keys)).size).toBe(200);
    // Keys the removed node owned before now live elsewhere: reading them is a miss, not an error.
    await client.getMany(keysFor("shrink:before", 60));

    expect(await nodeCounters(removed, names)).toEqual(removedBefore);
    const keptAfter = await Promise.all([kept1, kept2].map((n) => nodeCounters(n, names)));
    const setsOnKept = keptAfter.reduce((sum, c, i) => sum + c.cmd_set - keptBefore[i]!.cmd_set, 0);
    expect(setsOnKept).toBe(200);
  });

  it("refreshes lazily: not while idle past the interval, then once on the next command", async () => {
    advertise(nodes);
    const client = clusterClient({ refreshIntervalMs: REFRESH_MS });
    await client.set("lazy:a", "a");
    const afterFirst = discovery.requests;
    // Proving that nothing happens needs a pause: no command for 1.5 intervals, so no refresh
    // (a frozen Lambda runs no timers, so the client must not rely on one).
    await delay(REFRESH_MS * 1.5);
    expect(discovery.requests).toBe(afterFirst);
    await pokeUntil(
      "a refresh after the interval",
      () => discovery.requests > afterFirst,
      () => client.get("lazy:a"),
    );
    expect(discovery.requests).toBe(afterFirst + 1);
    expect(client.discovery!.lastError).toBeUndefined();
  });
});

/**
 * The outcome of every refresh the client starts, with lastError as it stood right then (a
 * refresh the next command starts may clear it again before a poll would look).
 */
function recordRefreshFailures(
  client: MemcacheClient,
): Array<{ error: Error | undefined; lastError: Error | undefined }> {
  const discovered = client.discovery!;
  const outcomes: Array<{ error: Error | undefined; lastError: Error | undefined }> = [];
  const refresh = discovered.refresh.bind(discovered);
  vi.spyOn(discovered, "refresh").mockImplementation(() => {
    const pending = refresh();
    pending.then(
      () => outcomes.push({ error: undefined, lastError: discovered.lastError }),
      (error: Error) => outcomes.push({ error, lastError: discovered.lastError }),
    );
    return pending;
  });
  return outcomes;
}

describe("a discovery reply that cannot be applied", () => {
  /** Scripts the bad answer; returns the expected error class and message. */
  type Fault = (server: DiscoveryServer) => void;
  const faults: Array<
    [what: string, fault: Fault, errorClass: typeof MemcacheError, message: RegExp]
  > = [
    [
      "a byte count larger than the block (reply never completes)",
      (server) => {
        const good = server.configReply().toString("latin1");
        server.answerRaw(
          good.replace(/^CONFIG cluster 0 (\d+)/, (_, n) => `CONFIG cluster 0 ${Number(n) + 20}`),
        );
      },
      MemcacheTimeoutError,
      /did not answer "config" within \d+ ms/,
    ],
    [
      "a byte count smaller than the block",
      (server) => {
        const good = server.configReply().toString("latin1");
        server.answerRaw(
          good.replace(/^CONFIG cluster 0 (\d+)/, (_, n) => `CONFIG cluster 0 ${Number(n) - 5}`),
        );
      },
      MemcacheProtocolError,
      /memcached 127\.0\.0\.1:\d+: /,
    ],
    [
      "a block without END",
      (server) => server.answerRaw(server.configReply().subarray(0, -"END\r\n".length)),
      MemcacheTimeoutError,
      /did not answer "config" within \d+ ms/,
    ],
    [
      "garbage",
      (server) => server.answerRaw("HELLO THERE\r\n"),
      MemcacheProtocolError,
      /unexpected reply "HELLO THERE" to "config"/,
    ],
    [
      "a well-framed block with a malformed node entry",
      (server) =>
        server.answerRaw(
          clusterConfigReply(version + 1, [{ host: "bad_host", ip: "127.0.0.1", port: 1 }]),
        ),
      MemcacheDiscoveryError,
      /malformed Auto Discovery node entry "bad_host\|127\.0\.0\.1\|1"/,
    ],
    [
      "a lower config version than the one in use",
      (server) =>
        server.setNodes(version - 1, [
          { host: "127.0.0.1", ip: "127.0.0.1", port: nodes[0]!.port },
        ]),
      MemcacheDiscoveryError,
      /config version \d+, older than \d+ in use; ignored/,
    ],
    [
      "ERROR after the nodes are known",
      (server) => server.answerError(),
      MemcacheUnknownCommandError,
      /answered "config" with ERROR/,
    ],
  ];

  it.each(faults)(
    "keeps the node list and working commands on %s, recording the error",
    async (_what, fault, errorClass, message) => {
      advertise(nodes);
      const client = clusterClient({ refreshIntervalMs: REFRESH_MS, timeoutMs: 300 });
      await Promise.all(keysFor("fault:before", 30).map((key) => client.set(key, key)));
      const before = [...client.nodes];
      const versionBefore = client.discovery!.version;
      const failures = recordRefreshFailures(client);

      fault(discovery);
      await pokeUntil(
        "a refresh to settle",
        () => failures.length > 0,
        () => client.get("fault:probe"),
      );
      // The first refresh after the fault is the one that read it.
      const [first] = failures;
      expect(first?.error).toBeInstanceOf(errorClass);
      expect(first?.error?.message).toMatch(message);
      expect(first?.lastError).toBe(first?.error);
      expect(client.discovery!.version).toBe(versionBefore);
      expect(client.discovery!.mode).toBe("discovering");
      expect(client.nodes).toHaveLength(before.length);
      for (const [i, node] of client.nodes.entries()) expect(node).toBe(before[i]);
      expect(await client.set("fault:after", "still works")).toBe(true);
      expect(await client.get("fault:after")).toBe("still works");
      expect((await client.getMany(keysFor("fault:before", 30))).size).toBe(30);

      // The next good answer is applied and clears the error.
      discovery.answerNormally();
      advertise(nodes);
      await pokeUntil(
        "a good refresh",
        () => client.discovery!.version === version,
        () => client.get("fault:probe"),
      );
      expect(client.discovery!.lastError).toBeUndefined();
    },
  );
});

describe("static mode", () => {
  it("uses the endpoint itself as the only node when it answers ERROR to config get cluster", async () => {
    const plain = nodes[0]!;
    const client = new MemcacheClient({ configEndpoint: plain.endpoint, timeoutMs: 1000 });
    clients.push(client);
    // Several first commands at once: all wait for the one discovery, then run.
    const stored = await Promise.all(
      keysFor("static", 10).map((key) => client.set(key, `static ${key}`)),
    );
    expect(stored.every(Boolean)).toBe(true);
    expect(client.discovery!.mode).toBe("static");
    expect(client.nodes.map((node) => node.endpoint)).toEqual([plain.endpoint]);
    expect(await client.get("static:3")).toBe("static static:3");
    expect(await nodeClient(plain).get("static:3")).toBe("static static:3");
  });
});

describe("getMany over three nodes", () => {
  it("sends one request per node and each node is asked exactly for its own keys", async () => {
    advertise(nodes);
    const client = clusterClient();
    const keys = keysFor("many", 100);
    await Promise.all(keys.map((key) => client.set(key, key)));
    const names = ["cmd_get", "get_hits", "get_misses"] as const;
    const before = await Promise.all(nodes.map((node) => nodeCounters(node, names)));
    const sends = client.nodes.map((node) => vi.spyOn(node, "send"));

    const values = await client.getMany<string>(keys);

    expect(values.size).toBe(100);
    for (const key of keys) expect(values.get(key)).toBe(key);
    for (const send of sends) expect(send).toHaveBeenCalledTimes(1);
    const after = await Promise.all(nodes.map((node) => nodeCounters(node, names)));
    let total = 0;
    nodes.forEach((node, i) => {
      const own = ownedBy(client, keys, node).length;
      const cmdGet = after[i]!.cmd_get - before[i]!.cmd_get;
      const looked =
        after[i]!.get_hits + after[i]!.get_misses - before[i]!.get_hits - before[i]!.get_misses;
      expect({ node: node.port, cmdGet, looked }).toEqual({
        node: node.port,
        cmdGet: own,
        looked: own,
      });
      total += looked;
    });
    expect(total).toBe(100);
  });
});

describe("a dead node", () => {
  it("fails its keys fast with MemcacheNodeDeadError and does not remap them (documented), while other nodes keep working", async ({
    spawnMemcached: startExtra,
  }) => {
    const victim = await startExtra();
    const [live1, live2] = nodes as [MemcachedProcess, MemcachedProcess];
    advertise([live1, live2, victim]);
    const failuresBeforeDead = 2;
    const client = clusterClient({
      failuresBeforeDead,
      deadRetryMs: 10_000,
      timeoutMs: 500,
      connectTimeoutMs: 500,
    });
    const keys = keysFor("dead", 200);
    await Promise.all(keys.map((key) => client.set(key, key)));
    const victimKeys = ownedBy(client, keys, victim);
    const liveKeys = keys.filter((key) => !victimKeys.includes(key));
    expect(victimKeys.length).toBeGreaterThan(0);

    await victim.kill("SIGKILL");
    for (let i = 0; i < failuresBeforeDead; i++) {
      const error = rejection((await timed(() => client.get(victimKeys[0]!))).result);
      expect(error).toBeInstanceOf(MemcacheConnectionClosedError);
    }
    const victimConnection = client.cluster.nodeFor(victimKeys[0]!);
    expect(victimConnection.port).toBe(victim.port);
    expect(victimConnection.isDead).toBe(true);

    for (const key of victimKeys.slice(0, 5)) {
      const { ms, result } = await timed(() => client.get(key));
      expect(rejection(result)).toBeInstanceOf(MemcacheNodeDeadError);
      expect(ms).toBeLessThan(50); // refused without contacting it (README: under 50 ms)
    }

    // Not remapped: a set of the dead node's key fails, and no live node receives it.
    const liveBefore = await Promise.all([live1, live2].map((n) => nodeCounters(n, ["cmd_set"])));
    const { result } = await timed(() => client.set(victimKeys[0]!, "moved?"));
    expect(rejection(result)).toBeInstanceOf(MemcacheNodeDeadError);
    const liveAfter = await Promise.all([live1, live2].map((n) => nodeCounters(n, ["cmd_set"])));
    expect(liveAfter).toEqual(liveBefore);
    for (const live of [live1, live2]) {
      expect(await nodeClient(live).get(victimKeys[0]!)).toBeUndefined();
    }

    const values = await client.getMany<string>(liveKeys);
    expect(values.size).toBe(liveKeys.length);
    // Every key, the dead node's among them: the live nodes' hits, the dead node's keys absent.
    const all = await client.getMany<string>(keys);
    expect([...all.keys()].sort()).toEqual([...liveKeys].sort());
    for (const key of liveKeys) expect(all.get(key)).toBe(key);
    // Only the dead node's keys: no node answered, so the call fails rather than read as misses.
    await expect(client.getMany(victimKeys)).rejects.toBeInstanceOf(MemcacheNodeDeadError);
    expect(await client.set(liveKeys[0]!, "updated")).toBe(true);
    expect(await client.get(liveKeys[0]!)).toBe("updated");
  });
});

describe("TLS with discovered hostnames", () => {
  let certs: TestCertificates;
  let tlsNode: MemcachedProcess;
  let tlsDiscovery: DiscoveryServer;

  it.beforeAll(async ({ certs: testCerts, tlsMemcached }) => {
    certs = testCerts;
    tlsNode = tlsMemcached;
    tlsDiscovery = await startDiscoveryServer({
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    });
  });

  afterAll(async () => {
    await tlsDiscovery?.close();
  });

  /** A TLS client of the TLS discovery endpoint; records every name a certificate is checked against. */
  function tlsClient(checkedNames: string[]): MemcacheClient {
    const client = new MemcacheClient({
      configEndpoint: tlsDiscovery.endpoint,
      timeoutMs: 1000,
      connectTimeoutMs: 1000,
      tls: {
        ca: certs.caPem,
        checkServerIdentity: (host, cert) => {
          checkedNames.push(host);
          return tls.checkServerIdentity(host, cert);
        },
      },
    });
    clients.push(client);
    return client;
  }

  it("connects to the discovered IP and verifies the certificate against the discovered hostname", async () => {
    version++;
    tlsDiscovery.setNodes(version, [
      { host: "memcached.test", ip: "127.0.0.1", port: tlsNode.port },
    ]);
    const checked: string[] = [];
    const client = tlsClient(checked);
    expect(await client.set("tls:cluster", "secret")).toBe(true);
    expect(await client.get("tls:cluster")).toBe("secret");
    expect(client.nodes.map((node) => [node.host, node.address, node.port])).toEqual([
      ["memcached.test", "127.0.0.1", tlsNode.port],
    ]);
    expect(checked).toContain("memcached.test");
  });

  it("refuses a discovered node whose hostname is not on its certificate, naming the altnames", async () => {
    version++;
    tlsDiscovery.setNodes(version, [{ host: "wrong.test", ip: "127.0.0.1", port: tlsNode.port }]);
    const checked: string[] = [];
    const client = tlsClient(checked);
    const error = rejection((await timed(() => client.set("tls:wrong", "x"))).result);
    expect(error).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(describeError(error)).toMatch(/altnames/);
    expect(describeError(error)).toMatch(/wrong\.test/);
    expect(checked).toContain("wrong.test");
  });
});
