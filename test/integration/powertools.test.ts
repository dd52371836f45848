// The cache beside the real Powertools for AWS Lambda middlewares, against a real memcached.
// A hit ends the Middy request in `before`, so no `after` of any middleware runs: the cache must
// run the cleanup functions Powertools registered, or the hit's metrics are never flushed and
// leak into the next invocation's blob. And the cache-aside events feed Powertools Metrics
// through cacheEventMetrics, as an alternative to the reference app's own EMF lines.

import {
  IDEMPOTENCY_KEY,
  LOGGER_KEY,
  METRICS_KEY,
  TRACER_KEY,
} from "@aws-lambda-powertools/commons";
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy, { type MiddlewareObj } from "@middy/core";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import { afterEach, beforeEach, describe, expect, vi } from "vitest";
import {
  CacheAside,
  type CacheEvent,
  cacheEventMetrics,
  clientStore,
  type HttpResult,
} from "../../lib/cache/index.ts";
import { MemcacheClient } from "../../lib/index.ts";
import { cleanupKeys, cleanupMiddlewares } from "../../lib/middleware/cleanup.ts";
import { httpCacheMiddleware } from "../../lib/middleware/index.ts";
import { freePort } from "../../tools/ports.ts";
import { it } from "../helpers/fixtures.ts";

/** The fixtures' client of the file's memcached. */
let client: MemcacheClient;

it.beforeAll(({ client: fileClient }) => {
  client = fileClient;
});

beforeEach(async () => {
  await client.flushAll();
});

// ---- what Powertools writes ----

/** One EMF blob as Powertools Metrics prints it: metric values by name, plus `_aws`. */
type Blob = Record<string, unknown> & { _aws: { CloudWatchMetrics: unknown[] } };

let stdout: string[] = [];

beforeEach(() => {
  stdout = [];
  // Powertools writes metrics (and logs) with its own Console on process.stdout.
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The metric blobs written since the last call, oldest first. */
function takeBlobs(): Blob[] {
  const blobs = stdout
    .flatMap((chunk) => chunk.split("\n"))
    .filter((line) => line.includes('"_aws"'))
    .map((line) => JSON.parse(line) as Blob);
  stdout = [];
  return blobs;
}

/** How many times `name` was added in a blob (Powertools keeps a list for repeated names). */
function count(blob: Blob, name: string): number {
  const value = blob[name];
  if (value === undefined) return 0;
  return Array.isArray(value) ? value.length : 1;
}

// ---- a Lambda invocation ----

const context = {
  functionName: "products",
  functionVersion: "$LATEST",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:products",
  memoryLimitInMB: "256",
  awsRequestId: "request-1",
  getRemainingTimeInMillis: () => 3_000,
} as unknown as Context;

function get(path: string): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "GET /products/{id}",
    rawPath: path,
    rawQueryString: "",
    headers: { host: "api.example.com" },
    requestContext: { http: { method: "GET", path } },
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEventV2;
}

function newMetrics(): Metrics {
  return new Metrics({ namespace: "LambdaMemcacheTest", serviceName: "products" });
}

describe("httpCacheMiddleware after Powertools logMetrics and injectLambdaContext", () => {
  function products(metrics: Metrics, logger: Logger) {
    const cache = new CacheAside(clientStore(client), { onEvent: cacheEventMetrics(metrics) });
    const origin = vi.fn(async (event: APIGatewayProxyEventV2): Promise<HttpResult> => {
      metrics.addMetric("OriginCall", MetricUnit.Count, 1);
      return { statusCode: 200, body: JSON.stringify({ path: event.rawPath }) };
    });
    const handler = middy(origin)
      .use(injectLambdaContext(logger, { resetKeys: true }))
      .use(logMetrics(metrics))
      .use(httpCacheMiddleware({ cache, ttlSeconds: 60 }));
    return { handler, origin };
  }

  it("emits one metrics blob per invocation, hit or miss, and a hit's values stay in its own blob", async () => {
    const metrics = newMetrics();
    const logger = new Logger({ serviceName: "products" });
    const { handler, origin } = products(metrics, logger);

    const outcomes: string[] = [];
    const blobs: Blob[] = [];
    for (const path of ["/products/1", "/products/1", "/products/1", "/products/2"]) {
      const response = (await handler(get(path), context)) as HttpResult;
      outcomes.push(String(response.headers?.["x-cache"]));
      blobs.push(...takeBlobs());
      // Each invocation has flushed by the time it returns: nothing is left for the next one.
      expect(blobs).toHaveLength(outcomes.length);
    }

    expect(outcomes).toEqual(["MISS", "HIT", "HIT", "MISS"]);
    expect(origin).toHaveBeenCalledTimes(2);
    const counts = blobs.map((blob) => ({
      hit: count(blob, "CacheHit"),
      miss: count(blob, "CacheMiss"),
      write: count(blob, "CacheWrite"),
      origin: count(blob, "OriginCall"),
    }));
    expect(counts).toEqual([
      { hit: 0, miss: 1, write: 1, origin: 1 },
      { hit: 1, miss: 0, write: 0, origin: 0 },
      { hit: 1, miss: 0, write: 0, origin: 0 },
      { hit: 0, miss: 1, write: 1, origin: 1 },
    ]);
  });

  it("lets injectLambdaContext reset the logger's keys on a hit too", async () => {
    const metrics = newMetrics();
    const logger = new Logger({ serviceName: "products" });
    const resetKeys = vi.spyOn(logger, "resetKeys");
    const { handler } = products(metrics, logger);

    await handler(get("/products/1"), context);
    expect(resetKeys).toHaveBeenCalledTimes(1); // the miss: Powertools' own `after`
    const hit = (await handler(get("/products/1"), context)) as HttpResult;

    expect(hit.headers?.["x-cache"]).toBe("HIT");
    expect(resetKeys).toHaveBeenCalledTimes(2); // the hit: through the cleanup
  });

  it("shows why: an early return without the cleanup flushes nothing, and its metric lands in the next blob", async () => {
    const metrics = newMetrics();
    const earlyReturn = (cleanup: boolean): MiddlewareObj => ({
      before: async (request) => {
        if ((request.event as APIGatewayProxyEventV2).rawPath !== "/early") return undefined;
        metrics.addMetric("EarlyReturn", MetricUnit.Count, 1);
        if (cleanup) await cleanupMiddlewares(request);
        return { statusCode: 200, body: "early" };
      },
    });
    const chain = (cleanup: boolean) =>
      middy(async () => {
        metrics.addMetric("Handled", MetricUnit.Count, 1);
        return { statusCode: 200, body: "handled" };
      })
        .use(logMetrics(metrics))
        .use(earlyReturn(cleanup));

    const without = chain(false);
    await without(get("/early"), context);
    expect(takeBlobs()).toEqual([]);
    await without(get("/other"), context);
    const [leaked] = takeBlobs();
    expect(count(leaked!, "EarlyReturn")).toBe(1);
    expect(count(leaked!, "Handled")).toBe(1);

    const withCleanup = chain(true);
    await withCleanup(get("/early"), context);
    await withCleanup(get("/other"), context);
    const blobs = takeBlobs();
    expect(blobs.map((blob) => [count(blob, "EarlyReturn"), count(blob, "Handled")])).toEqual([
      [1, 0],
      [0, 1],
    ]);
  });

  it("runs the cleanups under the keys Powertools defines, in the order its cleanupMiddlewares uses", async () => {
    expect(cleanupKeys).toEqual([TRACER_KEY, METRICS_KEY, LOGGER_KEY, IDEMPOTENCY_KEY]);
    const ran: string[] = [];
    const internal: Record<string, unknown> = { other: () => ran.push("other") };
    for (const key of [...cleanupKeys].reverse()) internal[key] = async () => ran.push(key);
    internal["powertools-for-aws.metrics"] = "not a function";

    await cleanupMiddlewares({ internal });

    expect(ran).toEqual([TRACER_KEY, LOGGER_KEY, IDEMPOTENCY_KEY]);
    expect(cleanupMiddlewares({ internal: { other: () => {} } })).toBeUndefined();
  });
});

describe("cacheEventMetrics with Powertools Metrics (no Middy)", () => {
  it("adds a count per cache event and its latency to the invocation's blob", async () => {
    const metrics = newMetrics();
    const cache = new CacheAside(clientStore(client), { onEvent: cacheEventMetrics(metrics) });
    const loader = vi.fn(async () => ({ id: 7 }));

    await cache.getOrLoad("product:7", loader);
    await cache.getOrLoad("product:7", loader);
    await cache.invalidate("product:7");
    metrics.publishStoredMetrics();

    const [blob, ...rest] = takeBlobs();
    expect(rest).toEqual([]);
    expect(loader).toHaveBeenCalledTimes(1);
    expect({
      miss: count(blob!, "CacheMiss"),
      write: count(blob!, "CacheWrite"),
      hit: count(blob!, "CacheHit"),
      invalidate: count(blob!, "CacheInvalidate"),
      latency: count(blob!, "CacheLatency"),
    }).toEqual({ miss: 1, write: 1, hit: 1, invalidate: 1, latency: 4 });
    const definitions = JSON.stringify(blob!._aws.CloudWatchMetrics);
    expect(definitions).toContain('{"Name":"CacheHit","Unit":"Count"}');
    expect(definitions).toContain('{"Name":"CacheLatency","Unit":"Milliseconds"}');
  });

  it("counts a cache that cannot be reached as CacheBypass, under a custom prefix and without latency", async () => {
    const metrics = newMetrics();
    const down = new MemcacheClient({ servers: `127.0.0.1:${await freePort()}`, timeoutMs: 200 });
    const seen: CacheEvent["type"][] = [];
    const toMetrics = cacheEventMetrics(metrics, { prefix: "Products", latency: false });
    const cache = new CacheAside(clientStore(down), {
      onEvent: (event) => {
        seen.push(event.type);
        toMetrics(event);
      },
    });
    try {
      const { status } = await cache.getOrLoad("product:8", async () => ({ id: 8 }));
      expect(status).toBe("BYPASS");
    } finally {
      down.close();
    }
    metrics.publishStoredMetrics();

    const [blob] = takeBlobs();
    expect(seen).toEqual(["bypass"]);
    expect(count(blob!, "ProductsBypass")).toBe(1);
    expect(Object.keys(blob!).filter((key) => key.startsWith("Cache"))).toEqual([]);
    expect(count(blob!, "ProductsLatency")).toBe(0);
  });
});
