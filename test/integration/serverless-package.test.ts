// `serverless package` for a CI stage in each shape the caches take — both clusters kept, the old
// one removed, TLS on one cluster only, a serverless new cache beside the old cluster and alone,
// an old cluster the stack did not create (existingOldCacheEndpoint) in phase prepare — the
// generated CloudFormation template has the caches, subnet group, security groups, every
// function's VPC config, cache endpoints, TLS, kind and phase as expected, and no function zip
// carries AWS SDK code. Packaging without --stage, or with a bad param, fails instead.
// The cutover's CloudWatch dashboard is valid JSON once CloudFormation substitutes it, and names
// only metrics the functions really write (their EMF lines, captured from metrics.ts) and the
// clusters' own; its alarms likewise.
// Conditions (KeepOldCluster, ...) are evaluated here the way CloudFormation would, so "removed"
// means "CloudFormation does not create it", whatever the template text looks like.

import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inflateRawSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterMetrics, serverlessMetrics } from "../../infra/dashboard.ts";
import { cacheConfigFromEnv } from "../../lib/cache/config.ts";
import { type EmittedLine, emittedLines } from "../helpers/emf.ts";

const projectRoot = path.resolve(import.meta.dirname, "../..");
const serverlessBin = path.join(projectRoot, "node_modules/serverless/bin/serverless.js");
const stage = "ci";
const vpcId = "vpc-0123456789abcdef0";
const subnetIds = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"];
const packageTimeoutMs = 120_000;
const alarmTopicArn = "arn:aws:sns:us-east-1:123456789012:cache-alarms";

/** Params both packages share; new and old node counts differ so a mix-up shows. */
const commonParams = {
  vpcId,
  subnetIds: subnetIds.join(","),
  cacheNodeType: "cache.t4g.micro",
  newCacheNodes: "3",
  oldCacheNodes: "2",
  cacheAzMode: "cross-az",
};

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface Template {
  Conditions?: Record<string, Json>;
  Resources: Record<string, { Type: string; Condition?: string; Properties?: JsonObject }>;
  Outputs?: Record<string, { Condition?: string; Value: Json }>;
}

interface Packaged {
  dir: string;
  template: Template;
}

interface RunResult {
  code: number;
  output: string;
}

/** Runs the serverless CLI under this Node, without the VPC env vars a developer may have set. */
function runServerless(
  args: string[],
  workFolder: string,
  shell: Record<string, string> = {},
): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, SLS_ESBUILD_WORK_FOLDER: workFolder };
  for (const name of ["VPC_ID", "SUBNET_IDS", "ORIGIN_URL", ...Object.keys(appShell)]) {
    delete env[name];
  }
  Object.assign(env, shell);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [serverlessBin, ...args],
      { cwd: projectRoot, env, timeout: packageTimeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, output: `${stdout}${stderr}` });
      },
    );
  });
}

const paramArgs = (params: Record<string, string>) =>
  Object.entries(params).map(([name, value]) => `--param=${name}=${value}`);

/** A work folder for serverless-esbuild inside the project (it joins the path to the service). */
const workFolder = (name: string) => `.tmp/esbuild-${name}-${process.pid}`;

/**
 * The functions' settings as a test shell (or a developer's) may have them: an AWS stage must not
 * take them from there (its params, with defaults, set them).
 */
const appShell = {
  CACHE_TIMEOUT_MS: "2000",
  CACHE_CONNECT_TIMEOUT_MS: "2000",
  CACHE_METRICS: "off",
  CACHE_LEASE_MODE: "lock",
  CACHE_TOMBSTONE_SECONDS: "99999",
  ORIGIN_TIMEOUT_MS: "1",
  PRODUCT_TTL_SECONDS: "1",
  ORIGIN_DELAY_MS: "2000",
};

async function packageStage(
  name: string,
  params: Record<string, string>,
  shell: Record<string, string> = appShell,
): Promise<Packaged> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `sls-package-${name}-`));
  const args = ["package", "--stage", stage, "--package", dir, ...paramArgs(params)];
  const result = await runServerless(args, workFolder(name), shell);
  if (result.code !== 0) {
    throw new Error(`serverless package (${name}) exited with ${result.code}:\n${result.output}`);
  }
  const text = await readFile(path.join(dir, "cloudformation-template-update-stack.json"), "utf8");
  return { dir, template: JSON.parse(text) as Template };
}

// ---- CloudFormation, evaluated for literal conditions ----

/** A condition's value; CloudFormation compares Fn::Equals operands as strings. */
function conditionValue(template: Template, name: string): boolean {
  const expression = template.Conditions?.[name];
  if (expression === undefined) throw new Error(`no condition ${name}`);
  return evaluate(template, expression);
}

function evaluate(template: Template, expression: Json): boolean {
  const object = expression as JsonObject;
  const [fn] = Object.keys(object);
  const args = object[fn!] as Json[];
  switch (fn) {
    case "Condition":
      return conditionValue(template, object.Condition as string);
    case "Fn::Equals":
      if (args.some((arg) => typeof arg === "object" && arg !== null)) {
        throw new Error(`Fn::Equals over a non-literal: ${JSON.stringify(args)}`);
      }
      return String(args[0]) === String(args[1]);
    case "Fn::Not":
      return !evaluate(template, args[0]!);
    case "Fn::And":
      return args.every((arg) => evaluate(template, arg));
    case "Fn::Or":
      return args.some((arg) => evaluate(template, arg));
    default:
      throw new Error(`cannot evaluate condition ${JSON.stringify(expression)}`);
  }
}

const noValue = Symbol("AWS::NoValue");

/** Replaces each Fn::If by its branch and drops AWS::NoValue, as CloudFormation does. */
function resolveIfs(template: Template, value: Json): Json | typeof noValue {
  if (Array.isArray(value)) {
    return value.map((item) => resolveIfs(template, item)).filter((item) => item !== noValue);
  }
  if (value === null || typeof value !== "object") return value;
  if ((value as JsonObject).Ref === "AWS::NoValue") return noValue;
  const branches = value["Fn::If"] as [string, Json, Json] | undefined;
  if (branches) {
    return resolveIfs(template, conditionValue(template, branches[0]) ? branches[1] : branches[2]);
  }
  const out: JsonObject = {};
  for (const [key, item] of Object.entries(value)) {
    const resolved = resolveIfs(template, item);
    if (resolved !== noValue) out[key] = resolved;
  }
  return out;
}

/** The resources CloudFormation creates, with their Fn::If already resolved. */
function createdResources(template: Template): Record<string, Template["Resources"][string]> {
  const created: Record<string, Template["Resources"][string]> = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Condition !== undefined && !conditionValue(template, resource.Condition)) continue;
    created[id] = resolveIfs(template, resource as unknown as Json) as never;
  }
  return created;
}

function createdOutputs(template: Template): string[] {
  return Object.entries(template.Outputs ?? {})
    .filter(
      ([, output]) => output.Condition === undefined || conditionValue(template, output.Condition),
    )
    .map(([id]) => id);
}

/** The created outputs of infra/clusters.yml (the framework adds its own). */
const cacheOutputs = (template: Template) =>
  createdOutputs(template)
    .filter((id) => id.includes("Cache"))
    .sort();

/** Fn::Split over a literal string, evaluated. */
function split(value: Json): string[] {
  const args = (value as JsonObject)["Fn::Split"] as [string, string] | undefined;
  if (!args || typeof args[1] !== "string") throw new Error(`not a literal Fn::Split: ${value}`);
  return args[1].split(args[0]);
}

const getAtt = (resource: string, attribute: string) => ({ "Fn::GetAtt": [resource, attribute] });

/** The "host:port" of a cluster's configuration endpoint, as the functions must receive it. */
const configurationEndpoint = (cluster: string) => ({
  "Fn::Join": [
    ":",
    [
      getAtt(cluster, "ConfigurationEndpoint.Address"),
      getAtt(cluster, "ConfigurationEndpoint.Port"),
    ],
  ],
});

/** The "host:port" of a serverless cache's endpoint (TLS, no Auto Discovery). */
const serverlessEndpoint = (cache: string) => ({
  "Fn::Join": [":", [getAtt(cache, "Endpoint.Address"), getAtt(cache, "Endpoint.Port")]],
});

const functionsOf = (resources: Record<string, Template["Resources"][string]>) =>
  Object.entries(resources).filter(([, resource]) => resource.Type === "AWS::Lambda::Function");

/** The environment CloudFormation gives the functions (one for all; checked to be the same). */
function functionEnvironment(packaged: Packaged): JsonObject {
  const all = functionsOf(createdResources(packaged.template)).map(
    ([, fn]) => (fn.Properties!.Environment as JsonObject).Variables as JsonObject,
  );
  expect(all).toHaveLength(5);
  for (const variables of all) expect(variables).toEqual(all[0]);
  return all[0]!;
}

// ---- zip files, read with node:zlib (central directory, stored or deflated entries) ----

async function readZip(file: string): Promise<Map<string, Buffer>> {
  const zip = await readFile(file);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${file} is not a zip file`);
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: bad central directory`);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    const dataStart =
      localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
    const data = zip.subarray(dataStart, dataStart + compressedSize);
    if (!name.endsWith("/")) entries.set(name, method === 8 ? inflateRawSync(data) : data);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// ---- the dashboard: Fn::Sub substituted, and every metric it names ----

/** `${Name}` of a created resource, as the substituted body carries it. */
const refMark = (id: string) => `<ref:${id}>`;

/** The dashboard body as CloudFormation would write it: Fn::Sub substituted, then parsed. */
function dashboardBody(template: Template): {
  widgets: Array<{ type: string; properties: JsonObject }>;
} {
  const resources = createdResources(template);
  const dashboard = resources.CacheCutoverDashboard;
  expect(dashboard?.Type).toBe("AWS::CloudWatch::Dashboard");
  const body = (dashboard!.Properties!.DashboardBody as JsonObject)["Fn::Sub"];
  expect(typeof body).toBe("string");
  const substituted = (body as string).replace(/\$\{([^}]+)\}/g, (_, name: string) => {
    if (name === "AWS::Region") return "eu-west-1";
    // A Ref to a resource: it must be one CloudFormation creates.
    expect(resources, `\${${name}} in the dashboard body`).toHaveProperty(name);
    return refMark(name);
  });
  return JSON.parse(substituted);
}

/** What the functions' EMF lines declare: "namespace|metric|dimension,names" -> Outcome values. */
function emittedMetrics(lines: EmittedLine[]): Map<string, Set<string>> {
  const metrics = new Map<string, Set<string>>();
  for (const { json } of lines) {
    for (const directive of json._aws.CloudWatchMetrics) {
      for (const dimensions of directive.Dimensions) {
        for (const metric of directive.Metrics) {
          const key = `${directive.Namespace}|${metric.Name}|${dimensions.join(",")}`;
          const values = metrics.get(key) ?? new Set<string>();
          if (dimensions.includes("Outcome")) values.add(String(json.Outcome));
          metrics.set(key, values);
        }
      }
    }
  }
  return metrics;
}

interface NamedMetric {
  namespace: string;
  name: string;
  dimensions: Record<string, string>;
}

/** Checks one metric the dashboard or an alarm names against what the functions write. */
function expectEmitted(metric: NamedMetric, emitted: Map<string, Set<string>>, template: Template) {
  const names = Object.keys(metric.dimensions);
  const key = `${metric.namespace}|${metric.name}|${names.join(",")}`;
  expect([...emitted.keys()], JSON.stringify(metric)).toContain(key);
  if (metric.dimensions.Outcome !== undefined) {
    expect([...emitted.get(key)!], JSON.stringify(metric)).toContain(metric.dimensions.Outcome);
  }
  // The Function dimension is a function's name: the Ref of a function CloudFormation creates.
  const functionRef = /^<ref:(\w+)>$/.exec(metric.dimensions.Function ?? "")?.[1];
  expect(functionRef, JSON.stringify(metric)).toBeDefined();
  expect(createdResources(template)[functionRef!]?.Type).toBe("AWS::Lambda::Function");
}

/** Every metric entry and expression of a dashboard body. */
function dashboardMetrics(body: ReturnType<typeof dashboardBody>) {
  const metrics: NamedMetric[] = [];
  const expressions: string[] = [];
  for (const widget of body.widgets) {
    if (widget.type !== "metric") continue;
    const ids = new Set<string>();
    const widgetExpressions: string[] = [];
    for (const entry of widget.properties.metrics as Json[][]) {
      const options = entry.at(-1) as JsonObject;
      ids.add(String(options.id));
      if (typeof options.expression === "string") {
        widgetExpressions.push(options.expression);
        continue;
      }
      const [namespace, name, ...rest] = entry.slice(0, -1) as string[];
      const dimensions: Record<string, string> = {};
      for (let i = 0; i < rest.length; i += 2) dimensions[rest[i]!] = rest[i + 1]!;
      metrics.push({ namespace: namespace!, name: name!, dimensions });
    }
    // Every id an expression uses is a query of the same widget.
    for (const expression of widgetExpressions) {
      const outside = expression.replace(/SEARCH\('[^']*'[^)]*\)/g, "");
      for (const [id] of outside.matchAll(/\b[a-z][a-z0-9_]*\b/g)) {
        if (!["FILL", "SUM", "SEARCH"].includes(id)) expect([...ids], expression).toContain(id);
      }
    }
    expressions.push(...widgetExpressions);
  }
  return { metrics, expressions };
}

/**
 * The cluster metrics a body's SEARCH expressions ask for: "<resource>|MetricName", per node of a
 * node-based cluster (CacheClusterId, CacheNodeId), or of a serverless cache (clusterId), each
 * by the Ref of a cache CloudFormation creates, of the matching type.
 */
function searchedClusterMetrics(expressions: string[], template: Template): string[] {
  const found = new Set<string>();
  const resources = createdResources(template);
  for (const expression of expressions) {
    for (const [, search] of expression.matchAll(/SEARCH\('([^']*)'/g)) {
      const nodes =
        /^\{AWS\/ElastiCache,CacheClusterId,CacheNodeId\} MetricName="(\w+)" CacheClusterId="<ref:(\w+)>"$/.exec(
          search!,
        );
      const serverless =
        /^\{AWS\/ElastiCache,clusterId\} MetricName="(\w+)" clusterId="<ref:(\w+)>"$/.exec(search!);
      const match = nodes ?? serverless;
      expect(match, search).not.toBeNull();
      expect(resources[match![2]!]?.Type, search).toBe(
        nodes ? "AWS::ElastiCache::CacheCluster" : "AWS::ElastiCache::ServerlessCache",
      );
      found.add(`${match![2]}|${match![1]}`);
    }
  }
  return [...found].sort();
}

// ---- references: every Ref, GetAtt and ${X} names a resource CloudFormation creates ----

/** The logical ids a value refers to (Ref, Fn::GetAtt, Fn::Sub's ${X} and ${X.Attr}). */
function referencedIds(value: Json, found: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) referencedIds(item, found);
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      if (key === "Ref" && typeof item === "string") found.add(item);
      else if (key === "Fn::GetAtt" && Array.isArray(item)) found.add(String(item[0]));
      else if (key === "Fn::Sub") {
        const [text, variables] = (Array.isArray(item) ? item : [item, {}]) as [string, JsonObject];
        for (const [, name] of text.matchAll(/\$\{([^}!]+)\}/g)) {
          const id = name!.split(".")[0]!;
          if (!(id in variables)) found.add(id);
        }
        referencedIds(variables, found);
      } else referencedIds(item, found);
    }
  }
  return found;
}

/** Every reference in what CloudFormation creates (resources, outputs) is to a created resource. */
function expectReferencesCreated(template: Template, shape: string) {
  const created = createdResources(template);
  const outputs = Object.entries(template.Outputs ?? {})
    .filter(([id]) => createdOutputs(template).includes(id))
    .map(([, output]) => resolveIfs(template, output.Value) as Json);
  const ids = referencedIds([...Object.values(created), ...outputs] as unknown as Json);
  for (const id of ids) {
    if (id.startsWith("AWS::")) continue; // pseudo parameters
    expect(Object.keys(created), `${shape}: a reference to ${id}`).toContain(id);
  }
}

/**
 * The functions' environment as CloudFormation hands it over: each cache's endpoint as a
 * made-up host named after its resource ("OldCacheCluster.cfg.example:11211").
 */
function literalEnvironment(variables: JsonObject): Record<string, string> {
  const literal = (value: Json): string => {
    if (typeof value === "string") return value;
    const join = (value as JsonObject)["Fn::Join"] as [string, Json[]] | undefined;
    if (join) return join[1].map(literal).join(join[0]);
    const [id, attribute] = (value as JsonObject)["Fn::GetAtt"] as [string, string];
    return attribute.endsWith(".Port") ? "11211" : `${id}.cfg.example`;
  };
  return Object.fromEntries(Object.entries(variables).map(([name, v]) => [name, literal(v)]));
}

// ---- the tests ----

describe("serverless package (CloudFormation for the caches)", () => {
  let keep: Packaged;
  let removed: Packaged;
  let newTlsOnly: Packaged;
  let serverless: Packaged;
  let serverlessAlone: Packaged;
  let existing: Packaged;
  const existingEndpoint = "services-cache.abc123.cfg.use1.cache.amazonaws.com:11211";

  beforeAll(async () => {
    // One after the other: the runs bundle with esbuild and that is CPU-bound anyway.
    keep = await packageStage("keep", {
      ...commonParams,
      keepOldCluster: "true",
      cutoverPhase: "fallback",
      cacheTransitEncryption: "true",
      alarmTopicArn,
      bypassAlarmPercent: "2",
    });
    removed = await packageStage("removed", {
      ...commonParams,
      keepOldCluster: "false",
      cacheTransitEncryption: "false",
    });
    newTlsOnly = await packageStage("new-tls", {
      ...commonParams,
      keepOldCluster: "true",
      cutoverPhase: "fallback",
      newCacheTransitEncryption: "true",
      oldCacheTransitEncryption: "false",
    });
    serverless = await packageStage("serverless", {
      ...commonParams,
      keepOldCluster: "true",
      cutoverPhase: "fallback",
      newCacheKind: "serverless",
      serverlessCacheMaxDataGb: "7",
      serverlessCacheMaxEcpuPerSecond: "3000",
    });
    serverlessAlone = await packageStage("serverless-alone", {
      ...commonParams,
      keepOldCluster: "false",
      newCacheKind: "serverless",
    });
    existing = await packageStage("existing", {
      ...commonParams,
      existingOldCacheEndpoint: existingEndpoint,
      cutoverPhase: "prepare",
    });
  }, 6 * packageTimeoutMs);

  afterAll(async () => {
    await Promise.all(
      [
        keep?.dir,
        removed?.dir,
        newTlsOnly?.dir,
        serverless?.dir,
        serverlessAlone?.dir,
        existing?.dir,
      ]
        .filter((dir): dir is string => dir !== undefined)
        .map((dir) => rm(dir, { recursive: true, force: true })),
    );
  });

  describe("with keepOldCluster=true", () => {
    it("creates both memcached clusters with the node type, counts, AZ mode and TLS asked for", () => {
      const resources = createdResources(keep.template);
      for (const [id, suffix, nodes] of [
        ["NewCacheCluster", "new", 3],
        ["OldCacheCluster", "old", 2],
      ] as const) {
        const cluster = resources[id];
        expect(cluster?.Type).toBe("AWS::ElastiCache::CacheCluster");
        const props = cluster!.Properties!;
        expect(props.Engine).toBe("memcached");
        expect(props.EngineVersion).toBe("1.6.22");
        expect(props.CacheNodeType).toBe("cache.t4g.micro");
        expect(Number(props.NumCacheNodes)).toBe(nodes);
        expect(props.AZMode).toBe("cross-az");
        expect(Number(props.Port)).toBe(11211);
        expect(props.TransitEncryptionEnabled).toBe(true);
        expect(props.ClusterName).toBe(`lambda-memcache-${stage}-${suffix}`);
        expect((props.ClusterName as string).length).toBeLessThanOrEqual(40);
        expect(props.CacheSubnetGroupName).toEqual({ Ref: "CacheSubnetGroup" });
        expect(props.VpcSecurityGroupIds).toEqual([getAtt("CacheSecurityGroup", "GroupId")]);
      }
    });

    it("puts the clusters in a subnet group over the given subnets", () => {
      const group = createdResources(keep.template).CacheSubnetGroup;
      expect(group?.Type).toBe("AWS::ElastiCache::SubnetGroup");
      expect(split(group!.Properties!.SubnetIds!)).toEqual(subnetIds);
    });

    it("lets only the functions' security group reach the caches, and only on port 11211", () => {
      const resources = createdResources(keep.template);
      const cacheGroup = resources.CacheSecurityGroup!;
      const functionGroup = resources.FunctionSecurityGroup!;
      expect(cacheGroup.Type).toBe("AWS::EC2::SecurityGroup");
      expect(functionGroup.Type).toBe("AWS::EC2::SecurityGroup");
      expect(cacheGroup.Properties!.VpcId).toBe(vpcId);
      expect(functionGroup.Properties!.VpcId).toBe(vpcId);
      expect(cacheGroup.Properties!.SecurityGroupIngress).toEqual([
        expect.objectContaining({
          IpProtocol: "tcp",
          FromPort: 11211,
          ToPort: 11211,
          SourceSecurityGroupId: getAtt("FunctionSecurityGroup", "GroupId"),
        }),
      ]);
      const [rule] = cacheGroup.Properties!.SecurityGroupIngress as JsonObject[];
      expect(rule).not.toHaveProperty("CidrIp");
      expect(rule).not.toHaveProperty("CidrIpv6");
      // The caches open no connections: one rule that matches nothing replaces EC2's allow-all.
      expect(cacheGroup.Properties!.SecurityGroupEgress).toEqual([
        expect.objectContaining({ IpProtocol: "-1", CidrIp: "127.0.0.1/32" }),
      ]);
      // No separate ingress resource opens the cache group further.
      const extraRules = Object.values(resources).filter(
        (resource) => resource.Type === "AWS::EC2::SecurityGroupIngress",
      );
      expect(extraRules).toEqual([]);
    });

    it("runs every function in the VPC with the function security group", () => {
      const functions = functionsOf(createdResources(keep.template));
      expect(functions.map(([id]) => id).sort()).toEqual([
        "GetCounterLambdaFunction",
        "GetProductLambdaFunction",
        "HealthLambdaFunction",
        "IncrementCounterLambdaFunction",
        "PutProductLambdaFunction",
      ]);
      for (const [, fn] of functions) {
        const vpcConfig = fn.Properties!.VpcConfig as JsonObject;
        expect(vpcConfig.SecurityGroupIds).toEqual([getAtt("FunctionSecurityGroup", "GroupId")]);
        expect(split(vpcConfig.SubnetIds!)).toEqual(subnetIds);
      }
    });

    it("gives every function both configuration endpoints, with Auto Discovery switched on, and the phase asked for", () => {
      for (const [id, fn] of functionsOf(createdResources(keep.template))) {
        const variables = (fn.Properties!.Environment as JsonObject).Variables as JsonObject;
        expect(variables.CACHE_NEW_ENDPOINT, id).toEqual(configurationEndpoint("NewCacheCluster"));
        expect(variables.CACHE_OLD_ENDPOINT, id).toEqual(configurationEndpoint("OldCacheCluster"));
        expect(variables.CACHE_NEW_DISCOVERY, id).toBe("true");
        expect(variables.CACHE_OLD_DISCOVERY, id).toBe("true");
        expect(variables.CACHE_CUTOVER_PHASE, id).toBe("fallback");
      }
    });

    it("outputs both configuration endpoints", () => {
      expect(createdOutputs(keep.template)).toEqual(
        expect.arrayContaining(["NewCacheConfigurationEndpoint", "OldCacheConfigurationEndpoint"]),
      );
    });
  });

  describe("with keepOldCluster=false", () => {
    it("creates only the new cluster (the old one is conditional, so an update deletes it)", () => {
      const resources = createdResources(removed.template);
      expect(resources.NewCacheCluster?.Type).toBe("AWS::ElastiCache::CacheCluster");
      expect(Number(resources.NewCacheCluster!.Properties!.NumCacheNodes)).toBe(3);
      expect(resources.NewCacheCluster!.Properties).not.toHaveProperty("TransitEncryptionEnabled");
      expect(resources).not.toHaveProperty("OldCacheCluster");
      expect(removed.template.Resources.OldCacheCluster?.Condition).toBe("CreateOldCluster");
      expect(conditionValue(removed.template, "KeepOldCluster")).toBe(false);
      expect(conditionValue(removed.template, "CreateOldCluster")).toBe(false);
    });

    it("keeps the subnet group and security groups for the new cluster", () => {
      const resources = createdResources(removed.template);
      expect(resources.CacheSubnetGroup?.Type).toBe("AWS::ElastiCache::SubnetGroup");
      expect(resources.CacheSecurityGroup?.Type).toBe("AWS::EC2::SecurityGroup");
      expect(resources.FunctionSecurityGroup?.Type).toBe("AWS::EC2::SecurityGroup");
    });

    it("gives the functions the new endpoint and no old one", () => {
      const functions = functionsOf(createdResources(removed.template));
      expect(functions).toHaveLength(5);
      for (const [id, fn] of functions) {
        const variables = (fn.Properties!.Environment as JsonObject).Variables as JsonObject;
        expect(variables.CACHE_NEW_ENDPOINT, id).toEqual(configurationEndpoint("NewCacheCluster"));
        expect(variables.CACHE_OLD_ENDPOINT ?? "", id).toBe("");
        expect(JSON.stringify(variables), id).not.toContain("OldCacheCluster");
        expect((fn.Properties!.VpcConfig as JsonObject).SecurityGroupIds).toEqual([
          getAtt("FunctionSecurityGroup", "GroupId"),
        ]);
      }
    });

    it("outputs only the new configuration endpoint", () => {
      const outputs = createdOutputs(removed.template);
      expect(outputs).toContain("NewCacheConfigurationEndpoint");
      expect(outputs).not.toContain("OldCacheConfigurationEndpoint");
    });
  });

  describe("TLS per cluster", () => {
    it.for([
      ["both clusters with in-transit encryption", () => keep, true, true],
      ["neither (old removed)", () => removed, false, undefined],
      ["the new cluster only", () => newTlsOnly, true, false],
      ["a serverless new cache and a plain old cluster", () => serverless, true, false],
    ] as const)("gives the functions each cluster's TLS: %s", ([, packaged, newTls, oldTls]) => {
      const variables = functionEnvironment(packaged());
      expect(variables.CACHE_NEW_TLS).toBe(String(newTls));
      expect(variables.CACHE_OLD_TLS).toBe(oldTls === undefined ? "false" : String(oldTls));
      expect(variables.CACHE_TLS_CA_FILE ?? "").toBe(""); // the public CAs in AWS
      const resources = createdResources(packaged().template);
      const newCluster = resources.NewCacheCluster?.Properties;
      if (newCluster !== undefined) {
        expect(newCluster.TransitEncryptionEnabled ?? false).toBe(newTls);
      }
      if (oldTls !== undefined) {
        expect(resources.OldCacheCluster!.Properties!.TransitEncryptionEnabled ?? false).toBe(
          oldTls,
        );
      }
    });
  });

  describe("with newCacheKind=serverless beside the old cluster (the cutover to serverless)", () => {
    it("creates an ElastiCache Serverless for Memcached cache instead of the new cluster", () => {
      const resources = createdResources(serverless.template);
      expect(resources).not.toHaveProperty("NewCacheCluster");
      const cache = resources.NewServerlessCache;
      expect(cache?.Type).toBe("AWS::ElastiCache::ServerlessCache");
      const props = cache!.Properties!;
      expect(props).toMatchObject({
        ServerlessCacheName: `lambda-memcache-${stage}-new`,
        Engine: "memcached",
        MajorEngineVersion: "1.6",
        SecurityGroupIds: [getAtt("CacheSecurityGroup", "GroupId")],
      });
      // Numbers given as --param arrive as text; CloudFormation reads them as integers.
      const limits = props.CacheUsageLimits as { [key: string]: JsonObject };
      expect(Object.keys(limits).sort()).toEqual(["DataStorage", "ECPUPerSecond"]);
      expect([Number(limits.DataStorage!.Maximum), limits.DataStorage!.Unit]).toEqual([7, "GB"]);
      expect(Number(limits.ECPUPerSecond!.Maximum)).toBe(3000);
      // Nothing a serverless cache does not take (node type, count, transit encryption flag).
      expect(Object.keys(props).sort()).toEqual([
        "CacheUsageLimits",
        "Description",
        "Engine",
        "MajorEngineVersion",
        "SecurityGroupIds",
        "ServerlessCacheName",
        "SubnetIds",
      ]);
      expect(split(cache!.Properties!.SubnetIds!)).toEqual(subnetIds);
      expect(resources.OldCacheCluster?.Type).toBe("AWS::ElastiCache::CacheCluster");
      expect(resources.CacheSubnetGroup?.Type).toBe("AWS::ElastiCache::SubnetGroup");
    });

    it("gives the functions the serverless endpoint (TLS, no Auto Discovery) and old's configuration endpoint", () => {
      const variables = functionEnvironment(serverless);
      expect(variables.CACHE_NEW_ENDPOINT).toEqual(serverlessEndpoint("NewServerlessCache"));
      expect(variables.CACHE_NEW_KIND).toBe("serverless");
      expect(variables.CACHE_NEW_DISCOVERY).toBe("false");
      expect(variables.CACHE_NEW_TLS).toBe("true");
      expect(variables.CACHE_OLD_ENDPOINT).toEqual(configurationEndpoint("OldCacheCluster"));
      expect(variables.CACHE_OLD_DISCOVERY).toBe("true");
      expect(variables.CACHE_OLD_TLS).toBe("false");
    });

    it("admits the functions on the serverless cache's ports 11211-11212 only", () => {
      const group = createdResources(serverless.template).CacheSecurityGroup!;
      expect(group.Properties!.SecurityGroupIngress).toEqual([
        expect.objectContaining({
          IpProtocol: "tcp",
          FromPort: 11211,
          ToPort: 11212,
          SourceSecurityGroupId: getAtt("FunctionSecurityGroup", "GroupId"),
        }),
      ]);
    });

    it("outputs the serverless endpoint and old's configuration endpoint", () => {
      expect(cacheOutputs(serverless.template)).toEqual([
        "NewCacheEndpoint",
        "OldCacheConfigurationEndpoint",
      ]);
    });

    it("after the cutover (old removed) keeps the serverless cache alone, without a subnet group", () => {
      const resources = createdResources(serverlessAlone.template);
      expect(resources.NewServerlessCache?.Type).toBe("AWS::ElastiCache::ServerlessCache");
      expect(resources).not.toHaveProperty("NewCacheCluster");
      expect(resources).not.toHaveProperty("OldCacheCluster");
      expect(resources).not.toHaveProperty("CacheSubnetGroup");
      const variables = functionEnvironment(serverlessAlone);
      expect(variables.CACHE_NEW_ENDPOINT).toEqual(serverlessEndpoint("NewServerlessCache"));
      expect(variables.CACHE_OLD_ENDPOINT ?? "").toBe("");
      expect(cacheOutputs(serverlessAlone.template)).toEqual(["NewCacheEndpoint"]);
    });
  });

  describe("with an existing old cluster (existingOldCacheEndpoint) and cutoverPhase=prepare", () => {
    it("creates no old cluster, and gives every function the existing endpoint and the phase", () => {
      const resources = createdResources(existing.template);
      expect(resources.NewCacheCluster?.Type).toBe("AWS::ElastiCache::CacheCluster");
      expect(resources).not.toHaveProperty("OldCacheCluster");
      expect(conditionValue(existing.template, "KeepOldCluster")).toBe(true);
      expect(conditionValue(existing.template, "CreateOldCluster")).toBe(false);
      const functions = functionsOf(resources);
      expect(functions).toHaveLength(5);
      for (const [id, fn] of functions) {
        const variables = (fn.Properties!.Environment as JsonObject).Variables as JsonObject;
        expect(variables.CACHE_NEW_ENDPOINT, id).toEqual(configurationEndpoint("NewCacheCluster"));
        expect(variables.CACHE_OLD_ENDPOINT, id).toBe(existingEndpoint);
        expect(variables.CACHE_CUTOVER_PHASE, id).toBe("prepare");
      }
      expect(createdOutputs(existing.template)).not.toContain("OldCacheConfigurationEndpoint");
    });
  });

  it("bundles no AWS SDK code into any function", async () => {
    // The check can see bundled packages: source maps name each one (Middy is bundled).
    let sawBundledPackage = false;
    for (const packaged of [keep, removed, serverless, existing]) {
      const zips = (await readdir(packaged.dir)).filter((file) => file.endsWith(".zip"));
      expect(zips.sort()).toEqual([
        "getCounter.zip",
        "getProduct.zip",
        "health.zip",
        "incrementCounter.zip",
        "putProduct.zip",
      ]);
      for (const zip of zips) {
        const entries = await readZip(path.join(packaged.dir, zip));
        expect(
          [...entries.keys()].some((name) => name.endsWith(".mjs")),
          zip,
        ).toBe(true);
        for (const [name, data] of entries) {
          expect(name, zip).not.toContain("node_modules/");
          const text = data.toString("latin1");
          expect(text.includes("@aws-sdk/"), `${zip}: ${name}`).toBe(false);
          expect(text.includes("@smithy/"), `${zip}: ${name}`).toBe(false);
          if (text.includes("node_modules/@middy/core/")) sawBundledPackage = true;
        }
      }
    }
    expect(sawBundledPackage).toBe(true);
  });

  /** Runs `serverless package <args> --package <dir>`; what it printed and what it wrote. */
  async function failedPackage(name: string, args: string[]) {
    const dir = await mkdtemp(path.join(os.tmpdir(), `sls-package-${name}-`));
    try {
      const result = await runServerless(["package", ...args, "--package", dir], workFolder(name));
      return { ...result, written: await readdir(dir) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it(
    "refuses to package without --stage: the default stage is an AWS stage, not the offline one",
    async () => {
      const result = await failedPackage("nostage", []);
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/Value not found at "param" source/);
      expect(result.output).not.toMatch(/stage offline/);
      expect(result.written).toEqual([]); // no template with placeholders or loopback
    },
    packageTimeoutMs,
  );

  it(
    "refuses a newCacheKind that is neither nodes nor serverless",
    async () => {
      const params = paramArgs({ ...commonParams, newCacheKind: "Serverless" });
      const result = await failedPackage("kind", ["--stage", stage, ...params]);
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/cacheKinds\.Serverless|Value not found at "self" source/);
    },
    packageTimeoutMs,
  );

  it(
    "refuses to package a stage without VPC settings, naming the missing param",
    async () => {
      const result = await failedPackage("novpc", ["--stage", stage]);
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/Value not found at "param" source/);
    },
    packageTimeoutMs,
  );

  it(
    "still resolves the offline stage from --param values, with no VPC settings given",
    async () => {
      const args = [
        "print",
        "--stage",
        "offline",
        "--format",
        "json",
        "--param=cacheNewEndpoint=127.0.0.1:21211",
        "--param=cacheOldEndpoint=none",
        "--param=cutoverPhase=fallback",
        "--param=originUrl=http://127.0.0.1:4999",
      ];
      const result = await runServerless(args, workFolder("print"));
      expect(result.code, result.output).toBe(0);
      const config = JSON.parse(result.output.slice(result.output.indexOf("{"))) as {
        provider: { environment: Record<string, unknown> };
      };
      expect(config.provider.environment).toMatchObject({
        CACHE_NEW_ENDPOINT: "127.0.0.1:21211",
        CACHE_OLD_ENDPOINT: "none",
        CACHE_NEW_DISCOVERY: "false",
        CACHE_OLD_DISCOVERY: "false",
        ORIGIN_URL: "http://127.0.0.1:4999",
        CACHE_NEW_TLS: "false",
        CACHE_OLD_TLS: "false",
        CACHE_NEW_KIND: "nodes",
        CACHE_TLS_CA_FILE: "",
      });
    },
    packageTimeoutMs,
  );
  describe("the cutover's CloudWatch dashboard and alarms", () => {
    const emitted = emittedMetrics(emittedLines());

    it("is valid JSON once substituted, and names only metrics the functions really write", () => {
      for (const packaged of [keep, removed, newTlsOnly, serverless, serverlessAlone, existing]) {
        const { metrics } = dashboardMetrics(dashboardBody(packaged.template));
        expect(metrics.length).toBeGreaterThan(20);
        for (const metric of metrics) expectEmitted(metric, emitted, packaged.template);
      }
      // The namespace is the one every function writes to.
      for (const [id, fn] of functionsOf(createdResources(keep.template))) {
        const variables = (fn.Properties!.Environment as JsonObject).Variables as JsonObject;
        expect(variables.METRICS_NAMESPACE, id).toBe("LambdaMemcache");
      }
    });

    it("shows reads by each x-cache status, stacked, and every Outcome the functions write", () => {
      const body = dashboardBody(keep.template);
      const { metrics } = dashboardMetrics(body);
      const outcomes = new Set(metrics.map((metric) => metric.dimensions.Outcome));
      const written = new Set([...emitted.values()].flatMap((values) => [...values]));
      // Everything but plain writes and stale-on-error (not a read) is on the dashboard.
      for (const outcome of written) {
        if (outcome !== "write" && outcome !== "stale-on-error")
          expect(outcomes).toContain(outcome);
      }
      const reads = body.widgets.find((w) => String(w.properties.title).startsWith("Reads per"));
      expect(reads?.properties.stacked).toBe(true);
      const labels = (reads!.properties.metrics as Json[][])
        .map((entry) => (entry.at(-1) as JsonObject).label)
        .filter(Boolean);
      expect(labels).toEqual(["HIT", "HIT-FALLBACK", "MISS", "BYPASS"]);
    });

    const names = (template: Template) =>
      searchedClusterMetrics(dashboardMetrics(dashboardBody(template)).expressions, template);
    const wanted = ["CurrItems", "GetHits", "GetMisses", "Evictions", "CurrConnections"];

    it("reads both clusters' own metrics while old is kept, and only new's once it is removed", () => {
      expect(clusterMetrics.sort()).toEqual([...wanted].sort());
      expect(names(keep.template)).toEqual(
        ["NewCacheCluster", "OldCacheCluster"]
          .flatMap((cluster) => wanted.map((metric) => `${cluster}|${metric}`))
          .sort(),
      );
      expect(names(removed.template)).toEqual(
        wanted.map((metric) => `NewCacheCluster|${metric}`).sort(),
      );
      // An old cluster the stack did not create has no id in the template: new's metrics only.
      expect(names(existing.template)).toEqual(
        wanted.map((metric) => `NewCacheCluster|${metric}`).sort(),
      );
    });

    it("reads a serverless new cache's own metrics (dimension clusterId), beside old's or alone", () => {
      const ownMetrics = [
        "ElastiCacheProcessingUnits",
        "BytesUsedForCache",
        "ThrottledCmds",
        "SuccessfulReadRequestLatency",
        "SuccessfulWriteRequestLatency",
      ];
      expect([...serverlessMetrics].sort()).toEqual([...ownMetrics].sort());
      const serverlessNew = [...wanted, ...ownMetrics].map(
        (metric) => `NewServerlessCache|${metric}`,
      );
      expect(names(serverless.template)).toEqual(
        [...serverlessNew, ...wanted.map((metric) => `OldCacheCluster|${metric}`)].sort(),
      );
      expect(names(serverlessAlone.template)).toEqual([...serverlessNew].sort());
      // Their widgets, by title, with the statistic each metric is read by.
      const body = dashboardBody(serverlessAlone.template);
      const widget = (title: string) =>
        body.widgets.find((w) => String(w.properties.title).startsWith(title));
      const expressionOf = (title: string) =>
        ((widget(title)?.properties.metrics as Json[][]) ?? []).map(
          (entry) => (entry.at(-1) as JsonObject).expression,
        );
      expect(expressionOf("Serverless new: ECPUs")).toEqual([
        expect.stringMatching(/MetricName="ElastiCacheProcessingUnits" .*', 'Sum', 60\)\)$/),
      ]);
      expect(expressionOf("Serverless new: bytes stored")).toEqual([
        expect.stringMatching(/MetricName="BytesUsedForCache" .*', 'Maximum', 60\)\)$/),
      ]);
      expect(expressionOf("Hit ratio per cluster")).toEqual([
        expect.stringContaining(
          '{AWS/ElastiCache,clusterId} MetricName="GetHits" clusterId="<ref:NewServerlessCache>"',
        ),
      ]);
    });

    it("alarms on the BYPASS share and on origin reads, over metrics the functions write", () => {
      for (const [packaged, bypassPercent, actions] of [
        [keep, 2, [alarmTopicArn]],
        [removed, 5, undefined],
      ] as const) {
        const resources = createdResources(packaged.template);
        const bypass = resources.CacheBypassRateAlarm!;
        const origin = resources.CacheOriginReadRateAlarm!;
        expect(bypass.Type).toBe("AWS::CloudWatch::Alarm");
        expect(origin.Type).toBe("AWS::CloudWatch::Alarm");
        expect(Number(bypass.Properties!.Threshold)).toBe(bypassPercent);
        expect(Number(origin.Properties!.Threshold)).toBe(600);
        for (const alarm of [bypass, origin]) {
          expect(alarm.Properties!.AlarmActions).toEqual(actions);
          const queries = alarm.Properties!.Metrics as JsonObject[];
          const stats = queries.filter((query) => query.MetricStat !== undefined);
          expect(stats.length).toBeLessThanOrEqual(10); // CloudWatch's limit for one alarm
          const ids = new Set(queries.map((query) => String(query.Id)));
          const [result] = queries.filter((query) => query.ReturnData === true);
          for (const [id] of String(result!.Expression).matchAll(/\b[a-z][a-z0-9_]*\b/g)) {
            expect([...ids]).toContain(id);
          }
          for (const query of stats) {
            const metric = (query.MetricStat as JsonObject).Metric as JsonObject;
            const dimensions: Record<string, string> = {};
            for (const { Name, Value } of metric.Dimensions as Array<{
              Name: string;
              Value: Json;
            }>) {
              const ref = (Value as JsonObject | string as JsonObject).Ref;
              dimensions[Name] = typeof ref === "string" ? refMark(ref) : String(Value);
            }
            expectEmitted(
              { namespace: String(metric.Namespace), name: String(metric.MetricName), dimensions },
              emitted,
              packaged.template,
            );
          }
        }
        // The BYPASS share: BYPASS over all reads; origin reads: the outcomes that load.
        expect(String((bypass.Properties!.Metrics as JsonObject[]).at(-1)!.Expression)).toMatch(
          /^100\*\(FILL\(bypass_bypass_0,0\)\)\/\(.*FILL\(hitfallback_hitfallback_0,0\)/,
        );
      }
    });
  });
});

// Every cutover phase with every shape of the old cluster: the one the stack created, an existing
// one (existingOldCacheEndpoint, the common case), and none (keepOldCluster=false), plus a
// serverless new cache. What each function reads follows the phase: `single` beside an old
// cluster runs on old (step 0 and the rollback from prepare), every other phase has the new cache
// as new and old as old; prepare and fallback without an old cluster do not package. Every
// reference in every template is to a resource CloudFormation creates, and the functions'
// settings come from stage params, never from the shell that packages.
describe("serverless package: each cutover phase with each old cluster", () => {
  const existingOld = "services-cache.abc123.cfg.use1.cache.amazonaws.com:11211";
  const oldGroup = "sg-0ccccccccccccccccc";
  const oldShapes = {
    created: { keepOldCluster: "true" },
    existing: {
      existingOldCacheEndpoint: existingOld,
      oldCacheTransitEncryption: "true",
      existingOldCacheSecurityGroupId: oldGroup,
    },
    serverless: { newCacheKind: "serverless", existingOldCacheEndpoint: existingOld },
    removed: { keepOldCluster: "false" },
    "serverless, removed": { newCacheKind: "serverless", keepOldCluster: "false" },
  } as const;
  type OldShape = keyof typeof oldShapes;
  const phases = ["", "single", "prepare", "fallback", "new"] as const;
  const hasOld = (shape: OldShape) => !shape.includes("removed");
  const cases = (Object.keys(oldShapes) as OldShape[]).flatMap((shape) =>
    phases
      // With an old cluster a phase is required; without one, prepare and fallback cannot run.
      .filter((phase) =>
        hasOld(shape) ? phase !== "" : phase !== "prepare" && phase !== "fallback",
      )
      .map((phase) => ({ shape, phase, name: `${shape.replace(/\W+/g, "-")}-${phase || "none"}` })),
  );
  const packaged = new Map<string, Packaged>();

  beforeAll(async () => {
    for (const { shape, phase, name } of cases) {
      const params = { ...commonParams, ...oldShapes[shape], cutoverPhase: phase || " " };
      packaged.set(name, await packageStage(`phase-${name}`, params));
    }
  }, cases.length * packageTimeoutMs);

  afterAll(async () => {
    await Promise.all(
      [...packaged.values()].map((p) => rm(p.dir, { recursive: true, force: true })),
    );
  });

  /** The endpoints the functions get for the new cache and the old cluster in a shape. */
  const endpoints = (shape: OldShape) => ({
    newCache: shape.startsWith("serverless")
      ? "NewServerlessCache.cfg.example:11211"
      : "NewCacheCluster.cfg.example:11211",
    old: shape === "created" ? "OldCacheCluster.cfg.example:11211" : existingOld,
  });

  it.for(cases)("$shape, phase '$phase': the functions read what the phase reads", (c) => {
    const template = packaged.get(c.name)!.template;
    const variables = functionEnvironment(packaged.get(c.name)!);
    const env = literalEnvironment(variables);
    const config = cacheConfigFromEnv(env); // what every function does at cold start
    const where = endpoints(c.shape);
    const one = (cluster: typeof config.newCluster) =>
      "configEndpoint" in cluster
        ? `${cluster.configEndpoint.host}:${cluster.configEndpoint.port}`
        : cluster.servers.map((s) => `${s.host}:${s.port}`).join(",");
    expect(env.CACHE_CUTOVER_PHASE).toBe(c.phase);
    if (c.phase === "single" && hasOld(c.shape)) {
      // Step 0 / the rollback from prepare: the one cluster is old, with old's settings.
      expect(config.phase).toBe("single");
      expect(one(config.newCluster)).toBe(where.old);
      expect(config.oldCluster).toBeUndefined();
      expect(env.CACHE_NEW_DISCOVERY).toBe("true");
      expect(env.CACHE_NEW_KIND).toBe("nodes");
      expect(env.CACHE_NEW_TLS).toBe(c.shape === "existing" ? "true" : "false");
      expect(env.CACHE_OLD_ENDPOINT).toBe("");
      expect(JSON.stringify(variables)).not.toMatch(/NewCacheCluster|NewServerlessCache/);
    } else {
      expect(config.phase).toBe(c.phase || (hasOld(c.shape) ? "fallback" : "single"));
      expect(one(config.newCluster)).toBe(where.newCache);
      expect(config.newConnection.elastiCacheServerless).toBe(c.shape.startsWith("serverless"));
      if (hasOld(c.shape)) {
        expect(one(config.oldCluster!)).toBe(where.old);
        expect(config.oldConnection?.tls).toBe(c.shape === "existing");
      } else {
        expect(config.oldCluster).toBeUndefined();
        expect(JSON.stringify(variables)).not.toContain("OldCacheCluster");
      }
    }
    // The old cluster is created only when the stack owns it, whatever the phase.
    expect(Object.keys(createdResources(template)).includes("OldCacheCluster")).toBe(
      c.shape === "created",
    );
    // With the existing cluster's security group given, one rule admits the functions to it.
    const rules = Object.values(createdResources(template)).filter(
      (resource) => resource.Type === "AWS::EC2::SecurityGroupIngress",
    );
    if (c.shape === "existing") {
      expect(rules.map((rule) => rule.Properties)).toEqual([
        expect.objectContaining({
          GroupId: oldGroup,
          IpProtocol: "tcp",
          FromPort: 11211,
          ToPort: 11211,
          SourceSecurityGroupId: getAtt("FunctionSecurityGroup", "GroupId"),
        }),
      ]);
    } else {
      expect(rules).toEqual([]);
    }
    expectReferencesCreated(template, `${c.shape}, phase '${c.phase}'`);
    dashboardBody(template); // its ${X} name created resources; it parses as JSON
  });

  it("gives the functions their settings from stage params, not from the packaging shell", () => {
    const env = literalEnvironment(functionEnvironment(packaged.get("created-fallback")!));
    // appShell (2 s timeouts, metrics off, ...) was set in the shell that packaged.
    expect(env).toMatchObject({
      CACHE_TIMEOUT_MS: "100",
      CACHE_CONNECT_TIMEOUT_MS: "200",
      CACHE_METRICS: "on",
      CACHE_LEASE_MODE: "",
      CACHE_TOMBSTONE_SECONDS: "",
      ORIGIN_TIMEOUT_MS: "",
      PRODUCT_TTL_SECONDS: "",
    });
    expect(env).not.toHaveProperty("ORIGIN_DELAY_MS"); // the demo origin's, never a function's
  });

  it(
    "takes each setting from its stage param",
    async () => {
      const settings = {
        cacheTimeoutMs: "150",
        cacheConnectTimeoutMs: "400",
        cacheMetrics: "off",
        cacheLeaseMode: "meta",
        cacheTombstoneSeconds: "700",
        originTimeoutMs: "2500",
        productTtlSeconds: "600",
      };
      const set = await packageStage("settings", {
        ...commonParams,
        cutoverPhase: "fallback",
        ...settings,
      });
      try {
        const env = literalEnvironment(functionEnvironment(set));
        expect(env).toMatchObject({
          CACHE_TIMEOUT_MS: "150",
          CACHE_CONNECT_TIMEOUT_MS: "400",
          CACHE_METRICS: "off",
          CACHE_LEASE_MODE: "meta",
          CACHE_TOMBSTONE_SECONDS: "700",
          ORIGIN_TIMEOUT_MS: "2500",
          PRODUCT_TTL_SECONDS: "600",
        });
        const config = cacheConfigFromEnv(env);
        expect([config.timeoutMs, config.connectTimeoutMs, config.leaseMode]).toEqual([
          150,
          400,
          "meta",
        ]);
      } finally {
        await rm(set.dir, { recursive: true, force: true });
      }
    },
    packageTimeoutMs,
  );

  it.for([
    ["prepare", "false"],
    ["fallback", "false"],
    ["bogus", "true"],
    [" ", "true"],
  ] as const)(
    "refuses phase '%s' with keepOldCluster=%s (a phase the caches cannot run, or none while old is kept)",
    { timeout: packageTimeoutMs },
    async ([phase, keep]) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "sls-package-badphase-"));
      try {
        const params = paramArgs({ ...commonParams, keepOldCluster: keep, cutoverPhase: phase });
        const args = ["package", "--stage", stage, "--package", dir, ...params];
        const result = await runServerless(args, workFolder(`badphase-${phase.trim() || "none"}`));
        expect(result.code).not.toBe(0);
        expect(result.output).toMatch(/custom\.cutoverShape/);
        expect(await readdir(dir)).toEqual([]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
