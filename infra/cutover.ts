// `npm run cutover -- status --stage <stage> [--region r] [--json]`: both ElastiCache caches of
// a stage (DescribeCacheClusters with node info, or DescribeServerlessCaches for a serverless new
// cache), the numbers of each (items, hits, misses), and whether the new cache looks warm enough
// to deploy with keepOldCluster=false. It prints the region and account it looked in (STS
// GetCallerIdentity); the region is --region or whatever the SDK resolves (AWS_REGION, the
// profile's), and missing or expired credentials are one line saying what to set.
// It also reads the cutover phase every deployed function version runs (Lambda API) and says
// which step of the runbook is safe now (cutoverPhases.ts); an old cluster the stack did not
// create is read from the endpoint the functions are deployed with.
//
// A node-based cluster's numbers are each node's `stats`, which needs a TCP path to the nodes:
// the caches admit only FunctionSecurityGroup, so run this from a host in the VPC that has that
// group. Nodes it cannot reach are reported as not answering, and the verdict is then "unknown"
// (never "warm"). ElastiCache Serverless has no nodes to ask: its numbers are its CloudWatch
// metrics (CurrItems, GetHits, GetMisses over the last --metrics-window-minutes), read from
// anywhere.
//
// Cutover tooling only: the AWS SDK is a devDependency and never part of a function bundle.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CloudWatchClient, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import {
  type CacheCluster,
  DescribeCacheClustersCommand,
  type DescribeCacheClustersCommandOutput,
  DescribeServerlessCachesCommand,
  type DescribeServerlessCachesCommandOutput,
  ElastiCacheClient,
  type ServerlessCache,
} from "@aws-sdk/client-elasticache";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { toAddressList } from "../lib/memcache/address.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import {
  type DeployedVersion,
  deployedVersions,
  formatPhases,
  judgeSteps,
  type LambdaSender,
  type PhaseReport,
  singleOnOld,
  unreadableReport,
} from "./cutoverPhases.ts";

/** The part of ElastiCacheClient this tool uses (tests pass a fake). */
export interface ElastiCacheSender {
  send(command: DescribeCacheClustersCommand): Promise<DescribeCacheClustersCommandOutput>;
  send(command: DescribeServerlessCachesCommand): Promise<DescribeServerlessCachesCommandOutput>;
}

/**
 * A serverless cache's numbers from CloudWatch (tests pass a fake): items now, hits, misses and
 * set commands over the window. Rejects when CloudWatch has no datapoints for it.
 */
export type ServerlessMetricsReader = (
  cacheName: string,
) => Promise<{ currItems: number; getHits: number; getMisses: number; cmdSet: number }>;

/** One node to read `stats` from. */
export interface StatsTarget {
  host: string;
  port: number;
  /** The cluster has in-transit encryption: speak TLS. */
  tls: boolean;
}

/** Reads one node's `stats` (general group). */
export type StatsReader = (target: StatsTarget) => Promise<Record<string, string>>;

/**
 * The warmth rule's thresholds, written down once (see isWarm):
 *
 *   new looks warm when, over all nodes of each cluster,
 *     hit ratio(new) >= minHitRatioShare x hit ratio(old)   and
 *     curr_items(new) >= minItemsShare x curr_items(old)
 *
 * The counters are memcached's own since each node started, so new's ratio still carries its
 * cold start: the rule lags real warmth and errs towards keeping the old cluster longer.
 *
 * The hit ratio is not get_hits / (get_hits + get_misses): memcached 1.6.18 counts a meta get
 * with N (`mg <key> ... N<ttl>`, how the meta leases read) that misses and vivifies a placeholder
 * as a get_hit, and so is every later read of that placeholder. A cold new cluster read through
 * meta leases would show ~100 %. A vivified placeholder is an item memcached links without a set
 * command, so per node
 *
 *   vivified = max(0, total_items - cmd_set)        (each fill or write: one set, one item)
 *   hit ratio = (get_hits - vivified) / (get_hits + get_misses)
 *
 * which is exact for reads that vivify and then fill, errs towards cold for items created without
 * a set (ma N counters, incr/append that relink), and towards warm for sets that store nothing
 * (a fill whose CAS lost, an add that found the key). Readers polling another's placeholder still
 * count as hits (no counter tells them apart). test/integration/warmth-meta.test.ts holds it
 * against real memcached. A serverless cache has no total_items in CloudWatch: there every set
 * (CmdSet) counts as a vivified miss, an upper bound that errs towards cold.
 */
export interface WarmthRule {
  /** Share of old's hit ratio new must reach. Default 0.9. */
  minHitRatioShare: number;
  /** Share of old's item count new must hold. Default 0.5. */
  minItemsShare: number;
}

export const warmthDefaults: WarmthRule = {
  minHitRatioShare: 0.9,
  minItemsShare: 0.5,
};

export interface CutoverStatusOptions {
  stage: string;
  /** The serverless service name; default: `service:` of serverless.yml. */
  service?: string;
  elasticache: ElastiCacheSender;
  /** Reads the deployed functions' phases; without it the phases are not judged. */
  lambda?: LambdaSender;
  /** Default: a MemcacheClient per node with statsTimeoutMs. */
  statsFor?: StatsReader;
  /** A serverless cache's CloudWatch numbers; without it, a serverless cache has none. */
  serverlessMetrics?: ServerlessMetricsReader;
  /** Where the caches were looked for (printed with the report). */
  account?: { region: string; account: string; arn: string };
  /** Connect and reply timeout of each `stats` call. Default 1,000 ms. */
  statsTimeoutMs?: number;
  warmth?: Partial<WarmthRule>;
}

export interface StatsTotals {
  currItems: number;
  /** memcached's get_hits (or CloudWatch's GetHits), as reported: includes vivified misses. */
  getHits: number;
  getMisses: number;
  /** Of getHits, the misses that vivified a placeholder (estimate: see WarmthRule). */
  vivified: number;
  /** (getHits - vivified) / (getHits + getMisses); null before the first get. */
  hitRatio: number | null;
}

export interface NodeStatus {
  id: string;
  /** "host:port", or "" while ElastiCache has not assigned one (cluster still creating). */
  endpoint: string;
  status: string;
  availabilityZone: string;
  /** Present when the node answered `stats`. */
  stats?: StatsTotals;
  /** Why the node gave no stats ("not answering: ..."); absent when it answered. */
  error?: string;
}

export interface ClusterStatus {
  role: "new" | "old";
  id: string;
  present: boolean;
  /** A node-based cluster, or ElastiCache Serverless for Memcached; absent when not present. */
  kind?: "nodes" | "serverless";
  /** ElastiCache's CacheClusterStatus ("available", "creating", ...), or "not present". */
  status: string;
  nodeType?: string;
  engineVersion?: string;
  transitEncryption?: boolean;
  /** "host:port" of the configuration endpoint (what the functions get). */
  configurationEndpoint?: string;
  /** A serverless cache's "host:port" (what the functions get; TLS). */
  endpoint?: string;
  nodes: NodeStatus[];
  /** Sums over the nodes that answered. */
  totals: StatsTotals;
  answeringNodes: number;
}

export type VerdictCode = "warm" | "cold" | "unknown" | "old-removed" | "new-missing";

export interface Verdict {
  code: VerdictCode;
  /** Only "warm" means: deploy with keepOldCluster=false now. */
  warm: boolean;
  message: string;
}

export interface CutoverStatus {
  service: string;
  stage: string;
  /** The region and account the caches were looked for in, when known. */
  account?: { region: string; account: string; arn: string };
  rule: WarmthRule;
  clusters: { new: ClusterStatus; old: ClusterStatus };
  verdict: Verdict;
  /** The deployed versions' phases and the steps of the runbook (with a Lambda sender). */
  phases?: PhaseReport;
}

/** ElastiCache allows longer ids, but this project keeps them to 40 (see infra/clusters.yml). */
const maxClusterIdLength = 40;
const clusterIdPattern = /^[a-z][a-z0-9-]*$/;

/** "<service>-<stage>-new" and "-old", lowercase, as infra/clusters.yml names the clusters. */
export function clusterIds(service: string, stage: string): { new: string; old: string } {
  const ids = {
    new: `${service}-${stage}-new`.toLowerCase(),
    old: `${service}-${stage}-old`.toLowerCase(),
  };
  for (const id of [ids.new, ids.old]) {
    if (id.length > maxClusterIdLength || !clusterIdPattern.test(id) || id.includes("--")) {
      throw new Error(
        `cluster id "${id}" is not valid: at most ${maxClusterIdLength} letters, digits and single hyphens, starting with a letter; use a shorter stage name`,
      );
    }
  }
  return ids;
}

/** The `service:` of serverless.yml next to this folder. */
export function serviceFromServerlessYml(
  file: URL = new URL("../serverless.yml", import.meta.url),
): string {
  const match = /^service:\s*["']?([A-Za-z][\w-]*)/m.exec(readFileSync(file, "utf8"));
  if (!match) throw new Error(`no "service:" line in ${file.pathname}`);
  return match[1]!;
}

/** Both clusters, their nodes' stats and the verdict. Never throws for a node that is down. */
export async function cutoverStatus(options: CutoverStatusOptions): Promise<CutoverStatus> {
  const service = options.service ?? serviceFromServerlessYml();
  const rule = { ...warmthDefaults, ...options.warmth };
  const timeoutMs = options.statsTimeoutMs ?? 1_000;
  const statsFor = options.statsFor ?? ((target) => readStats(target, timeoutMs));
  const ids = clusterIds(service, options.stage);
  const serverlessMetrics =
    options.serverlessMetrics ??
    (() => Promise.reject(new Error("no CloudWatch reader given: numbers unknown")));
  const [newCluster, stackOld, versions] = await Promise.all([
    clusterStatus("new", ids.new, options.elasticache, statsFor, serverlessMetrics),
    clusterStatus("old", ids.old, options.elasticache, statsFor, serverlessMetrics),
    options.lambda === undefined
      ? undefined
      : deployedVersions(options.lambda, service, options.stage).catch((error: unknown) => error),
  ]);
  const unreadable =
    versions instanceof Error || (versions !== undefined && !Array.isArray(versions));
  // An old cluster the stack did not create (existingOldCacheEndpoint): the one the functions use.
  const deployed = unreadable ? undefined : (versions as DeployedVersion[] | undefined);
  // The endpoints of the stack's new cache, as the functions get them (tells a `single` version
  // on new from one on old).
  const newCache = [newCluster.configurationEndpoint, newCluster.endpoint].filter(
    (endpoint): endpoint is string => endpoint !== undefined,
  );
  // Before the cutover (step 0) a `single` version runs on old: its one cluster is old's.
  const single = deployed && singleOnOld(deployed, newCache);
  const external =
    deployed?.find((version) => version.oldEndpoint !== "") ??
    (single && {
      oldEndpoint: single.newEndpoint!,
      oldDiscovery: single.newDiscovery ?? false,
      oldTls: single.newTls ?? false,
    });
  const oldCluster =
    stackOld.present || external === undefined
      ? stackOld
      : await externalClusterStatus(external, statsFor, timeoutMs);
  const verdict = verdictFor(newCluster, oldCluster, rule);
  const status: CutoverStatus = {
    service,
    stage: options.stage,
    ...(options.account && { account: options.account }),
    rule,
    clusters: { new: newCluster, old: oldCluster },
    verdict,
  };
  if (unreadable) status.phases = unreadableReport(versions);
  else if (deployed !== undefined) status.phases = judgeSteps(deployed, verdict.warm, newCache);
  return status;
}

/**
 * An old cluster this stack did not create, from the endpoint the functions are deployed with:
 * its nodes (by Auto Discovery when the functions use it) and their `stats`, over TLS when the
 * functions speak TLS to it (CACHE_OLD_TLS; trusting the public CAs, as in AWS).
 */
async function externalClusterStatus(
  deployed: Pick<DeployedVersion, "oldEndpoint" | "oldDiscovery" | "oldTls">,
  statsFor: StatsReader,
  timeoutMs: number,
): Promise<ClusterStatus> {
  const { oldEndpoint: endpoint, oldDiscovery: discovery, oldTls: tls } = deployed;
  let targets: Array<{ host: string; port: number }> = [];
  let failure: string | undefined;
  try {
    if (discovery) {
      const client = new MemcacheClient({
        configEndpoint: endpoint,
        timeoutMs,
        connectTimeoutMs: timeoutMs,
        tls,
      });
      try {
        await client.ping();
        targets = client.nodes.map((node) => ({ host: node.address, port: node.port }));
      } finally {
        client.close();
      }
    } else {
      targets = toAddressList(endpoint).map((address) => ({
        host: address.host,
        port: address.port,
      }));
    }
  } catch (error) {
    failure = (error as Error).message;
  }
  const nodes: NodeStatus[] = await Promise.all(
    targets.map(async (target, i) => ({
      id: String(i + 1).padStart(4, "0"),
      endpoint: `${target.host}:${target.port}`,
      status: "external",
      availabilityZone: "",
      ...(await statsOf({ ...target, tls }, statsFor)),
    })),
  );
  const answered = nodes.flatMap((node) => (node.stats ? [node.stats] : []));
  return {
    role: "old",
    id: endpoint,
    present: true,
    status:
      failure === undefined ? "existing (not created by this stack)" : `unreachable: ${failure}`,
    configurationEndpoint: endpoint,
    nodes,
    totals: sumStats(answered),
    answeringNodes: answered.length,
  };
}

async function clusterStatus(
  role: "new" | "old",
  id: string,
  elasticache: ElastiCacheSender,
  statsFor: StatsReader,
  serverlessMetrics: ServerlessMetricsReader,
): Promise<ClusterStatus> {
  const cluster = await describe(elasticache, id);
  const serverless = cluster === undefined ? await describeServerless(elasticache, id) : undefined;
  if (serverless !== undefined) {
    return serverlessStatus(role, id, serverless, serverlessMetrics);
  }
  if (cluster === undefined) {
    return {
      role,
      id,
      present: false,
      status: "not present",
      nodes: [],
      totals: sumStats([]),
      answeringNodes: 0,
    };
  }
  const tls = cluster.TransitEncryptionEnabled === true;
  const nodes = await Promise.all(
    (cluster.CacheNodes ?? []).map((node) => nodeStatus(node, tls, statsFor)),
  );
  const answered = nodes.flatMap((node) => (node.stats ? [node.stats] : []));
  const endpoint = cluster.ConfigurationEndpoint;
  return {
    role,
    id,
    present: true,
    kind: "nodes",
    status: cluster.CacheClusterStatus ?? "unknown",
    nodeType: cluster.CacheNodeType,
    engineVersion: cluster.EngineVersion,
    transitEncryption: tls,
    configurationEndpoint: endpoint?.Address ? `${endpoint.Address}:${endpoint.Port}` : undefined,
    nodes,
    totals: sumStats(answered),
    answeringNodes: answered.length,
  };
}

/** The cluster, or undefined when ElastiCache has none by that id. */
async function describe(
  elasticache: ElastiCacheSender,
  id: string,
): Promise<CacheCluster | undefined> {
  try {
    const output = await elasticache.send(
      new DescribeCacheClustersCommand({ CacheClusterId: id, ShowCacheNodeInfo: true }),
    );
    return output.CacheClusters?.[0];
  } catch (error) {
    if ((error as Error).name === "CacheClusterNotFoundFault") return undefined;
    throw error;
  }
}

/** The serverless cache, or undefined when ElastiCache has none by that name. */
async function describeServerless(
  elasticache: ElastiCacheSender,
  name: string,
): Promise<ServerlessCache | undefined> {
  try {
    const output = await elasticache.send(
      new DescribeServerlessCachesCommand({ ServerlessCacheName: name }),
    );
    return output.ServerlessCaches?.[0];
  } catch (error) {
    if ((error as Error).name === "ServerlessCacheNotFoundFault") return undefined;
    throw error;
  }
}

/**
 * A serverless cache as one row: it has no nodes to ask, so its numbers are CloudWatch's. The
 * row counts as a node for the verdict: no numbers, no judgement.
 */
async function serverlessStatus(
  role: "new" | "old",
  id: string,
  cache: ServerlessCache,
  serverlessMetrics: ServerlessMetricsReader,
): Promise<ClusterStatus> {
  const endpoint = cache.Endpoint?.Address
    ? `${cache.Endpoint.Address}:${cache.Endpoint.Port}`
    : undefined;
  const row: NodeStatus = {
    id: "serverless",
    endpoint: endpoint ?? "",
    status: cache.Status ?? "unknown",
    availabilityZone: "",
  };
  try {
    const { currItems, getHits, getMisses, cmdSet } = await serverlessMetrics(id);
    row.stats = withRatio(currItems, getHits, getMisses, Math.min(cmdSet, getHits));
  } catch (error) {
    row.error = `no CloudWatch numbers: ${(error as Error).message}`;
  }
  const data = cache.CacheUsageLimits?.DataStorage;
  const ecpu = cache.CacheUsageLimits?.ECPUPerSecond;
  const limits = [
    data?.Maximum === undefined ? undefined : `${data.Maximum} ${data.Unit ?? "GB"}`,
    ecpu?.Maximum === undefined ? undefined : `${ecpu.Maximum} ECPU/s`,
  ].filter((limit) => limit !== undefined);
  return {
    role,
    id,
    present: true,
    kind: "serverless",
    status: cache.Status ?? "unknown",
    nodeType: limits.length === 0 ? "serverless" : `serverless (max ${limits.join(", ")})`,
    engineVersion: cache.FullEngineVersion ?? cache.MajorEngineVersion,
    transitEncryption: true,
    ...(endpoint !== undefined && { endpoint }),
    nodes: [row],
    totals: row.stats ?? sumStats([]),
    answeringNodes: row.stats ? 1 : 0,
  };
}

/**
 * CloudWatch's numbers for a serverless cache (namespace AWS/ElastiCache, dimension clusterId):
 * the latest CurrItems, and GetHits, GetMisses and CmdSet summed over the last `windowMinutes`.
 * Metric names: https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/serverless-metrics-events.memcached.html
 */
export function cloudWatchServerlessMetrics(
  cloudwatch: Pick<CloudWatchClient, "send">,
  windowMinutes: number,
): ServerlessMetricsReader {
  return async (name) => {
    const end = new Date();
    const start = new Date(end.getTime() - windowMinutes * 60_000);
    const query = (id: string, metric: string, stat: string, period: number) => ({
      Id: id,
      MetricStat: {
        Metric: {
          Namespace: "AWS/ElastiCache",
          MetricName: metric,
          Dimensions: [{ Name: "clusterId", Value: name }],
        },
        Period: period,
        Stat: stat,
      },
    });
    const window = windowMinutes * 60;
    const output = await cloudwatch.send(
      new GetMetricDataCommand({
        StartTime: start,
        EndTime: end,
        ScanBy: "TimestampDescending",
        MetricDataQueries: [
          query("hits", "GetHits", "Sum", window),
          query("misses", "GetMisses", "Sum", window),
          query("sets", "CmdSet", "Sum", window),
          query("items", "CurrItems", "Maximum", 60),
        ],
      }),
    );
    const values = (id: string) =>
      output.MetricDataResults?.find((result) => result.Id === id)?.Values ?? [];
    const items = values("items");
    if (items.length === 0) {
      throw new Error(`CloudWatch has no CurrItems for ${name} in the last ${windowMinutes} min`);
    }
    const sum = (list: number[]) => list.reduce((total, value) => total + value, 0);
    return {
      currItems: items[0]!,
      getHits: sum(values("hits")),
      getMisses: sum(values("misses")),
      cmdSet: sum(values("sets")),
    };
  };
}

type SdkCacheNode = NonNullable<CacheCluster["CacheNodes"]>[number];

async function nodeStatus(
  node: SdkCacheNode,
  tls: boolean,
  statsFor: StatsReader,
): Promise<NodeStatus> {
  const base = {
    id: node.CacheNodeId ?? "?",
    endpoint: node.Endpoint?.Address ? `${node.Endpoint.Address}:${node.Endpoint.Port}` : "",
    status: node.CacheNodeStatus ?? "unknown",
    availabilityZone: node.CustomerAvailabilityZone ?? "",
  };
  if (!node.Endpoint?.Address || node.Endpoint.Port === undefined) {
    return { ...base, error: "no endpoint yet" };
  }
  return {
    ...base,
    ...(await statsOf({ host: node.Endpoint.Address, port: node.Endpoint.Port, tls }, statsFor)),
  };
}

/** One node's stats totals, or why it gave none. */
async function statsOf(
  target: StatsTarget,
  statsFor: StatsReader,
): Promise<{ stats: StatsTotals } | { error: string }> {
  try {
    return { stats: statsTotals(await statsFor(target)) };
  } catch (error) {
    return { error: `not answering: ${(error as Error).message}` };
  }
}

/** `stats` of one node through the project's client, with a short timeout. */
async function readStats(target: StatsTarget, timeoutMs: number): Promise<Record<string, string>> {
  const host = target.host.includes(":") ? `[${target.host}]` : target.host;
  const client = new MemcacheClient({
    servers: [`${host}:${target.port}`],
    connectTimeoutMs: timeoutMs,
    timeoutMs,
    tls: target.tls,
  });
  try {
    const byNode = await client.stats();
    const stats = Object.values(byNode)[0];
    if (stats === undefined) throw new Error("empty stats reply");
    return stats;
  } finally {
    client.close();
  }
}

/** A number of one node's `stats` reply; throws when it is missing. */
export function statsCount(stats: Record<string, string>, name: string): number {
  const value = Number(stats[name]);
  if (!Number.isFinite(value)) throw new Error(`stats has no numeric ${name}`);
  return value;
}

/** What the warmth rule reads of one node's `stats` (vivified: see WarmthRule). */
export function statsTotals(stats: Record<string, string>): StatsTotals {
  const count = (name: string) => statsCount(stats, name);
  const getHits = count("get_hits");
  const vivified = Math.min(getHits, Math.max(0, count("total_items") - count("cmd_set")));
  return withRatio(count("curr_items"), getHits, count("get_misses"), vivified);
}

/** Totals over the nodes of a cluster (each node's vivified estimate taken on its own). */
export function sumStats(all: ReadonlyArray<Omit<StatsTotals, "hitRatio">>): StatsTotals {
  let currItems = 0;
  let getHits = 0;
  let getMisses = 0;
  let vivified = 0;
  for (const stats of all) {
    currItems += stats.currItems;
    getHits += stats.getHits;
    getMisses += stats.getMisses;
    vivified += stats.vivified;
  }
  return withRatio(currItems, getHits, getMisses, vivified);
}

function withRatio(
  currItems: number,
  getHits: number,
  getMisses: number,
  vivified: number,
): StatsTotals {
  const gets = getHits + getMisses;
  const hitRatio = gets === 0 ? null : (getHits - vivified) / gets;
  return { currItems, getHits, getMisses, vivified, hitRatio };
}

/**
 * The warmth rule (thresholds in WarmthRule). An old cluster that served no reads has no ratio
 * to match, so only the item share counts then; a new cluster that served no reads is cold.
 */
export function isWarm(
  newTotals: StatsTotals,
  oldTotals: StatsTotals,
  rule: WarmthRule = warmthDefaults,
): { warm: boolean; reasons: string[] } {
  const reasons: string[] = [];
  let warm = true;
  if (newTotals.hitRatio === null) {
    warm = false;
    reasons.push("new has served no reads yet");
  } else if (oldTotals.hitRatio !== null) {
    const needed = rule.minHitRatioShare * oldTotals.hitRatio;
    const ok = newTotals.hitRatio >= needed;
    warm &&= ok;
    reasons.push(
      `hit ratio ${percent(newTotals.hitRatio)} ${ok ? ">=" : "<"} ${rule.minHitRatioShare} x old's ${percent(oldTotals.hitRatio)}`,
    );
  }
  const neededItems = rule.minItemsShare * oldTotals.currItems;
  const itemsOk = newTotals.currItems >= neededItems;
  warm &&= itemsOk;
  reasons.push(
    `items ${newTotals.currItems} ${itemsOk ? ">=" : "<"} ${rule.minItemsShare} x old's ${oldTotals.currItems}`,
  );
  return { warm, reasons };
}

function verdictFor(
  newCluster: ClusterStatus,
  oldCluster: ClusterStatus,
  rule: WarmthRule,
): Verdict {
  if (!newCluster.present) {
    return {
      code: "new-missing",
      warm: false,
      message: `new cluster ${newCluster.id} not present: deploy the stage first`,
    };
  }
  if (!oldCluster.present) {
    return {
      code: "old-removed",
      warm: false,
      message: "old cluster not present (removed): nothing to compare, the cutover is done",
    };
  }
  const silent = [newCluster, oldCluster].flatMap((cluster) =>
    cluster.nodes.filter((node) => !node.stats).map((node) => `${cluster.role} ${node.id}`),
  );
  if (silent.length > 0 || newCluster.nodes.length === 0 || oldCluster.nodes.length === 0) {
    return cannotJudge(silent.length > 0 ? silent.join(", ") : "a cluster without nodes");
  }
  return warmthVerdict({ new: newCluster.totals, old: oldCluster.totals }, rule);
}

function cannotJudge(which: string): Verdict {
  return {
    code: "unknown",
    warm: false,
    message: `cannot judge (no stats from ${which}): keep the old cluster`,
  };
}

/**
 * The verdict over both clusters' totals (undefined: a cluster not every node of which answered):
 * what `status` says, and what the live view judges the next step by.
 */
export function warmthVerdict(
  totals: { new: StatsTotals | undefined; old: StatsTotals | undefined },
  rule: WarmthRule = warmthDefaults,
): Verdict {
  const silent = (["new", "old"] as const).filter((role) => totals[role] === undefined);
  if (silent.length > 0) return cannotJudge(silent.join(", "));
  const { warm, reasons } = isWarm(totals.new!, totals.old!, rule);
  return warm
    ? { code: "warm", warm: true, message: `new looks warm (${reasons.join("; ")})` }
    : {
        code: "cold",
        warm: false,
        message: `new is cold, keep the old cluster (${reasons.join("; ")})`,
      };
}

function percent(ratio: number | null): string {
  return ratio === null ? "-" : `${(ratio * 100).toFixed(1)}%`;
}

/** The report `status` prints without --json. */
export function formatStatus(status: CutoverStatus): string {
  const where = status.account
    ? `, region ${status.account.region}, account ${status.account.account} (${status.account.arn})`
    : "";
  const lines = [`${status.service}, stage ${status.stage}${where}`, ""];
  for (const cluster of [status.clusters.new, status.clusters.old]) {
    if (!cluster.present) {
      const removed = cluster.role === "old" ? " (removed)" : "";
      lines.push(`${cluster.role}  ${cluster.id}  not present${removed}`, "");
      continue;
    }
    const tls = cluster.transitEncryption ? "TLS" : "no TLS";
    lines.push(
      `${cluster.role}  ${cluster.id}  ${cluster.status}  ${cluster.nodeType ?? "?"}  memcached ${cluster.engineVersion ?? "?"}  ${tls}`,
      cluster.kind === "serverless"
        ? `  endpoint  ${cluster.endpoint ?? "(none yet)"}  (numbers: CloudWatch)`
        : `  configuration endpoint  ${cluster.configurationEndpoint ?? "(none yet)"}`,
    );
    const rows = [
      ["node", "endpoint", "status", "AZ", "items", "hits", "misses", "vivified", "hit ratio"],
    ];
    for (const node of cluster.nodes) {
      const head = [node.id, node.endpoint || "-", node.status, node.availabilityZone || "-"];
      rows.push(node.stats ? [...head, ...statsColumns(node.stats)] : [...head, node.error ?? ""]);
    }
    rows.push([
      `total (${cluster.answeringNodes}/${cluster.nodes.length} answering)`,
      "",
      "",
      "",
      ...statsColumns(cluster.totals),
    ]);
    lines.push(...table(rows).map((row) => `  ${row}`), "");
  }
  lines.push(`verdict: ${status.verdict.message}`);
  if (status.phases !== undefined) lines.push("", formatPhases(status.phases));
  return lines.join("\n");
}

function statsColumns(stats: StatsTotals): string[] {
  return [
    String(stats.currItems),
    String(stats.getHits),
    String(stats.getMisses),
    String(stats.vivified),
    percent(stats.hitRatio),
  ];
}

/** Pads columns to a common width; a row shorter than the header keeps its last cell unpadded. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.filter((row) => row.length > column + 1).map((row) => row[column]!.length), 0),
  );
  return rows.map((row) =>
    row
      .map((cell, column) => (column < row.length - 1 ? cell.padEnd(widths[column]!) : cell))
      .join("  ")
      .trimEnd(),
  );
}

const usage = `usage: npm run cutover -- status --stage <stage> [options]

  --stage <stage>               the stage whose clusters to show (required)
  --region <region>             AWS region (default: the SDK's: AWS_REGION, else the profile's)
  --service <name>              serverless service (default: service of serverless.yml)
  --json                        print the status as JSON
  --min-hit-ratio-share <n>     warm when new's hit ratio >= n x old's (default ${warmthDefaults.minHitRatioShare})
  --min-items-share <n>         ... and new's items >= n x old's (default ${warmthDefaults.minItemsShare})
  --stats-timeout-ms <ms>       connect/reply timeout of each node's stats (default 1000)
  --metrics-window-minutes <n>  a serverless cache's hits and misses over this window (default 60)

Credentials: the SDK's usual chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO,
an instance or task role).`;

function positiveNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0) {
    throw new Error(`--${name} must be a number >= 0, got "${value}"`);
  }
  return number;
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return 1;
  }
  if (parsed === "help") {
    console.log(usage);
    return 0;
  }
  // Without --region the SDK resolves it, as every AWS tool does (AWS_REGION, the profile's).
  const config = parsed.region === undefined ? {} : { region: parsed.region };
  const elasticache = new ElastiCacheClient(config);
  const sts = new STSClient(config);
  const cloudwatch = new CloudWatchClient(config);
  const lambda = new LambdaClient(config);
  try {
    const region = await elasticache.config.region();
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    const account = {
      region,
      account: identity.Account ?? "?",
      arn: identity.Arn ?? "?",
    };
    const status = await cutoverStatus({
      ...parsed.options,
      elasticache,
      lambda,
      account,
      serverlessMetrics: cloudWatchServerlessMetrics(cloudwatch, parsed.metricsWindowMinutes),
    });
    console.log(parsed.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    return 0;
  } catch (error) {
    console.error(`cutover status: ${awsErrorLine(error)}`);
    return 1;
  } finally {
    elasticache.destroy();
    sts.destroy();
    cloudwatch.destroy();
    lambda.destroy();
  }
}

// Errors of the SDK's credential chain and of AWS refusing the credentials it found.
const credentialErrors = new Set([
  "CredentialsProviderError",
  "ExpiredToken",
  "ExpiredTokenException",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "TokenRefreshRequired",
  "InvalidGrantException",
  "UnauthorizedException",
]);

/** One line for an error, saying what to set when it is about the region or the credentials. */
export function awsErrorLine(error: unknown): string {
  const { name, message } = error as Error;
  const first = String(message ?? error)
    .split("\n")[0]!
    .trim();
  if (/region is missing/i.test(first)) {
    return "no AWS region: pass --region, or set AWS_REGION (or a region in the config of AWS_PROFILE)";
  }
  if (credentialErrors.has(name)) {
    return `no usable AWS credentials (${name}: ${first}): set AWS_PROFILE (an SSO profile: run \`aws sso login --profile <name>\` first), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)`;
  }
  return name && name !== "Error" ? `${name}: ${first}` : first;
}

function parseCli(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv[0] === "--" ? argv.slice(1) : argv,
    allowPositionals: true,
    options: {
      stage: { type: "string" },
      region: { type: "string" },
      service: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
      "min-hit-ratio-share": { type: "string" },
      "min-items-share": { type: "string" },
      "stats-timeout-ms": { type: "string" },
      "metrics-window-minutes": { type: "string" },
    },
  });
  if (values.help) return "help" as const;
  if (positionals.length !== 1 || positionals[0] !== "status") {
    throw new Error(`unknown command "${positionals.join(" ")}": the command is "status"`);
  }
  if (!values.stage) throw new Error("--stage is required");
  const warmth: Partial<WarmthRule> = {};
  const hitShare = positiveNumber("min-hit-ratio-share", values["min-hit-ratio-share"]);
  const itemsShare = positiveNumber("min-items-share", values["min-items-share"]);
  if (hitShare !== undefined) warmth.minHitRatioShare = hitShare;
  if (itemsShare !== undefined) warmth.minItemsShare = itemsShare;
  const options: Omit<CutoverStatusOptions, "elasticache"> = { stage: values.stage, warmth };
  if (values.service) options.service = values.service;
  const timeout = positiveNumber("stats-timeout-ms", values["stats-timeout-ms"]);
  if (timeout !== undefined) options.statsTimeoutMs = timeout;
  const window = positiveNumber("metrics-window-minutes", values["metrics-window-minutes"]);
  if (window !== undefined && !(Number.isInteger(window) && window >= 1)) {
    throw new Error(`--metrics-window-minutes must be a whole number >= 1, got "${window}"`);
  }
  return {
    options,
    region: values.region,
    json: values.json,
    metricsWindowMinutes: window ?? 60,
  };
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
