// The cutover as a CloudWatch dashboard, and alarms for what matters during it: CloudFormation
// resources built from the functions' EMF vocabulary (functions/shared/emf.ts: namespace, metric
// and dimension names, Outcome values) and the clusters' own AWS/ElastiCache metrics.
// serverless.yml includes `cloudWatchResources` through infra/dashboard.js (its `${file()}`
// variables load .js files; Node 24 loads this module from there).
//
// The dashboard, per minute: reads by outcome (stacked, as the x-cache header reports them),
// origin reads (each MISS and BYPASS is one origin read), the share of reads answered by new,
// backfills and tombstones, errors per cluster, undecodable values; per cluster: items, hit ratio,
// evictions and connections; a serverless new cache's own ECPUs, bytes, throttling and latency.
// Alarms: the BYPASS share of reads, and origin reads per minute.
//
// Strings below are CloudFormation Fn::Sub templates: ${AWS::Region}, ${NewCacheCluster} (Ref: the
// cluster id), ${NewServerlessCache} (Ref: the serverless cache's name, its clusterId dimension),
// ${GetProductLambdaFunction} (Ref: the function name = the EMF Function dimension);
// ${param:...} is resolved by serverless before CloudFormation sees the template.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: serverless and CloudFormation variables

import {
  metricNames,
  type Outcome,
  outcomeDimensions,
  outcomeMeanings,
  outcomesOfRead,
  outcomeValues,
  readStatuses,
  undecodableDimensions,
} from "../functions/shared/emf.ts";

/** serverless.yml function keys whose cache events the dashboard and alarms count. */
export const cacheFunctions = {
  /** Read through cache-aside (every read outcome, backfills, BYPASS, old-cluster errors). */
  readers: ["getProduct"],
  /** Invalidate (tombstones, invalidation errors, old-cluster errors). */
  invalidators: ["putProduct"],
  /** Read values through the clients (undecodable values). */
  clientUsers: ["getProduct", "getCounter", "incrementCounter"],
} as const;

/** The metrics namespace, as serverless resolves it (the functions get it as METRICS_NAMESPACE). */
export const namespaceParam = "${param:metricsNamespace}";

/** The caches' logical ids in infra/clusters.yml (Ref: the cluster id, the serverless cache's name). */
export const clusterResources = {
  new: "NewCacheCluster",
  old: "OldCacheCluster",
  serverless: "NewServerlessCache",
} as const;

/**
 * Memcached metrics the dashboard reads per cluster (AWS/ElastiCache): per node of a node-based
 * cluster (dimensions CacheClusterId, CacheNodeId), and under the same names for ElastiCache
 * Serverless for Memcached (dimension clusterId = the cache's name).
 */
export const clusterMetrics = ["CurrItems", "GetHits", "GetMisses", "Evictions", "CurrConnections"];

/**
 * A serverless cache's own metrics, beyond what a node-based cluster has. Names and dimension:
 * https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/serverless-metrics-events.memcached.html
 * (the page lists the names; the dimension, clusterId, is what `aws cloudwatch list-metrics`
 * shows for a serverless cache, e.g. github.com/open-constructs/aws-cdk-library/pull/68).
 */
export const serverlessMetrics = [
  "ElastiCacheProcessingUnits",
  "BytesUsedForCache",
  "ThrottledCmds",
  "SuccessfulReadRequestLatency",
  "SuccessfulWriteRequestLatency",
];

/** What the dashboard shows: the new cache's kind, and whether the stack has an old cluster. */
export interface DashboardShape {
  newCache: "nodes" | "serverless";
  /** The stack created an old cluster (an existing one given as an endpoint has no id here). */
  old: boolean;
}

const period = 60;
const region = "${AWS::Region}";

/** The CloudFormation logical id serverless gives a function: getProduct -> GetProductLambdaFunction. */
export function functionResource(key: string): string {
  return `${key[0]!.toUpperCase()}${key.slice(1)}LambdaFunction`;
}

const slug = (text: string) => text.replace(/[^a-zA-Z0-9]/g, "").toLowerCase();

interface Query {
  id: string;
  /** One EMF metric: CacheOutcome with Function and Outcome. */
  outcome?: { functionKey: string; outcome: Outcome };
  undecodable?: { functionKey: string };
  expression?: string;
  label?: string;
  color?: string;
  visible?: boolean;
}

/** Hidden CacheOutcome metrics, one per function and outcome, and the sum of them. */
function outcomeSum(
  prefix: string,
  functionKeys: readonly string[],
  outcomes: readonly Outcome[],
): { queries: Query[]; sum: string } {
  const queries: Query[] = [];
  for (const [index, functionKey] of functionKeys.entries()) {
    for (const outcome of outcomes) {
      queries.push({
        id: `${prefix}_${slug(outcome)}_${index}`,
        outcome: { functionKey, outcome },
      });
    }
  }
  return { queries, sum: queries.map((query) => `FILL(${query.id},0)`).join("+") };
}

const statusColors: Record<string, string> = {
  HIT: "#2ca02c",
  "HIT-FALLBACK": "#ff7f0e",
  MISS: "#1f77b4",
  BYPASS: "#d62728",
};

/** The reads of the reader functions by x-cache status: hidden metrics plus one sum per status. */
function readQueries(): { queries: Query[]; sums: Record<string, string> } {
  const queries: Query[] = [];
  const sums: Record<string, string> = {};
  for (const status of readStatuses) {
    const { queries: parts, sum } = outcomeSum(
      slug(status),
      cacheFunctions.readers,
      outcomesOfRead(status),
    );
    queries.push(...parts);
    sums[status] = sum;
  }
  return { queries, sums };
}

const outcomesWhere = (test: (outcome: Outcome) => boolean) =>
  outcomeValues().filter((outcome) => test(outcome));

const originReadOutcomes = outcomesWhere((o) => outcomeMeanings[o].originRead === true);

/** A dashboard metrics array entry for `query` (namespace, name, dimension pairs, options). */
function metricEntry(query: Query): unknown[] {
  const options: Record<string, unknown> = { id: query.id };
  if (query.label !== undefined) options.label = query.label;
  if (query.color !== undefined) options.color = query.color;
  if (query.visible === false) options.visible = false;
  if (query.expression !== undefined) return [{ expression: query.expression, ...options }];
  if (query.outcome !== undefined) {
    const [functionDimension, outcomeDimension] = outcomeDimensions;
    return [
      namespaceParam,
      metricNames.outcome,
      functionDimension,
      `\${${functionResource(query.outcome.functionKey)}}`,
      outcomeDimension,
      query.outcome.outcome,
      { ...options, visible: false },
    ];
  }
  const [functionDimension] = undecodableDimensions;
  return [
    namespaceParam,
    metricNames.undecodable,
    functionDimension,
    `\${${functionResource(query.undecodable!.functionKey)}}`,
    options,
  ];
}

interface Widget {
  type: "metric" | "text";
  x: number;
  y: number;
  width: number;
  height: number;
  properties: Record<string, unknown>;
}

function metricWidget(
  title: string,
  queries: Query[],
  place: { x: number; y: number; width: number; height: number },
  extra: Record<string, unknown> = {},
): Widget {
  return {
    type: "metric",
    ...place,
    properties: {
      title,
      region,
      view: "timeSeries",
      stat: "Sum",
      period,
      metrics: queries.map(metricEntry),
      ...extra,
    },
  };
}

type Stat = "Sum" | "Average" | "Maximum";

/** One cluster's metric as a `SEARCH`, summed over its nodes (a serverless cache has one series). */
function clusterSum(cache: CacheShown, metric: string, stat: Stat): string {
  const search =
    cache.kind === "serverless"
      ? `{AWS/ElastiCache,clusterId} MetricName="${metric}" clusterId="\${${cache.ref}}"`
      : `{AWS/ElastiCache,CacheClusterId,CacheNodeId} MetricName="${metric}" CacheClusterId="\${${cache.ref}}"`;
  return `SUM(SEARCH('${search}', '${stat}', ${period}))`;
}

interface CacheShown {
  role: "new" | "old";
  kind: "nodes" | "serverless";
  ref: string;
}

function cachesShown(shape: DashboardShape): CacheShown[] {
  const caches: CacheShown[] = [
    shape.newCache === "serverless"
      ? { role: "new", kind: "serverless", ref: clusterResources.serverless }
      : { role: "new", kind: "nodes", ref: clusterResources.new },
  ];
  if (shape.old) caches.push({ role: "old", kind: "nodes", ref: clusterResources.old });
  return caches;
}

/** A serverless new cache's own numbers: ECPUs, bytes stored, throttling, request latency. */
function serverlessWidgets(cache: CacheShown, y: number): Widget[] {
  const one = (id: string, metric: string, stat: Stat, label: string, color: string): Query => ({
    id,
    expression: clusterSum(cache, metric, stat),
    label,
    color,
  });
  const place = (x: number) => ({ x, y, width: 6, height: 6 });
  return [
    metricWidget(
      "Serverless new: ECPUs per minute (ElastiCacheProcessingUnits)",
      [one("ecpu", "ElastiCacheProcessingUnits", "Sum", "ECPUs", "#6741d9")],
      place(0),
    ),
    metricWidget(
      "Serverless new: bytes stored (BytesUsedForCache)",
      [one("bytes", "BytesUsedForCache", "Maximum", "bytes", "#6741d9")],
      place(6),
    ),
    metricWidget(
      "Serverless new: throttled commands per minute (ThrottledCmds)",
      [one("throttled", "ThrottledCmds", "Sum", "throttled", "#e03131")],
      place(12),
    ),
    metricWidget(
      "Serverless new: request latency, µs (SuccessfulRead/WriteRequestLatency)",
      [
        one("latency_read", "SuccessfulReadRequestLatency", "Average", "read", "#6741d9"),
        one("latency_write", "SuccessfulWriteRequestLatency", "Average", "write", "#ff7f0e"),
      ],
      place(18),
    ),
  ];
}

/** Items, hit ratio, evictions and connections of the caches shown (and a serverless one's own). */
function clusterWidgets(shape: DashboardShape, y: number): Widget[] {
  const color = { new: "#6741d9", old: "#868e96" };
  const caches = cachesShown(shape);
  const per = (
    title: string,
    x: number,
    build: (role: "new" | "old", ref: CacheShown) => Query,
    extra: Record<string, unknown> = {},
  ) =>
    metricWidget(
      title,
      caches.map((cache) => build(cache.role, cache)),
      { x, y, width: 6, height: 6 },
      extra,
    );
  const serverless = caches.find((cache) => cache.kind === "serverless");
  return [
    per("Items per cluster (CurrItems)", 0, (role, ref) => ({
      id: `items_${role}`,
      expression: clusterSum(ref, "CurrItems", "Average"),
      label: role,
      color: color[role],
    })),
    per(
      "Hit ratio per cluster, % (GetHits / gets)",
      6,
      (role, ref) => ({
        id: `ratio_${role}`,
        expression: `100*${clusterSum(ref, "GetHits", "Sum")}/(${clusterSum(ref, "GetHits", "Sum")}+${clusterSum(ref, "GetMisses", "Sum")})`,
        label: role,
        color: color[role],
      }),
      { yAxis: { left: { min: 0, max: 100 } } },
    ),
    per("Evictions per minute", 12, (role, ref) => ({
      id: `evictions_${role}`,
      expression: clusterSum(ref, "Evictions", "Sum"),
      label: role,
      color: color[role],
    })),
    per("Connections per cluster (CurrConnections)", 18, (role, ref) => ({
      id: `connections_${role}`,
      expression: clusterSum(ref, "CurrConnections", "Average"),
      label: role,
      color: color[role],
    })),
    ...(serverless === undefined ? [] : serverlessWidgets(serverless, y + 6)),
  ];
}

/** The dashboard body for the caches of `shape`: an object, to be JSON-encoded into Fn::Sub. */
export function dashboardBody(shape: DashboardShape): { widgets: Widget[] } {
  const reads = readQueries();
  const statusSums = readStatuses.map((status) => ({
    id: `reads_${slug(status)}`,
    expression: reads.sums[status]!,
    label: status,
    color: statusColors[status]!,
  }));
  const allReads = statusSums.map((sum) => sum.id).join("+");
  const origin = outcomeSum("origin", cacheFunctions.readers, originReadOutcomes);
  const backfills = outcomeSum(
    "backfill",
    cacheFunctions.readers,
    outcomesWhere((o) => outcomeMeanings[o].backfill === true),
  );
  const tombstones = outcomeSum(
    "tombstone",
    cacheFunctions.invalidators,
    outcomesWhere((o) => outcomeMeanings[o].invalidation === true),
  );
  const both = [...new Set([...cacheFunctions.readers, ...cacheFunctions.invalidators])];
  const errorsOf = (cluster: "new" | "old") =>
    outcomeSum(
      `err${cluster}`,
      both,
      outcomesWhere((o) => outcomeMeanings[o].failed === cluster),
    );
  const errorsNew = errorsOf("new");
  const errorsOld = errorsOf("old");
  const runbook = [
    "# Cache cutover: old cluster -> new cluster",
    "Per minute, from the functions' cache events (EMF, namespace `${param:metricsNamespace}`) and the clusters' own metrics.",
    "HIT-FALLBACK falling while HIT rises means new is warming; origin reads should stay near zero; BYPASS means the cache failed and the origin answered.",
    'Next step: `npm run cutover -- status --stage ${sls:stage}` (runbook in the README, "Deploying and the cutover").',
  ].join("\n\n");

  const widgets: Widget[] = [
    { type: "text", x: 0, y: 0, width: 24, height: 3, properties: { markdown: runbook } },
    metricWidget(
      "Reads per minute by outcome (x-cache)",
      [...reads.queries.map((q) => ({ ...q, visible: false })), ...statusSums],
      { x: 0, y: 3, width: 12, height: 7 },
      { stacked: true },
    ),
    metricWidget(
      "Origin reads per minute (MISS + BYPASS)",
      [
        ...origin.queries.map((q) => ({ ...q, visible: false })),
        { id: "origin_reads", expression: origin.sum, label: "origin reads", color: "#e8590c" },
      ],
      { x: 12, y: 3, width: 6, height: 7 },
    ),
    metricWidget(
      "Share of reads answered by new, % (HIT; in phase prepare HIT is old's)",
      [
        ...reads.queries.map((q) => ({ ...q, visible: false })),
        ...statusSums.map((s) => ({ ...s, visible: false })),
        {
          id: "share_new",
          expression: `100*reads_hit/(${allReads})`,
          label: "answered by new",
          color: "#6741d9",
        },
      ],
      { x: 18, y: 3, width: 6, height: 7 },
      { yAxis: { left: { min: 0, max: 100 } } },
    ),
    metricWidget(
      "Backfills (old -> new) and tombstones per minute",
      [
        ...backfills.queries.map((q) => ({ ...q, visible: false })),
        ...tombstones.queries.map((q) => ({ ...q, visible: false })),
        { id: "backfills", expression: backfills.sum, label: "backfills", color: "#ff7f0e" },
        { id: "tombstones", expression: tombstones.sum, label: "tombstones", color: "#495057" },
      ],
      { x: 0, y: 10, width: 8, height: 6 },
    ),
    metricWidget(
      "Cache errors per minute by cluster",
      [
        ...errorsNew.queries.map((q) => ({ ...q, visible: false })),
        ...errorsOld.queries.map((q) => ({ ...q, visible: false })),
        { id: "errors_new", expression: errorsNew.sum, label: "new", color: "#6741d9" },
        { id: "errors_old", expression: errorsOld.sum, label: "old", color: "#868e96" },
      ],
      { x: 8, y: 10, width: 8, height: 6 },
    ),
    metricWidget(
      "Undecodable values per minute (a foreign format under our keys)",
      cacheFunctions.clientUsers.map((functionKey, index) => ({
        id: `undecodable_${index}`,
        undecodable: { functionKey },
        label: functionKey,
      })),
      { x: 16, y: 10, width: 8, height: 6 },
    ),
    ...clusterWidgets(shape, 16),
  ];
  return { widgets };
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** An alarm metric query list from dashboard queries (alarms take no SEARCH). */
function alarmQueries(queries: Query[], expression: string): Json[] {
  return [
    ...queries.map(
      (query): Json => ({
        Id: query.id,
        ReturnData: false,
        MetricStat: {
          Metric: {
            Namespace: namespaceParam,
            MetricName: metricNames.outcome,
            Dimensions: [
              {
                Name: outcomeDimensions[0],
                Value: { Ref: functionResource(query.outcome!.functionKey) },
              },
              { Name: outcomeDimensions[1], Value: query.outcome!.outcome },
            ],
          },
          Period: period,
          Stat: "Sum",
        },
      }),
    ),
    { Id: "value", Expression: expression, ReturnData: true },
  ];
}

const alarmActions = {
  "Fn::If": ["HasAlarmTopic", ["${param:alarmTopicArn}"], { Ref: "AWS::NoValue" }],
};

/** The resources serverless.yml includes: the dashboard, two alarms and their condition. */
export function cloudWatchResources(): Json {
  const reads = readQueries();
  const readSum = Object.values(reads.sums).join("+");
  const origin = outcomeSum("origin", cacheFunctions.readers, originReadOutcomes);
  const sub = (newCache: DashboardShape["newCache"], old: boolean) => ({
    "Fn::Sub": JSON.stringify(dashboardBody({ newCache, old })),
  });
  // infra/clusters.yml's conditions: which new cache exists, and whether the stack made old.
  const forKind = (newCache: DashboardShape["newCache"]) => ({
    "Fn::If": ["CreateOldCluster", sub(newCache, true), sub(newCache, false)],
  });
  const evaluation = {
    EvaluationPeriods: 5,
    DatapointsToAlarm: 3,
    TreatMissingData: "notBreaching",
    AlarmActions: alarmActions,
    OKActions: alarmActions,
  };
  return {
    Conditions: {
      HasAlarmTopic: { "Fn::Not": [{ "Fn::Equals": ["${param:alarmTopicArn}", ""] }] },
    },
    Resources: {
      CacheCutoverDashboard: {
        Type: "AWS::CloudWatch::Dashboard",
        Properties: {
          DashboardName: "${self:service}-${sls:stage}-cache",
          DashboardBody: {
            "Fn::If": ["NewCacheIsServerless", forKind("serverless"), forKind("nodes")],
          },
        },
      },
      CacheBypassRateAlarm: {
        Type: "AWS::CloudWatch::Alarm",
        Properties: {
          AlarmName: "${self:service}-${sls:stage}-cache-bypass-rate",
          AlarmDescription:
            "Share of product reads (%) the cache could not answer (x-cache BYPASS): the cache failed and the origin answered. Above ${param:bypassAlarmPercent} % in 3 of 5 minutes.",
          ComparisonOperator: "GreaterThanThreshold",
          Threshold: "${param:bypassAlarmPercent}",
          Metrics: alarmQueries(reads.queries, `100*(${reads.sums.BYPASS})/(${readSum})`),
          ...evaluation,
        },
      },
      CacheOriginReadRateAlarm: {
        Type: "AWS::CloudWatch::Alarm",
        Properties: {
          AlarmName: "${self:service}-${sls:stage}-cache-origin-reads",
          AlarmDescription:
            "Origin reads per minute (MISS + BYPASS of product reads) above ${param:originReadsAlarmPerMinute} in 3 of 5 minutes: a cold or failing cache sends the load to the origin.",
          ComparisonOperator: "GreaterThanThreshold",
          Threshold: "${param:originReadsAlarmPerMinute}",
          Metrics: alarmQueries(origin.queries, origin.sum),
          ...evaluation,
        },
      },
    },
  };
}
