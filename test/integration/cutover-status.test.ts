// `npm run cutover -- status` as a function: the ElastiCache API is a fake `send` answering
// DescribeCacheClusters, but the node endpoints it returns are real memcached processes, so the
// items, hits and misses come from real `stats`. Old gets traffic first (hits), new stays cold,
// then new is filled and read until the verdict flips; a removed old cluster and nodes that do
// not answer are reported, never thrown.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import {
  type CacheCluster,
  CacheClusterNotFoundFault,
  DescribeCacheClustersCommand,
  type DescribeCacheClustersCommandOutput,
  type DescribeServerlessCachesCommand,
  type DescribeServerlessCachesCommandOutput,
  type ServerlessCache,
  ServerlessCacheNotFoundFault,
} from "@aws-sdk/client-elasticache";
import {
  GetFunctionConfigurationCommand,
  ListAliasesCommand,
  ListFunctionsCommand,
} from "@aws-sdk/client-lambda";
import { afterAll, describe, expect } from "vitest";
import {
  type ClusterStatus,
  clusterIds,
  cutoverStatus,
  type ElastiCacheSender,
  formatStatus,
  isWarm,
} from "../../infra/cutover.ts";
import type { LambdaSender } from "../../infra/cutoverPhases.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { freePort } from "../../tools/ports.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

const service = "lambda-memcache";
const stage = "ci";
const ids = clusterIds(service, stage);
const keyCount = 60;
const keys = Array.from({ length: keyCount }, (_, i) => `product:${i}`);

/** Two nodes of each cluster (from the fixtures; stopped when the file ends). */
let oldNodes: MemcachedProcess[] = [];
let newNodes: MemcachedProcess[] = [];
const clients: MemcacheClient[] = [];

function clientFor(nodes: readonly MemcachedProcess[]): MemcacheClient {
  const client = new MemcacheClient({
    servers: nodes.map((node) => node.endpoint),
    connectTimeoutMs: 2_000,
    timeoutMs: 2_000,
  });
  clients.push(client);
  return client;
}

/** DescribeCacheClusters' view of a cluster whose nodes listen on 127.0.0.1:<port>. */
function describedCluster(id: string, ports: readonly number[]): CacheCluster {
  return {
    CacheClusterId: id,
    CacheClusterStatus: "available",
    CacheNodeType: "cache.t4g.small",
    Engine: "memcached",
    EngineVersion: "1.6.22",
    NumCacheNodes: ports.length,
    TransitEncryptionEnabled: false,
    ConfigurationEndpoint: { Address: `${id}.abc123.cfg.use1.cache.amazonaws.com`, Port: 11211 },
    CacheNodes: ports.map((port, i) => ({
      CacheNodeId: String(i + 1).padStart(4, "0"),
      CacheNodeStatus: "available",
      Endpoint: { Address: "127.0.0.1", Port: port },
      CustomerAvailabilityZone: `us-east-1${"abc"[i % 3]}`,
    })),
  };
}

/**
 * A fake ElastiCache: answers from `clusters` and `serverless`, with the SDK's not-found faults
 * for any other id.
 */
function fakeElastiCache(
  clusters: readonly CacheCluster[],
  serverless: readonly ServerlessCache[] = [],
): ElastiCacheSender & {
  calls: Array<DescribeCacheClustersCommand["input"] | DescribeServerlessCachesCommand["input"]>;
} {
  const calls: Array<
    DescribeCacheClustersCommand["input"] | DescribeServerlessCachesCommand["input"]
  > = [];
  const $metadata = { httpStatusCode: 200 };
  const send = async (
    command: DescribeCacheClustersCommand | DescribeServerlessCachesCommand,
  ): Promise<DescribeCacheClustersCommandOutput | DescribeServerlessCachesCommandOutput> => {
    calls.push(command.input);
    if (command instanceof DescribeCacheClustersCommand) {
      const cluster = clusters.find((c) => c.CacheClusterId === command.input.CacheClusterId);
      if (!cluster) {
        throw new CacheClusterNotFoundFault({
          message: `CacheCluster not found: ${command.input.CacheClusterId}`,
          $metadata: { httpStatusCode: 404 },
        });
      }
      return { CacheClusters: [cluster], $metadata };
    }
    const name = command.input.ServerlessCacheName;
    const cache = serverless.find((c) => c.ServerlessCacheName === name);
    if (!cache) {
      throw new ServerlessCacheNotFoundFault({
        message: `Serverless cache not found: ${name}`,
        $metadata: { httpStatusCode: 404 },
      });
    }
    return { ServerlessCaches: [cache], $metadata };
  };
  return { calls, send: send as ElastiCacheSender["send"] };
}

/** DescribeServerlessCaches' view of a serverless memcached cache. */
function describedServerless(name: string, status = "available"): ServerlessCache {
  return {
    ServerlessCacheName: name,
    Status: status,
    Engine: "memcached",
    MajorEngineVersion: "1.6",
    FullEngineVersion: "1.6.22",
    CacheUsageLimits: { DataStorage: { Maximum: 5, Unit: "GB" }, ECPUPerSecond: { Maximum: 5000 } },
    Endpoint: { Address: `${name}-abc123.serverless.use1.cache.amazonaws.com`, Port: 11211 },
  };
}

const ports = (nodes: readonly MemcachedProcess[]) => nodes.map((node) => node.port);
const bothClusters = () =>
  fakeElastiCache([
    describedCluster(ids.new, ports(newNodes)),
    describedCluster(ids.old, ports(oldNodes)),
  ]);

/** What each memcached process itself says, to compare the report with. */
async function serverCounts(node: MemcachedProcess) {
  const stats = await counters(clientFor([node]), [
    "curr_items",
    "get_hits",
    "get_misses",
    "total_items",
    "cmd_set",
  ]);
  return {
    currItems: stats.curr_items,
    getHits: stats.get_hits,
    getMisses: stats.get_misses,
    vivified: Math.min(stats.get_hits, Math.max(0, stats.total_items - stats.cmd_set)),
  };
}

/** Asserts every node's numbers, the totals and the ratio against the servers' own stats. */
async function expectMatchesServers(cluster: ClusterStatus, nodes: readonly MemcachedProcess[]) {
  const expected = await Promise.all(nodes.map(serverCounts));
  expect(cluster.nodes.map((node) => node.endpoint)).toEqual(nodes.map((node) => node.endpoint));
  expected.forEach((counts, i) => {
    expect(cluster.nodes[i]!.stats).toMatchObject(counts);
  });
  const sum = (pick: (c: (typeof expected)[number]) => number) =>
    expected.reduce((total, counts) => total + pick(counts), 0);
  const hits = sum((c) => c.getHits);
  const misses = sum((c) => c.getMisses);
  const vivified = sum((c) => c.vivified);
  expect(cluster.totals).toEqual({
    currItems: sum((c) => c.currItems),
    getHits: hits,
    getMisses: misses,
    vivified,
    hitRatio: hits + misses === 0 ? null : (hits - vivified) / (hits + misses),
  });
  expect(cluster.answeringNodes).toBe(nodes.length);
}

it.beforeAll(async ({ spawnFileMemcached }) => {
  const started = await Promise.all([1, 2, 3, 4].map(() => spawnFileMemcached()));
  oldNodes = started.slice(0, 2);
  newNodes = started.slice(2, 4);
  // The old cluster has served for a while: every key written, read once, plus some misses.
  const old = clientFor(oldNodes);
  for (const key of keys) await old.set(key, { key }, { ttlSeconds: 600 });
  await old.getMany(keys);
  await old.getMany(keys.slice(0, 10).map((key) => `absent:${key}`));
});

afterAll(() => {
  for (const client of clients) client.close();
});

/** Lambda's API as `status` reads it: the functions (no aliases) and each one's environment. */
function fakeLambda(functions: Record<string, Record<string, string>>) {
  const send = async (command: unknown) => {
    if (command instanceof ListFunctionsCommand) {
      return { Functions: Object.keys(functions).map((FunctionName) => ({ FunctionName })) };
    }
    if (command instanceof ListAliasesCommand) return { Aliases: [] };
    if (command instanceof GetFunctionConfigurationCommand) {
      return { Environment: { Variables: functions[command.input.FunctionName!] } };
    }
    throw new Error("unexpected command");
  };
  return { send: send as LambdaSender["send"] };
}

describe("cutoverStatus", () => {
  it("asks ElastiCache for both clusters by name, with node info", async () => {
    const elasticache = bothClusters();
    await cutoverStatus({ stage, service, elasticache });
    expect(elasticache.calls).toEqual(
      expect.arrayContaining([
        { CacheClusterId: "lambda-memcache-ci-new", ShowCacheNodeInfo: true },
        { CacheClusterId: "lambda-memcache-ci-old", ShowCacheNodeInfo: true },
      ]),
    );
    expect(elasticache.calls).toHaveLength(2);
  });

  it("reports a cold new cluster next to an old one with hits: keep the old cluster", async () => {
    // Reads reach new first and miss there (the fallback then reads old).
    await clientFor(newNodes).getMany(keys.slice(0, 20));

    const status = await cutoverStatus({ stage, service, elasticache: bothClusters() });

    const { new: fresh, old } = status.clusters;
    expect(old).toMatchObject({
      present: true,
      id: ids.old,
      status: "available",
      nodeType: "cache.t4g.small",
      engineVersion: "1.6.22",
      transitEncryption: false,
      configurationEndpoint: `${ids.old}.abc123.cfg.use1.cache.amazonaws.com:11211`,
    });
    expect(old.nodes.map((node) => [node.id, node.status, node.availabilityZone])).toEqual([
      ["0001", "available", "us-east-1a"],
      ["0002", "available", "us-east-1b"],
    ]);
    await expectMatchesServers(old, oldNodes);
    await expectMatchesServers(fresh, newNodes);
    expect(old.totals).toMatchObject({ currItems: keyCount, getHits: keyCount, getMisses: 10 });
    expect(fresh.totals).toMatchObject({ currItems: 0, getHits: 0, getMisses: 20, hitRatio: 0 });

    expect(status.verdict).toMatchObject({ code: "cold", warm: false });
    expect(status.verdict.message).toMatch(/^new is cold, keep the old cluster/);
  });

  it("says new looks warm once it holds the items and serves the reads", async () => {
    const fresh = clientFor(newNodes);
    for (const key of keys) await fresh.set(key, { key }, { ttlSeconds: 600 });
    for (let round = 0; round < 5; round++) await fresh.getMany(keys);

    const status = await cutoverStatus({ stage, service, elasticache: bothClusters() });

    await expectMatchesServers(status.clusters.new, newNodes);
    await expectMatchesServers(status.clusters.old, oldNodes);
    expect(status.clusters.new.totals).toMatchObject({
      currItems: keyCount,
      getHits: 5 * keyCount,
      getMisses: 20,
    });
    expect(status.verdict).toMatchObject({ code: "warm", warm: true });
    expect(status.verdict.message).toMatch(/^new looks warm/);
  });

  it("takes the thresholds as options", async () => {
    const status = await cutoverStatus({
      stage,
      service,
      elasticache: bothClusters(),
      warmth: { minItemsShare: 1.5 },
    });
    expect(status.rule).toEqual({ minHitRatioShare: 0.9, minItemsShare: 1.5 });
    expect(status.verdict.code).toBe("cold");
    expect(status.verdict.message).toContain(`items ${keyCount} < 1.5 x old's ${keyCount}`);
  });

  it("reports a missing old cluster as removed", async () => {
    const elasticache = fakeElastiCache([describedCluster(ids.new, ports(newNodes))]);

    const status = await cutoverStatus({ stage, service, elasticache });

    expect(status.clusters.old).toMatchObject({
      present: false,
      id: ids.old,
      status: "not present",
      nodes: [],
    });
    await expectMatchesServers(status.clusters.new, newNodes);
    expect(status.verdict).toMatchObject({ code: "old-removed", warm: false });
    expect(formatStatus(status)).toContain(`old  ${ids.old}  not present (removed)`);
  });

  it("reads an old cluster the stack did not create from the functions' endpoint, and judges the phases", async () => {
    const elasticache = fakeElastiCache([describedCluster(ids.new, ports(newNodes))]);
    const oldEndpoint = oldNodes.map((node) => node.endpoint).join(",");
    const env = (phase: string) => ({
      CACHE_NEW_ENDPOINT: "new.example:11211",
      CACHE_OLD_ENDPOINT: oldEndpoint,
      CACHE_CUTOVER_PHASE: phase,
    });
    const functions: Record<string, Record<string, string>> = {
      "lambda-memcache-ci-getProduct": env("prepare"),
      "lambda-memcache-ci-putProduct": env("fallback"),
    };
    const lambda = fakeLambda(functions);

    const status = await cutoverStatus({ stage, service, elasticache, lambda });

    expect(status.clusters.old).toMatchObject({
      present: true,
      id: oldEndpoint,
      status: "existing (not created by this stack)",
    });
    await expectMatchesServers(status.clusters.old, oldNodes);
    expect(status.verdict.code).not.toBe("old-removed");
    expect(status.phases?.versions.map((v) => v.phase)).toEqual(["prepare", "fallback"]);
    expect(status.phases?.next).toMatchObject({ step: "fallback", safe: true });
    expect(status.phases?.steps.find((step) => step.step === "new")?.safe).toBe(false);
    const printed = formatStatus(status);
    expect(printed).toContain("lambda-memcache-ci-getProduct:$LATEST  prepare  ($LATEST)");
    expect(printed).toContain("next: fallback — safe to deploy now");
  });

  it("step 0: reads an existing old cluster from a single version's one endpoint, and tells single on new from single on old", async () => {
    const elasticache = fakeElastiCache([describedCluster(ids.new, ports(newNodes))]);
    const oldEndpoint = oldNodes.map((node) => node.endpoint).join(",");
    // What ElastiCache reports as new's configuration endpoint (describedCluster), mixed case.
    const newEndpoint = `${ids.new.toUpperCase()}.abc123.cfg.use1.cache.amazonaws.com:11211`;
    const onOld = { CACHE_NEW_ENDPOINT: oldEndpoint, CACHE_CUTOVER_PHASE: "single" };
    const onNew = { CACHE_NEW_ENDPOINT: newEndpoint, CACHE_CUTOVER_PHASE: "single" };

    const before = await cutoverStatus({
      stage,
      service,
      elasticache,
      lambda: fakeLambda({ "lambda-memcache-ci-getProduct": onOld }),
    });
    expect(before.clusters.old).toMatchObject({
      present: true,
      id: oldEndpoint,
      status: "existing (not created by this stack)",
    });
    await expectMatchesServers(before.clusters.old, oldNodes);
    expect(before.phases?.next).toMatchObject({ step: "prepare", safe: true });
    expect(formatStatus(before)).toContain("next: prepare — safe to deploy now");

    // A single version on the new cache beside prepare: not a neighbour (it reads new).
    const mixed = await cutoverStatus({
      stage,
      service,
      elasticache,
      lambda: fakeLambda({
        "lambda-memcache-ci-getProduct": onNew,
        "lambda-memcache-ci-putProduct": {
          CACHE_NEW_ENDPOINT: newEndpoint,
          CACHE_OLD_ENDPOINT: oldEndpoint,
          CACHE_CUTOVER_PHASE: "prepare",
        },
      }),
    });
    const prepare = mixed.phases?.steps.find((step) => step.step === "prepare");
    expect(prepare).toMatchObject({ safe: false });
    expect(prepare?.reason).toContain(
      "lambda-memcache-ci-getProduct:$LATEST runs single on the new cache",
    );
  });

  it("reports the phases as unknown, calling no step safe, when the functions cannot be read", async () => {
    const elasticache = bothClusters();
    const denied = new Error("not authorized to perform: lambda:ListFunctions");
    const lambda = { send: (() => Promise.reject(denied)) as LambdaSender["send"] };

    const status = await cutoverStatus({ stage, service, elasticache, lambda });

    expect(status.verdict.code).not.toBe("unknown"); // the clusters are still judged
    expect(status.phases?.steps.every((step) => !step.safe)).toBe(true);
    expect(status.phases?.error).toContain("lambda:ListFunctions");
    expect(formatStatus(status)).toContain(
      "next: cannot judge: the deployed functions could not be read (not authorized to perform: lambda:ListFunctions)",
    );
  });

  it("reports a missing new cluster without comparing", async () => {
    const elasticache = fakeElastiCache([describedCluster(ids.old, ports(oldNodes))]);
    const status = await cutoverStatus({ stage, service, elasticache });
    expect(status.clusters.new.present).toBe(false);
    expect(status.verdict).toMatchObject({ code: "new-missing", warm: false });
  });

  it("reports nodes that do not answer, within the stats timeout, and judges nothing", async ({
    spawnMemcached,
  }) => {
    const refused = await freePort(); // nothing listens there
    const hung = await spawnMemcached();
    await hung.pause(); // accepts TCP, never answers
    const elasticache = fakeElastiCache([
      describedCluster(ids.new, [...ports(newNodes), refused, hung.port]),
      describedCluster(ids.old, ports(oldNodes)),
    ]);

    const started = performance.now();
    const status = await cutoverStatus({ stage, service, elasticache, statsTimeoutMs: 300 });
    const elapsedMs = performance.now() - started;

    const [first, second, down, silent] = status.clusters.new.nodes;
    expect(first!.stats).toBeDefined();
    expect(second!.stats).toBeDefined();
    expect(down).toMatchObject({ id: "0003", endpoint: `127.0.0.1:${refused}` });
    expect(down!.stats).toBeUndefined();
    expect(down!.error).toMatch(/^not answering: /);
    expect(silent!.stats).toBeUndefined();
    expect(silent!.error).toMatch(/^not answering: .*within 300 ms/);
    expect(status.clusters.new.answeringNodes).toBe(2);
    expect(elapsedMs).toBeLessThan(2_000);
    // The totals are over the nodes that answered; the verdict refuses to guess.
    expect(status.clusters.new.totals.currItems).toBe(keyCount);
    expect(status.verdict).toMatchObject({ code: "unknown", warm: false });
    expect(status.verdict.message).toContain("new 0003, new 0004");
    const report = formatStatus(status);
    expect(report).toContain("not answering");
    expect(report).toContain("total (2/4 answering)");

    hung.resume();
  });

  it("reports a cluster still creating (nodes without endpoints) without judging", async () => {
    const creating: CacheCluster = {
      ...describedCluster(ids.new, []),
      CacheClusterStatus: "creating",
      CacheNodes: [{ CacheNodeId: "0001", CacheNodeStatus: "creating" }],
    };
    const elasticache = fakeElastiCache([creating, describedCluster(ids.old, ports(oldNodes))]);
    const status = await cutoverStatus({ stage, service, elasticache });
    expect(status.clusters.new.status).toBe("creating");
    expect(status.clusters.new.nodes[0]).toMatchObject({ endpoint: "", error: "no endpoint yet" });
    expect(status.verdict.code).toBe("unknown");
  });

  it("reads a serverless new cache by DescribeServerlessCaches and its numbers from CloudWatch", async () => {
    const elasticache = fakeElastiCache(
      [describedCluster(ids.old, ports(oldNodes))],
      [describedServerless(ids.new)],
    );
    const asked: string[] = [];
    const status = await cutoverStatus({
      stage,
      service,
      elasticache,
      serverlessMetrics: async (name) => {
        asked.push(name);
        return { currItems: keyCount, getHits: 950, getMisses: 50, cmdSet: 100 };
      },
    });
    expect(elasticache.calls).toEqual(
      expect.arrayContaining([
        { CacheClusterId: ids.new, ShowCacheNodeInfo: true },
        { ServerlessCacheName: ids.new },
      ]),
    );
    expect(asked).toEqual([ids.new]);
    expect(status.clusters.new).toMatchObject({
      present: true,
      kind: "serverless",
      status: "available",
      engineVersion: "1.6.22",
      transitEncryption: true,
      endpoint: `${ids.new}-abc123.serverless.use1.cache.amazonaws.com:11211`,
      nodeType: "serverless (max 5 GB, 5000 ECPU/s)",
      // No total_items in CloudWatch: every set counts as a vivified miss.
      totals: { currItems: keyCount, getHits: 950, getMisses: 50, vivified: 100, hitRatio: 0.85 },
      answeringNodes: 1,
    });
    expect(status.clusters.old.kind).toBe("nodes");
    await expectMatchesServers(status.clusters.old, oldNodes);
    // Old: 60 hits of 70 gets (86 %); new: 85 % (>= 0.9 x 86 %) and as many items.
    expect(status.verdict).toMatchObject({ code: "warm", warm: true });
    const report = formatStatus(status);
    expect(report).toContain(
      `new  ${ids.new}  available  serverless (max 5 GB, 5000 ECPU/s)  memcached 1.6.22  TLS`,
    );
    expect(report).toContain("(numbers: CloudWatch)");
  });

  it("judges nothing when CloudWatch has no numbers for the serverless cache", async () => {
    const elasticache = fakeElastiCache(
      [describedCluster(ids.old, ports(oldNodes))],
      [describedServerless(ids.new, "creating")],
    );
    const status = await cutoverStatus({
      stage,
      service,
      elasticache,
      serverlessMetrics: () => Promise.reject(new Error("CloudWatch has no CurrItems")),
    });
    expect(status.clusters.new.status).toBe("creating");
    expect(status.clusters.new.nodes[0]!.error).toMatch(/^no CloudWatch numbers: /);
    expect(status.verdict).toMatchObject({ code: "unknown", warm: false });
  });

  it("prints the region and account it looked in", async () => {
    const status = await cutoverStatus({
      stage,
      service,
      elasticache: bothClusters(),
      account: {
        region: "eu-west-3",
        account: "123456789012",
        arn: "arn:aws:iam::123456789012:user/ops",
      },
    });
    expect(formatStatus(status).split("\n")[0]).toBe(
      `${service}, stage ${stage}, region eu-west-3, account 123456789012 (arn:aws:iam::123456789012:user/ops)`,
    );
  });

  it("passes other ElastiCache errors on (credentials, permissions)", async () => {
    const denied = new Error(
      "User is not authorized to perform: elasticache:DescribeCacheClusters",
    );
    denied.name = "AccessDenied";
    const elasticache = { send: () => Promise.reject(denied) } as ElastiCacheSender;
    await expect(cutoverStatus({ stage, service, elasticache })).rejects.toBe(denied);
  });

  it("prints each cluster's nodes, totals and the verdict", async () => {
    const report = formatStatus(
      await cutoverStatus({ stage, service, elasticache: bothClusters() }),
    );
    expect(report).toContain(`new  ${ids.new}  available  cache.t4g.small  memcached 1.6.22`);
    expect(report).toMatch(/0001 +127\.0\.0\.1:\d+ +available +us-east-1a +\d+ +\d+ +\d+ +\d+ +\d/);
    expect(report).toContain("total (2/2 answering)");
    expect(report).toMatch(/^verdict: new looks warm/m);
  });
});

describe("isWarm", () => {
  const totals = (currItems: number, getHits: number, getMisses: number) => ({
    currItems,
    getHits,
    getMisses,
    vivified: 0,
    hitRatio: getHits + getMisses === 0 ? null : getHits / (getHits + getMisses),
  });

  it("is cold while new has served no reads", () => {
    expect(isWarm(totals(100, 0, 0), totals(100, 90, 10)).warm).toBe(false);
  });

  it("compares only items when old has served no reads", () => {
    expect(isWarm(totals(60, 9, 1), totals(100, 0, 0)).warm).toBe(true);
    expect(isWarm(totals(40, 9, 1), totals(100, 0, 0)).warm).toBe(false);
  });

  it("needs both the hit ratio share and the item share", () => {
    const old = totals(100, 90, 10); // 90 %
    expect(isWarm(totals(50, 82, 18), old).warm).toBe(true); // 82 % >= 0.9 x 90 %, 50 = 0.5 x 100
    expect(isWarm(totals(50, 80, 20), old).warm).toBe(false);
    expect(isWarm(totals(49, 90, 10), old).warm).toBe(false);
  });
});

describe("clusterIds", () => {
  it("derives the names infra/clusters.yml gives the clusters, lowercase", () => {
    expect(clusterIds("lambda-memcache", "Prod")).toEqual({
      new: "lambda-memcache-prod-new",
      old: "lambda-memcache-prod-old",
    });
  });

  it("refuses names over 40 characters, naming the fix", () => {
    expect(() => clusterIds("lambda-memcache", "a-very-long-stage-name-x")).toThrow(
      /at most 40 .*shorter stage name/,
    );
  });
});
