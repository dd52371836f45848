// Middleware benchmark (`npm run bench:middleware`): what the Middy glue and the reference app
// cost on top of the wire client. Four measurements, written to bench/results/middleware.json:
//
//   hitOverheadRatio  in-process: p50 of a Middy handler answering a HIT through
//                     httpCacheMiddleware, over p50 of a bare client.get of the same entry on the
//                     same client (rounds interleaved, order rotated, latencies pooled)
//   httpHitVsMiss     over real HTTP through the local stack (memcached, demo origin with
//                     ORIGIN_DELAY_MS, serverless-offline): p50 of a HIT over p50 of a MISS
//   bundleBytes       the products function bundled as serverless.yml's custom.esbuild does
//   importMs          time to import that bundle in a fresh Node process (median of runs)
//
// Exit code 1 when a response carries the wrong x-cache status (or a part cannot run); a
// missed speed or size target is reported as MISSED and still exits 0.

import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import { build } from "esbuild";
import { type Stack, startStack } from "../infra/local/stack.ts";
import { CacheAside } from "../lib/cache/cacheAside.ts";
import type { HttpResult } from "../lib/cache/httpCache.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { safeKey } from "../lib/memcache/keys.ts";
import { httpCacheMiddleware } from "../lib/middleware/httpCache.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { formatTable, percentile, rotated, round, verdict } from "../tools/stats.ts";
import { type ImportTimes, measureImport } from "./imports.ts";
import { describeError, runMain, writeResults } from "./run.ts";

const settings = {
  /** In-process: interleaved rounds; p50s are pooled over all of them. */
  rounds: 7,
  /** In-process: timed invocations per subject per round. */
  opsPerRound: 3000,
  /** In-process: calls a subject makes before the other takes its turn. */
  turn: 100,
  /** In-process: untimed calls per subject at the start of each round (JIT, socket buffers). */
  warmupOps: 300,
  /**
   * memcached worker threads: one, so both subjects' requests are served by the same thread
   * (see bench/client.ts: with two, connections on different threads differed by up to 2.5x).
   */
  memcachedThreads: 1,
  /** Client timeouts, in ms: generous, so a busy machine does not turn a HIT into a BYPASS. */
  timeoutMs: 2000,
  connectTimeoutMs: 2000,
  /** Size the product JSON is padded to, in bytes. */
  productBytes: 300,
  /** HTTP: latency of the demo origin, in ms. */
  originDelayMs: 50,
  /** HTTP: timed MISSes and HITs (each MISS is a product id never requested before). */
  httpRequests: 200,
  /** HTTP: untimed MISS + HIT pairs first (worker start-up, JIT, keep-alive sockets). */
  httpWarmupPairs: 10,
  /** HTTP: timeout of one request, in ms; above the function's 10 s, so offline's 504 shows. */
  httpTimeoutMs: 15_000,
  /** HTTP: attempts, each on a fresh stack, when a request is dropped (see measureHttpRetrying). */
  httpAttempts: 5,
  /** Fresh-process imports of the bundle (and of the empty baseline module). */
  importRuns: 7,
};

const targets = {
  /** Middy + middleware HIT over a bare client get, p50 / p50. */
  hitOverheadRatio: 1.3,
  /** 150 KiB. */
  bundleBytes: 150 * 1024,
  awsSdkInBundle: false,
  /** Responses over HTTP whose x-cache is not the expected MISS / HIT. */
  httpXCacheMismatches: 0,
  /**
   * Sanity bound only (the brief sets no target): a HIT must at least beat a MISS. With a 50 ms
   * origin it is expected far below this.
   */
  httpHitVsMiss: 1,
};

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const resultsFile = new URL("./results/middleware.json", import.meta.url);
const keyPrefix = "products:";
const keyText = "product/1";

/** A response with the wrong x-cache status, or a cached entry that is not what was stored. */
class WrongStatusError extends Error {
  override name = "WrongStatusError";
}

/** A request over HTTP that the function never answered (see measureHttpRetrying). */
class DroppedRequestError extends Error {
  override name = "DroppedRequestError";
}

// ---- 1. in-process: Middy HIT vs bare client get ----

/** A product like the demo origin's, padded with a description to about `bytes` of JSON. */
function productJson(bytes: number): string {
  const product = {
    id: "1",
    name: "Product 1",
    price: 79.19,
    currency: "EUR",
    tags: ["demo", "bench"],
    version: 1,
    updatedAt: "2024-01-01T00:00:00.000Z",
    description: "",
  };
  const bare = JSON.stringify(product).length;
  product.description = "x".repeat(Math.max(0, bytes - bare));
  return JSON.stringify(product);
}

/** An HTTP API v2 event for GET /products/1, as API Gateway (and serverless-offline) sends it. */
function productEvent(): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "GET /products/{id}",
    rawPath: "/products/1",
    rawQueryString: "",
    headers: {
      accept: "application/json",
      "accept-encoding": "gzip, deflate, br",
      host: "api.example.com",
      "user-agent": "bench/1.0",
      "x-forwarded-for": "203.0.113.7",
      "x-forwarded-port": "443",
      "x-forwarded-proto": "https",
    },
    pathParameters: { id: "1" },
    requestContext: {
      accountId: "123456789012",
      apiId: "bench",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: {
        method: "GET",
        path: "/products/1",
        protocol: "HTTP/1.1",
        sourceIp: "203.0.113.7",
        userAgent: "bench/1.0",
      },
      requestId: "bench-request",
      routeKey: "GET /products/{id}",
      stage: "$default",
      time: "01/Jan/2024:00:00:00 +0000",
      timeEpoch: 1_704_067_200_000,
    },
    isBase64Encoded: false,
  };
}

function minimalContext(): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "bench-getProduct",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:bench-getProduct",
    memoryLimitInMB: "512",
    awsRequestId: "bench-request",
    logGroupName: "/aws/lambda/bench-getProduct",
    logStreamName: "bench",
    getRemainingTimeInMillis: () => 10_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** One timed subject: a call resolves true when its result is the expected one. */
interface Subject {
  id: "middy" | "bare";
  call(): Promise<boolean>;
  describeFailure(): string;
}

interface HitOverhead {
  hitOverheadRatio: number;
  middyP50Us: number;
  middyP99Us: number;
  bareP50Us: number;
  bareP99Us: number;
  /** Per round: p50 middy / p50 bare, to show the spread. */
  ratioByRound: number[];
  key: string;
  productBytes: number;
  cachedEntryBytes: number;
  memcachedVersion: string | undefined;
  memcachedThreads: number;
  rounds: number;
  opsPerRound: number;
  turn: number;
}

async function measureHitOverhead(): Promise<HitOverhead> {
  let memcached: MemcachedProcess | undefined;
  let client: MemcacheClient | undefined;
  try {
    memcached = await startMemcached({ args: ["-t", String(settings.memcachedThreads)] });
    client = new MemcacheClient({
      servers: memcached.endpoint,
      timeoutMs: settings.timeoutMs,
      connectTimeoutMs: settings.connectTimeoutMs,
    });
    const memcachedVersion = Object.values(await client.version())[0];
    const memcachedThreads = Number(Object.values(await client.stats("settings"))[0]?.num_threads);

    // Built like functions/products.ts `get`, with a fixed body instead of the origin call.
    const body = productJson(settings.productBytes);
    const handler = middy(async () => ({
      statusCode: 200,
      headers: { "content-type": "application/json" },
      body,
    })).use(
      httpCacheMiddleware({
        cache: new CacheAside(clientStore(client)),
        ttlSeconds: 300,
        keyPrefix,
        getKey: () => keyText,
      }),
    );
    const event = productEvent();
    const context = minimalContext();
    const key = safeKey(keyText, keyPrefix);

    // The first invocation is a MISS that stores the entry; every one after must be a HIT.
    const first = (await handler(event, context)) as HttpResult;
    const firstStatus = first.headers?.["x-cache"];
    if (firstStatus !== "MISS") {
      throw new WrongStatusError(`first invocation returned x-cache ${firstStatus}, expected MISS`);
    }

    let lastMiddy: HttpResult | undefined;
    let lastBare: unknown;
    const middySubject: Subject = {
      id: "middy",
      call: async () => {
        lastMiddy = (await handler(event, context)) as HttpResult;
        return lastMiddy.headers?.["x-cache"] === "HIT" && lastMiddy.body === body;
      },
      describeFailure: () =>
        `middy handler returned x-cache ${String(lastMiddy?.headers?.["x-cache"])} ` +
        `(status ${lastMiddy?.statusCode}), expected HIT with the stored body`,
    };
    const bareSubject: Subject = {
      id: "bare",
      call: async () => {
        lastBare = await client!.get(key);
        return (lastBare as { body?: unknown } | undefined)?.body === body;
      },
      describeFailure: () =>
        `client.get(${key}) returned ${JSON.stringify(lastBare)?.slice(0, 80)}, expected the entry`,
    };
    const subjects = [middySubject, bareSubject];
    for (const subject of subjects) {
      if (!(await subject.call())) throw new WrongStatusError(subject.describeFailure());
    }

    const pooled = { middy: [] as Float64Array[], bare: [] as Float64Array[] };
    const ratioByRound: number[] = [];
    for (let r = 0; r < settings.rounds; r++) {
      const order = rotated(subjects, r);
      for (const subject of order) {
        for (let i = 0; i < settings.warmupOps; i++) {
          if (!(await subject.call())) throw new WrongStatusError(subject.describeFailure());
        }
      }
      const samples = {
        middy: new Float64Array(settings.opsPerRound),
        bare: new Float64Array(settings.opsPerRound),
      };
      const counts = { middy: 0, bare: 0 };
      for (let done = 0; done < settings.opsPerRound; done += settings.turn) {
        const calls = Math.min(settings.turn, settings.opsPerRound - done);
        for (const subject of order) {
          const into = samples[subject.id];
          for (let i = 0; i < calls; i++) {
            const start = process.hrtime.bigint();
            const ok = await subject.call();
            into[counts[subject.id]++] = Number(process.hrtime.bigint() - start);
            if (!ok) throw new WrongStatusError(subject.describeFailure());
          }
        }
      }
      pooled.middy.push(samples.middy);
      pooled.bare.push(samples.bare);
      ratioByRound.push(round(percentile(samples.middy, 0.5) / percentile(samples.bare, 0.5), 3));
      if (process.stderr.isTTY)
        process.stderr.write(`in-process round ${r + 1}/${settings.rounds}\r`);
    }

    const all = (series: Float64Array[]) => Float64Array.from(series.flatMap((s) => [...s]));
    const middyAll = all(pooled.middy);
    const bareAll = all(pooled.bare);
    const middyP50 = percentile(middyAll, 0.5);
    const bareP50 = percentile(bareAll, 0.5);
    return {
      hitOverheadRatio: round(middyP50 / bareP50, 3),
      middyP50Us: round(middyP50 / 1000, 1),
      middyP99Us: round(percentile(middyAll, 0.99) / 1000, 1),
      bareP50Us: round(bareP50 / 1000, 1),
      bareP99Us: round(percentile(bareAll, 0.99) / 1000, 1),
      ratioByRound,
      key,
      productBytes: body.length,
      cachedEntryBytes: await entryBytes(client, key),
      memcachedVersion,
      memcachedThreads,
      rounds: settings.rounds,
      opsPerRound: settings.opsPerRound,
      turn: settings.turn,
    };
  } finally {
    await client?.close();
    await memcached?.stop();
  }
}

/** Size of the stored entry as JSON (the cached response the middleware wrote). */
async function entryBytes(client: MemcacheClient, key: string): Promise<number> {
  const value = await client.get(key);
  return value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value));
}

// ---- 2. over HTTP: HIT vs MISS through the local stack ----

interface HttpHitVsMiss {
  httpHitVsMiss: number;
  hitP50Ms: number;
  hitP99Ms: number;
  missP50Ms: number;
  missP99Ms: number;
  mismatches: number;
  /** The first few mismatches, for the report. */
  mismatchSamples: string[];
  /** Origin reads during the timed part: one per MISS is expected. */
  originReads: number;
  requests: { hits: number; misses: number };
  originDelayMs: number;
}

async function measureHttp(): Promise<HttpHitVsMiss> {
  // The stack's functions read these; the demo origin gets its delay from originDelayMs.
  process.env.ORIGIN_DELAY_MS = String(settings.originDelayMs);
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      oldEndpoint: "", // one cluster: HIT / MISS only, no fallback
      originDelayMs: settings.originDelayMs,
      // Free ports everywhere, so a developer's `npm run dev` keeps its own.
      ports: { http: 0, lambda: 0, origin: 0, memcachedNew: 0 },
      stdio: "pipe",
    });
    const base = stack.httpUrl;
    const mismatchSamples: string[] = [];
    let mismatches = 0;

    const get = async (id: number, expected: "HIT" | "MISS"): Promise<number> => {
      const startedAt = Date.now();
      const start = performance.now();
      let response: Response | undefined;
      let text = "";
      let failure: string | undefined;
      try {
        response = await fetch(`${base}/products/${id}`, {
          signal: AbortSignal.timeout(settings.httpTimeoutMs),
        });
        text = await response.text();
        // serverless-offline answers a handler that never returned with this body (and HTTP 200).
        if (text.includes("LambdaTimeoutError")) failure = "Lambda timeout (offline's 504)";
      } catch (error) {
        failure = describeError(error);
      }
      const ms = performance.now() - start;
      if (failure !== undefined || response === undefined) {
        throw new DroppedRequestError(
          `GET /products/${id} (expecting ${expected}) got no answer after ${Math.round(ms)} ms: ` +
            `${failure}; ${await describeSourceChanges(startedAt)}`,
        );
      }
      const status = response.headers.get("x-cache");
      if (response.status !== 200 || status !== expected) {
        mismatches++;
        if (mismatchSamples.length < 5) {
          mismatchSamples.push(
            `GET /products/${id}: HTTP ${response.status}, x-cache ${status}, expected ${expected} (${text.slice(0, 80)})`,
          );
        }
      }
      return ms;
    };

    // Warm-up on ids far from the timed ones: starts the function's worker, opens its socket.
    const warmBase = 90_000;
    for (let i = 1; i <= settings.httpWarmupPairs; i++) {
      await get(warmBase + i, "MISS");
      await get(warmBase + i, "HIT");
    }
    if (mismatches > 0) {
      throw new WrongStatusError(`warm-up: ${mismatchSamples.join("; ")}`);
    }

    const readsBefore = await originReads(stack.originUrl);
    const hits: number[] = [];
    const misses: number[] = [];
    for (let i = 1; i <= settings.httpRequests; i++) {
      // A MISS on an id never requested before, and a HIT on one requested earlier (spread
      // over the earlier ids, not only the one just stored); which goes first alternates.
      const hitId = i === 1 ? warmBase + 1 : 1 + ((i * 7919) % (i - 1));
      if (i % 2 === 1) {
        misses.push(await get(i, "MISS"));
        hits.push(await get(hitId, "HIT"));
      } else {
        hits.push(await get(hitId, "HIT"));
        misses.push(await get(i, "MISS"));
      }
    }
    const reads = (await originReads(stack.originUrl)) - readsBefore;

    const hitP50 = percentile(hits, 0.5);
    const missP50 = percentile(misses, 0.5);
    return {
      httpHitVsMiss: round(hitP50 / missP50, 3),
      hitP50Ms: round(hitP50, 2),
      hitP99Ms: round(percentile(hits, 0.99), 2),
      missP50Ms: round(missP50, 2),
      missP99Ms: round(percentile(misses, 0.99), 2),
      mismatches,
      mismatchSamples,
      originReads: reads,
      requests: { hits: hits.length, misses: misses.length },
      originDelayMs: settings.originDelayMs,
    };
  } catch (error) {
    if (error instanceof DroppedRequestError) throw error;
    const tail = stack?.output().trim().split("\n").slice(-15).join("\n");
    if (tail) console.error(`serverless-offline output (last lines):\n${tail}`);
    throw error;
  } finally {
    await stack?.stop();
  }
}

/**
 * serverless-esbuild watches every .js/.ts file of the project while offline runs: a saved
 * source file rebuilds the functions and serverless-offline terminates their worker threads,
 * and a request in flight at that moment is never answered (offline replies "Lambda timeout"
 * after the function's timeout). Such a dropped request says nothing about the cache, so the
 * measurement starts over on a fresh stack, up to httpAttempts times; every dropped attempt is
 * kept in the results. A wrong x-cache is never retried.
 */
async function measureHttpRetrying(): Promise<HttpHitVsMiss & { droppedAttempts: string[] }> {
  const droppedAttempts: string[] = [];
  for (;;) {
    try {
      return { ...(await measureHttp()), droppedAttempts };
    } catch (error) {
      if (!(error instanceof DroppedRequestError)) throw error;
      droppedAttempts.push(error.message);
      const again = droppedAttempts.length < settings.httpAttempts;
      console.error(`http: ${error.message}${again ? "; starting over on a fresh stack" : ""}`);
      if (!again) throw error;
    }
  }
}

/** Folders serverless-esbuild's watcher ignores (and that would be slow to walk). */
const unwatchedDirs = new Set(["node_modules", ".git", ".esbuild", ".serverless", "dist"]);
/** A change this long before a request was sent can still drop it (rebuild, then cleanup). */
const rebuildLeadMs = 2_000;

/**
 * Which watched project files (.js/.ts, as serverless-esbuild's default pattern) changed from
 * shortly before `sentAtMs` (epoch ms) on, to explain a dropped request.
 */
async function describeSourceChanges(sentAtMs: number): Promise<string> {
  const since = sentAtMs - rebuildLeadMs;
  let first: { file: string; mtimeMs: number } | undefined;
  let changed = 0;
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(path.join(projectRoot, dir), { withFileTypes: true }).catch(
      () => [],
    );
    for (const entry of entries) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!unwatchedDirs.has(entry.name)) await walk(file);
        continue;
      }
      if (!/\.(ts|js)$/.test(entry.name)) continue;
      const { mtimeMs } = await stat(path.join(projectRoot, file)).catch(() => ({ mtimeMs: 0 }));
      if (mtimeMs < since) continue;
      changed++;
      if (mtimeMs < (first?.mtimeMs ?? Number.POSITIVE_INFINITY)) first = { file, mtimeMs };
    }
  };
  await walk("");
  if (first === undefined) {
    return `no watched project file changed from ${rebuildLeadMs} ms before it was sent on`;
  }
  const others = changed > 1 ? ` (and ${changed - 1} more file(s) since)` : "";
  const offset = Math.round(first.mtimeMs - sentAtMs);
  return (
    `${first.file} changed ${Math.abs(offset)} ms ${offset < 0 ? "before" : "after"} it was ` +
    `sent${others}: serverless-esbuild rebuilt the functions and serverless-offline dropped it`
  );
}

async function originReads(originUrl: string): Promise<number> {
  const response = await fetch(`${originUrl}/_stats`);
  return ((await response.json()) as { reads: number }).reads;
}

// ---- 3. the bundle, as serverless.yml's custom.esbuild builds it ----

interface BundleResult {
  bundleBytes: number;
  awsSdkInBundle: boolean;
  /** The largest inputs, in output bytes. */
  topInputs: Array<{ input: string; bytes: number }>;
  file: string;
}

async function buildBundle(outDir: string): Promise<BundleResult> {
  const outfile = path.join(outDir, "products.mjs");
  const result = await build({
    absWorkingDir: projectRoot,
    entryPoints: ["functions/products.ts"],
    outfile,
    bundle: true,
    minify: true,
    platform: "node",
    target: "node24",
    format: "esm",
    mainFields: ["module", "main"],
    external: ["@aws-sdk/*"],
    metafile: true,
    logLevel: "silent",
  });
  const text = await readFile(outfile, "utf8");
  const output = Object.values(result.metafile.outputs)[0];
  const topInputs = Object.entries(output?.inputs ?? {})
    .map(([input, { bytesInOutput }]) => ({ input, bytes: bytesInOutput }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, 8);
  return {
    bundleBytes: (await stat(outfile)).size,
    awsSdkInBundle: text.includes("@aws-sdk") || text.includes("client-elasticache"),
    topInputs,
    file: outfile,
  };
}

// ---- 4. import time of the bundle in a fresh process ----

function measureBundleImport(bundleFile: string, outDir: string): Promise<ImportTimes> {
  // Only what the function needs (and PATH): no developer CACHE_OLD_ENDPOINT leaking in.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CACHE_NEW_ENDPOINT: "127.0.0.1:11211",
    CACHE_METRICS: "off",
  };
  return measureImport(bundleFile, { runs: settings.importRuns, env, scratchDir: outDir });
}

// ---- report ----

// ---- main ----

async function main(): Promise<number> {
  const errors: Record<string, string> = {};
  let wrongStatus = false;
  const attempt = async <T>(part: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof WrongStatusError) wrongStatus = true;
      errors[part] = describeError(error);
      console.error(`${part}: ${errors[part]}`);
      return undefined;
    }
  };

  const started = performance.now();
  const outDir = await mkdtemp(path.join(tmpdir(), "bench-middleware-"));
  try {
    const inProcess = await attempt("hitOverhead", measureHitOverhead);
    const bundle = await attempt("bundle", () => buildBundle(outDir));
    const imports = bundle
      ? await attempt("import", () => measureBundleImport(bundle.file, outDir))
      : undefined;
    const http = await attempt("http", measureHttpRetrying);
    if (http && http.mismatches > 0) wrongStatus = true;

    const pass = {
      hitOverheadRatio: inProcess && inProcess.hitOverheadRatio <= targets.hitOverheadRatio,
      bundleBytes: bundle && bundle.bundleBytes <= targets.bundleBytes,
      awsSdkInBundle: bundle && bundle.awsSdkInBundle === targets.awsSdkInBundle,
      httpXCacheMismatches: http && http.mismatches === targets.httpXCacheMismatches,
      httpHitVsMiss: http && http.httpHitVsMiss < targets.httpHitVsMiss,
    };

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      hitOverheadRatio: inProcess?.hitOverheadRatio ?? null,
      httpHitVsMiss: http?.httpHitVsMiss ?? null,
      bundleBytes: bundle?.bundleBytes ?? null,
      awsSdkInBundle: bundle?.awsSdkInBundle ?? null,
      importMs: imports?.importMs ?? null,
      importBaselineMs: imports?.importBaselineMs ?? null,
      inProcess: inProcess ?? null,
      http: http ?? null,
      bundle: bundle ? { bytes: bundle.bundleBytes, topInputs: bundle.topInputs } : null,
      import: imports ?? null,
      targets,
      pass,
      ...(Object.keys(errors).length > 0 && { errors }),
      benchMs: Math.round(performance.now() - started),
    };

    const show = (value: number | boolean | undefined, digits = 3) =>
      value === undefined
        ? "error"
        : typeof value === "number"
          ? value.toFixed(digits)
          : String(value);
    console.log(`\nnode ${process.version}, memcached ${inProcess?.memcachedVersion ?? "?"}\n`);
    console.log(
      formatTable([
        ["metric", "value", "target", "verdict"],
        [
          "hitOverheadRatio (p50 middy HIT / p50 client.get)",
          show(inProcess?.hitOverheadRatio),
          `<= ${targets.hitOverheadRatio.toFixed(2)}`,
          verdict(pass.hitOverheadRatio),
        ],
        [
          "  middy HIT p50 / p99 µs",
          inProcess ? `${inProcess.middyP50Us} / ${inProcess.middyP99Us}` : "error",
          "",
          "",
        ],
        [
          "  client.get p50 / p99 µs",
          inProcess ? `${inProcess.bareP50Us} / ${inProcess.bareP99Us}` : "error",
          "",
          "",
        ],
        [
          `httpHitVsMiss (origin ${settings.originDelayMs} ms)`,
          show(http?.httpHitVsMiss),
          `< ${targets.httpHitVsMiss} (sanity)`,
          verdict(pass.httpHitVsMiss),
        ],
        ["  HIT p50 / p99 ms", http ? `${http.hitP50Ms} / ${http.hitP99Ms}` : "error", "", ""],
        ["  MISS p50 / p99 ms", http ? `${http.missP50Ms} / ${http.missP99Ms}` : "error", "", ""],
        [
          "  x-cache mismatches",
          show(http?.mismatches, 0),
          "0",
          http ? (http.mismatches === 0 ? "ok" : "WRONG") : "n/a",
        ],
        [
          "  origin reads (timed part)",
          show(http?.originReads, 0),
          String(settings.httpRequests),
          "",
        ],
        [
          "  attempts dropped by a rebuild",
          show(http?.droppedAttempts.length, 0),
          `< ${settings.httpAttempts}`,
          "",
        ],
        [
          "bundleBytes (functions/products.ts)",
          show(bundle?.bundleBytes, 0),
          `<= ${targets.bundleBytes}`,
          verdict(pass.bundleBytes),
        ],
        ["awsSdkInBundle", show(bundle?.awsSdkInBundle), "false", verdict(pass.awsSdkInBundle)],
        [`importMs (median of ${settings.importRuns})`, show(imports?.importMs, 2), "", ""],
        ["  importBaselineMs (empty module)", show(imports?.importBaselineMs, 2), "", ""],
        [
          "  process spawn-to-exit ms (bundle / empty)",
          imports ? `${imports.processMs} / ${imports.processBaselineMs}` : "error",
          "",
          "",
        ],
      ]),
    );
    if (http && http.mismatchSamples.length > 0) {
      console.log(`\nwrong x-cache:\n  ${http.mismatchSamples.join("\n  ")}`);
    }

    await writeResults(resultsFile, results);
    return wrongStatus || Object.keys(errors).length > 0 ? 1 : 0;
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

runMain(main);
