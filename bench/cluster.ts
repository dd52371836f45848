// Cluster benchmark (`npm run bench:cluster`): how evenly libmemcached-compatible ketama spreads
// keys over ElastiCache-like nodes, how many keys move when a node joins, and how getMany of 100
// keys performs over 3 real memcached nodes beside 1 node. The getMany rounds are interleaved
// (order rotated each round, subjects take short turns) and reported as medians, each ratio the
// median of per-round ratios. Prints a table and writes bench/results/cluster.json. Exit code 1
// only for a wrong reply; a missed target is reported as MISSED. The ring is measured as it is:
// the algorithm is fixed by compatibility (160 points per server), not tuned to the target.

import { hash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { HashRing } from "../lib/memcache/hashring.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { formatTable, median, pairedRatio, rotated, round, verdict } from "../tools/stats.ts";

const settings = {
  /** Keys spread over the ring for the imbalance and remap measurements. */
  ringKeys: 100_000,
  /** Node counts measured for imbalance. */
  minNodes: 3,
  maxNodes: 10,
  /** Keys per getMany call. */
  keysPerCall: 100,
  /** Interleaved rounds; every reported ops/s is the median over them. */
  rounds: 7,
  /** Timed sequential getMany calls per subject per round. */
  seqCalls: 600,
  /** getMany calls in flight in the concurrent runs. */
  concurrency: 8,
  /** Timed batches of `concurrency` calls per subject per round. */
  concBatches: 120,
  /** Calls (or batches) a subject makes before the other takes its turn. */
  turn: 20,
  /** Untimed calls per subject at the start of each round (JIT, socket buffers). */
  warmupCalls: 50,
  /** Size of each value, in bytes. */
  valueBytes: 100,
  /** memcached worker threads per process (3 + 1 processes on what may be a 2-core machine). */
  memcachedThreads: 1,
  /** Client request timeout, in ms: generous, so a busy machine does not fail a run. */
  timeoutMs: 2000,
  connectTimeoutMs: 2000,
};

const targets = { imbalance: 1.1, remapOnAdd: 0.23, routingUsPerKey: 0.5 };
const resultsFile = new URL("./results/cluster.json", import.meta.url);

/** A reply that is not the seeded items: the run is void. */
class WrongReplyError extends Error {
  override name = "WrongReplyError";
}

// ---- the ring ----

/** Node names as ElastiCache gives them: <cluster>.<id>.<node>.<region>.cache.amazonaws.com */
function elastiCacheHost(node: number): string {
  return `mycluster.abc123.${String(node).padStart(4, "0")}.use1.cache.amazonaws.com`;
}

function ringOver(nodes: readonly number[]): HashRing<number> {
  return new HashRing(
    nodes.map((node) => ({ host: elastiCacheHost(node), port: 11211, value: node })),
  );
}

function ringKeys(): string[] {
  return Array.from({ length: settings.ringKeys }, (_, i) => `product:${i}`);
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

interface Imbalance {
  /** max / mean keys per node, by node count. */
  byNodeCount: Record<string, number>;
  worst: number;
  worstAtNodes: number;
}

function measureImbalance(keys: readonly string[]): Imbalance {
  const byNodeCount: Record<string, number> = {};
  let worst = 0;
  let worstAtNodes = 0;
  for (let count = settings.minNodes; count <= settings.maxNodes; count++) {
    const ring = ringOver(range(1, count));
    const perNode = new Array<number>(count + 1).fill(0);
    for (const key of keys) perNode[ring.get(key)!]!++;
    const value = round(Math.max(...perNode) / (keys.length / count), 3);
    byNodeCount[count] = value;
    if (value > worst) {
      worst = value;
      worstAtNodes = count;
    }
  }
  return { byNodeCount, worst, worstAtNodes };
}

interface Remap {
  /** Share of keys whose node changed. */
  share: number;
  /** Keys that moved to a node other than the new one (consistent hashing: 0). */
  movedBetweenOldNodes: number;
}

function measureRemapOnAdd(keys: readonly string[]): Remap {
  const before = ringOver(range(1, 4));
  const after = ringOver(range(1, 5));
  let moved = 0;
  let movedBetweenOldNodes = 0;
  for (const key of keys) {
    const to = after.get(key);
    if (before.get(key) === to) continue;
    moved++;
    if (to !== 5) movedBetweenOldNodes++;
  }
  return { share: round(moved / keys.length, 4), movedBetweenOldNodes };
}

// ---- getMany over real nodes ----

interface Subject {
  readonly id: "threeNodes" | "oneNode";
  readonly label: string;
  readonly client: MemcacheClient;
}

interface Series {
  seq: number[];
  conc: number[];
}

const getManyKeys = Array.from({ length: settings.keysPerCall }, (_, i) => `bench:many:${i}`);
const VALUE = "v".repeat(settings.valueBytes);

function newClient(servers: readonly string[]): MemcacheClient {
  return new MemcacheClient({
    servers,
    timeoutMs: settings.timeoutMs,
    connectTimeoutMs: settings.connectTimeoutMs,
  });
}

async function getManyOnce(subject: Subject): Promise<void> {
  const values = await subject.client.getMany<string>(getManyKeys);
  if (values.size !== settings.keysPerCall) {
    throw new WrongReplyError(
      `${subject.label}: getMany returned ${values.size} of ${settings.keysPerCall} keys`,
    );
  }
}

async function getManyInFlight(subject: Subject): Promise<void> {
  const pending: Promise<void>[] = [];
  for (let i = 0; i < settings.concurrency; i++) pending.push(getManyOnce(subject));
  await Promise.all(pending);
}

/**
 * One round: warm up each subject, then let them take turns of `settings.turn` calls until each
 * made `calls`, so a slow spell of the machine falls on both alike. Returns calls/s per subject.
 */
async function runRound(
  subjects: readonly Subject[],
  round: number,
  call: (subject: Subject) => Promise<void>,
  calls: number,
  callsPerUnit: number,
): Promise<Map<string, number>> {
  const order = rotated(subjects, round);
  for (const subject of order) {
    for (let i = 0; i < Math.ceil(settings.warmupCalls / callsPerUnit); i++) await call(subject);
  }
  const elapsedNs = new Map<string, number>(order.map((s) => [s.id, 0]));
  for (let done = 0; done < calls; done += settings.turn) {
    const turn = Math.min(settings.turn, calls - done);
    for (const subject of order) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < turn; i++) await call(subject);
      elapsedNs.set(
        subject.id,
        elapsedNs.get(subject.id)! + Number(process.hrtime.bigint() - start),
      );
    }
  }
  return new Map(order.map((s) => [s.id, (calls * callsPerUnit) / (elapsedNs.get(s.id)! / 1e9)]));
}

interface Scaling {
  /** getMany calls per second (each of `keysPerCall` keys), median over rounds. */
  threeNodesOpsPerSec: number;
  oneNodeOpsPerSec: number;
  /** Median over rounds of three-node / one-node calls per second. */
  ratio: number;
  threeNodesByRound: number[];
  oneNodeByRound: number[];
}

function summarize(three: readonly number[], one: readonly number[]): Scaling {
  return {
    threeNodesOpsPerSec: Math.round(median(three)),
    oneNodeOpsPerSec: Math.round(median(one)),
    ratio: pairedRatio(three, one),
    threeNodesByRound: three.map(Math.round),
    oneNodeByRound: one.map(Math.round),
  };
}

async function measureGetMany(
  cluster: readonly MemcachedProcess[],
  single: MemcachedProcess,
  owned: Array<{ close(): unknown }>,
): Promise<{ seq: Scaling; conc: Scaling; keysPerNode: number[]; routingUsPerCall: number }> {
  const three: Subject = {
    id: "threeNodes",
    label: "getMany over 3 nodes",
    client: newClient(cluster.map((node) => node.endpoint)),
  };
  const one: Subject = {
    id: "oneNode",
    label: "getMany over 1 node",
    client: newClient([single.endpoint]),
  };
  owned.push(three.client, one.client);
  const subjects = [three, one];
  for (const subject of subjects) {
    const stored = await Promise.all(getManyKeys.map((key) => subject.client.set(key, VALUE)));
    if (!stored.every(Boolean)) throw new Error(`${subject.label}: could not seed the keys`);
  }
  const keysPerNode = cluster.map(
    (node) =>
      getManyKeys.filter((key) => three.client.cluster.nodeFor(key).port === node.port).length,
  );

  const routingUs: number[] = [];
  const series: Record<Subject["id"], Series> = {
    threeNodes: { seq: [], conc: [] },
    oneNode: { seq: [], conc: [] },
  };
  for (let round = 0; round < settings.rounds; round++) {
    const seq = await runRound(subjects, round, getManyOnce, settings.seqCalls, 1);
    const conc = await runRound(
      subjects,
      round,
      getManyInFlight,
      settings.concBatches,
      settings.concurrency,
    );
    routingUs.push(routingMicros(three.client));
    for (const subject of subjects) {
      series[subject.id].seq.push(seq.get(subject.id)!);
      series[subject.id].conc.push(conc.get(subject.id)!);
    }
    process.stdout.write(".");
  }
  process.stdout.write("\n");
  return {
    seq: summarize(series.threeNodes.seq, series.oneNode.seq),
    conc: summarize(series.threeNodes.conc, series.oneNode.conc),
    keysPerNode,
    routingUsPerCall: round(median(routingUs), 1),
  };
}

/**
 * Client-side cost of routing one call's keys over the ring (one MD5 per key), in µs: part of
 * every multi-node getMany, absent on one node (the ring is skipped there).
 */
function routingMicros(client: MemcacheClient): number {
  const calls = 200;
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    for (const key of getManyKeys) sink += client.cluster.nodeFor(key).port;
  }
  const ns = Number(process.hrtime.bigint() - start);
  if (sink === 0) throw new Error("unreachable: ports are positive");
  return ns / calls / 1000;
}

// ---- routing cost ----

interface Routing {
  /** µs to place one key on a 3-node ring (MD5 + binary search), median over repetitions. */
  usPerKey: number;
  /** µs for the first word of MD5 by node:crypto alone (how keys were hashed before). */
  nodeCryptoMd5UsPerKey: number;
}

/**
 * Placing keys on the ring as the client does (`cluster.nodeFor`), beside node:crypto's MD5 of
 * the same keys, interleaved repetitions, medians. 10,000 distinct keys of 9..12 characters.
 */
function measureRouting(client: MemcacheClient): Routing {
  const keys = Array.from({ length: 10_000 }, (_, i) => `product:${i}`);
  const ours: number[] = [];
  const crypto: number[] = [];
  let sink = 0;
  const perKeyUs = (run: () => void) => {
    const start = process.hrtime.bigint();
    run();
    return Number(process.hrtime.bigint() - start) / keys.length / 1000;
  };
  for (let repetition = 0; repetition < 15; repetition++) {
    ours.push(
      perKeyUs(() => {
        for (const key of keys) sink += client.cluster.nodeFor(key).port;
      }),
    );
    crypto.push(
      perKeyUs(() => {
        for (const key of keys) sink += hash("md5", key, "buffer").readUInt32LE(0) & 1;
      }),
    );
  }
  if (sink === 0) throw new Error("unreachable: ports are positive");
  // The first repetitions warm the JIT: keep the later ones.
  return {
    usPerKey: round(median(ours.slice(5)), 3),
    nodeCryptoMd5UsPerKey: round(median(crypto.slice(5)), 3),
  };
}

// ---- main ----

async function main(): Promise<number> {
  const keys = ringKeys();
  const imbalance = measureImbalance(keys);
  const remap = measureRemapOnAdd(keys);

  const owned: Array<{ close(): unknown }> = [];
  const processes: MemcachedProcess[] = [];
  try {
    const args = ["-t", String(settings.memcachedThreads)];
    processes.push(
      ...(await Promise.all(Array.from({ length: 4 }, () => startMemcached({ args })))),
    );
    const [a, b, c, single] = processes as [
      MemcachedProcess,
      MemcachedProcess,
      MemcachedProcess,
      MemcachedProcess,
    ];
    const probe = newClient([single.endpoint]);
    owned.push(probe);
    const memcachedVersion = Object.values(await probe.version())[0];
    const scaling = await measureGetMany([a, b, c], single, owned);
    const routingClient = newClient([a, b, c].map((node) => node.endpoint));
    owned.push(routingClient);
    const routing = measureRouting(routingClient);

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      memcachedThreads: settings.memcachedThreads,
      settings,
      imbalance: {
        description:
          "max/mean keys per node, equal weights, libmemcached-compatible ketama (160 points per server)",
        keys: settings.ringKeys,
        hostExample: elastiCacheHost(1),
        byNodeCount: imbalance.byNodeCount,
        worst: imbalance.worst,
        worstAtNodes: imbalance.worstAtNodes,
        target: targets.imbalance,
        met: imbalance.worst <= targets.imbalance,
      },
      remapOnAdd: {
        description: "share of keys that move when a 5th node joins 4",
        keys: settings.ringKeys,
        share: remap.share,
        ideal: 0.2,
        movedBetweenOldNodes: remap.movedBetweenOldNodes,
        target: targets.remapOnAdd,
        met: remap.share <= targets.remapOnAdd,
      },
      routingUsPerKey: routing.usPerKey,
      routing: {
        description:
          "µs to place one key on a 3-node ring (pure-JS MD5 of the ASCII key + binary search), beside node:crypto's MD5 of the same keys",
        usPerKey: routing.usPerKey,
        nodeCryptoMd5UsPerKey: routing.nodeCryptoMd5UsPerKey,
        target: targets.routingUsPerKey,
        met: routing.usPerKey <= targets.routingUsPerKey,
      },
      getManyScaling: {
        description: `getMany of ${settings.keysPerCall} keys (${settings.valueBytes}-byte values): calls/s over 3 nodes vs 1 node`,
        keysPerNode: scaling.keysPerNode,
        routingUsPerCall: scaling.routingUsPerCall,
        routingNote:
          "µs per call the 3-node client spends placing its keys on the ring; the 1-node client skips the ring",
        sequential: scaling.seq,
        [`concurrent${settings.concurrency}`]: scaling.conc,
      },
    };
    await mkdir(new URL("./", resultsFile), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);

    const byCount = Object.entries(imbalance.byNodeCount)
      .map(([count, value]) => `${count}:${value.toFixed(3)}`)
      .join(" ");
    console.log(`\nketama imbalance (max/mean) by node count: ${byCount}`);
    console.log(
      formatTable([
        ["measure", "value", "target", "verdict"],
        [
          `imbalance, worst of ${settings.minNodes}..${settings.maxNodes} nodes (at ${imbalance.worstAtNodes})`,
          imbalance.worst.toFixed(3),
          `<= ${targets.imbalance.toFixed(2)}`,
          verdict(imbalance.worst <= targets.imbalance),
        ],
        [
          "remap on add, 4 -> 5 nodes (ideal 0.20)",
          remap.share.toFixed(4),
          `<= ${targets.remapOnAdd.toFixed(2)}`,
          verdict(remap.share <= targets.remapOnAdd),
        ],
        [
          `routing, µs per key (node:crypto MD5 alone: ${routing.nodeCryptoMd5UsPerKey})`,
          routing.usPerKey.toFixed(3),
          `<= ${targets.routingUsPerKey}`,
          verdict(routing.usPerKey <= targets.routingUsPerKey),
        ],
        [
          "keys moved between old nodes",
          String(remap.movedBetweenOldNodes),
          "0",
          verdict(remap.movedBetweenOldNodes === 0),
        ],
      ]),
    );
    console.log();
    console.log(
      formatTable([
        [`getMany ${settings.keysPerCall} keys`, "3 nodes calls/s", "1 node calls/s", "3/1 ratio"],
        [
          "sequential",
          String(scaling.seq.threeNodesOpsPerSec),
          String(scaling.seq.oneNodeOpsPerSec),
          scaling.seq.ratio.toFixed(3),
        ],
        [
          `${settings.concurrency} in flight`,
          String(scaling.conc.threeNodesOpsPerSec),
          String(scaling.conc.oneNodeOpsPerSec),
          scaling.conc.ratio.toFixed(3),
        ],
      ]),
    );
    console.log(`\nkeys per node of the 3-node ring: ${scaling.keysPerNode.join(", ")}`);
    console.log(
      `ring routing of ${settings.keysPerCall} keys, client side: ${scaling.routingUsPerCall} µs per call`,
    );
    console.log(`wrote ${resultsFile.pathname}`);
    return 0;
  } catch (error) {
    if (error instanceof WrongReplyError) {
      console.error(`FAILED: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    for (const item of owned) item.close();
    await Promise.all(processes.map((p) => p.stop()));
  }
}

process.exitCode = await main();
