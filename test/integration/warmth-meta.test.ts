// The warmth rule (isWarm in infra/cutover.ts) against real memcached 1.6.18, with new read the
// way the app reads it in the fallback phase: meta leases, `mg <key> ... N<ttl>`. A miss there
// vivifies a placeholder and memcached counts it as a get_hit, so a cold new cluster's
// get_hits / (get_hits + get_misses) is 100 % after its first reads; the rule subtracts the
// vivified placeholders (total_items - cmd_set). Both readers of the rule are checked: `status`
// (cutoverStatus over a fake ElastiCache naming the real nodes) and the live view's probe.

import {
  type CacheCluster,
  CacheClusterNotFoundFault,
  DescribeCacheClustersCommand,
  type DescribeCacheClustersCommandOutput,
  type ElastiCacheClient,
} from "@aws-sdk/client-elasticache";
import { afterEach, describe, expect } from "vitest";
import {
  clusterIds,
  cutoverStatus,
  type ElastiCacheSender,
  isWarm,
  type StatsTotals,
} from "../../infra/cutover.ts";
import { ClusterProbe, warmthTotals } from "../../infra/local/live/probes.ts";
import { CacheAside } from "../../lib/cache/cacheAside.ts";
import { cacheConfigFromEnv } from "../../lib/cache/config.ts";
import { cacheForPhase, type PhaseCache } from "../../lib/cache/phases.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

const service = "lambda-memcache";
const stage = "warmth";
const ids = clusterIds(service, stage);
const keys = Array.from({ length: 50 }, (_, i) => `product:${i}`);
const closers: Array<() => void> = [];

afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** DescribeCacheClusters answering for one node per cluster, on 127.0.0.1. */
function elastiCacheFor(newNode: MemcachedProcess, oldNode: MemcachedProcess): ElastiCacheSender {
  const cluster = (id: string, port: number): CacheCluster => ({
    CacheClusterId: id,
    CacheClusterStatus: "available",
    CacheNodes: [{ CacheNodeId: "0001", Endpoint: { Address: "127.0.0.1", Port: port } }],
  });
  const clusters = [cluster(ids.new, newNode.port), cluster(ids.old, oldNode.port)];
  const send = async (
    command: DescribeCacheClustersCommand,
  ): Promise<DescribeCacheClustersCommandOutput> => {
    const found = clusters.find((c) => c.CacheClusterId === command.input.CacheClusterId);
    if (found === undefined || !(command instanceof DescribeCacheClustersCommand)) {
      throw new CacheClusterNotFoundFault({ message: "not found", $metadata: {} });
    }
    return { CacheClusters: [found], $metadata: {} };
  };
  return { send: send as ElastiCacheClient["send"] } as ElastiCacheSender;
}

/** A function deployed in the fallback phase with meta leases, as the reference app builds it. */
function fallbackFunction(newNode: MemcachedProcess, oldNode: MemcachedProcess) {
  const phaseCache: PhaseCache = cacheForPhase(
    cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: newNode.endpoint,
      CACHE_OLD_ENDPOINT: oldNode.endpoint,
      CACHE_CUTOVER_PHASE: "fallback",
      CACHE_LEASE_MODE: "meta",
    }),
    { longestTtlSeconds: 600 },
  );
  closers.push(phaseCache.close);
  const statuses: string[] = [];
  const cache = new CacheAside(phaseCache.store, {
    onEvent: (event) => statuses.push(event.type),
  });
  const readAll = async () => {
    for (const key of keys)
      await cache.getOrLoad(key, async () => ({ key, from: "origin" }), { ttlSeconds: 600 });
  };
  return { readAll, statuses };
}

/** Both readers of the rule: `status`, and the live view's probe of each cluster. */
async function verdicts(newNode: MemcachedProcess, oldNode: MemcachedProcess) {
  const status = await cutoverStatus({
    stage,
    service,
    elasticache: elastiCacheFor(newNode, oldNode),
  });
  const probe = (node: MemcachedProcess) => {
    const p = new ClusterProbe(node.endpoint, 2_000);
    closers.push(() => p.close());
    return p.sample();
  };
  const [newSample, oldSample] = await Promise.all([probe(newNode), probe(oldNode)]);
  const live = isWarm(warmthTotals(newSample)!, warmthTotals(oldSample)!);
  return { status, newTotals: status.clusters.new.totals, live };
}

describe("the warmth rule under meta leases", () => {
  it("judges a cold new cluster read through `mg ... N` cold, though memcached counts its misses as hits", async ({
    spawnMemcached,
  }) => {
    const [oldNode, newNode] = await Promise.all([spawnMemcached(), spawnMemcached()]);
    // Old has served: every key written, read twice.
    const old = new MemcacheClient({ servers: [oldNode.endpoint] });
    closers.push(() => old.close());
    for (const key of keys) await old.set(key, { key, from: "old" }, { ttlSeconds: 600 });
    await old.getMany(keys);
    await old.getMany(keys);

    // The fallback phase reads every key once: each misses in new (mg N vivifies a placeholder),
    // is read from old and copied into new.
    const fn = fallbackFunction(newNode, oldNode);
    await fn.readAll();
    expect(fn.statuses.filter((type) => type === "hit-fallback")).toHaveLength(keys.length);

    // What memcached itself says: every one of those misses was a get_hit.
    const probeClient = new MemcacheClient({ servers: [newNode.endpoint] });
    closers.push(() => probeClient.close());
    const raw = await counters(probeClient, ["get_hits", "get_misses", "curr_items"]);
    expect(raw).toMatchObject({ get_hits: keys.length, get_misses: 0, curr_items: keys.length });

    // The rule: new answered none of those reads, so it is cold (hit ratio 0 %), by both readers.
    const cold = await verdicts(newNode, oldNode);
    expect(cold.status.verdict).toMatchObject({ code: "cold", warm: false });
    expect(cold.status.verdict.message).toContain("hit ratio 0.0% < 0.9 x old's 100.0%");
    expect(cold.live.warm).toBe(false);
    expect(cold.newTotals).toMatchObject<Partial<StatsTotals>>({
      getHits: keys.length,
      vivified: keys.length,
      hitRatio: 0,
    });

    // A second round is answered by new (HIT): 50 % of new's reads, still below 0.9 x old's.
    await fn.readAll();
    expect(fn.statuses.filter((type) => type === "hit")).toHaveLength(keys.length);
    const half = await verdicts(newNode, oldNode);
    expect(half.newTotals.hitRatio).toBe(0.5);
    expect(half.status.verdict.code).toBe("cold");
    expect(half.live.warm).toBe(false);

    // Nineteen more rounds of hits: 95 % >= 0.9 x 100 %, and new holds every item: warm.
    for (let round = 0; round < 19; round++) await fn.readAll();
    const warm = await verdicts(newNode, oldNode);
    expect(warm.newTotals.hitRatio).toBeCloseTo(20 / 21, 10);
    expect(warm.status.verdict).toMatchObject({ code: "warm", warm: true });
    expect(warm.live.warm).toBe(true);
  });
});
