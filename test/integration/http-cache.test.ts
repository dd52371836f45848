// The HTTP response cache against a real memcached. One table runs every case through both
// entry points — the Middy middleware and the plain withHttpCache wrapper — with a counting fake
// handler, so "the handler ran" and "the response came from the cache" are both observable.
// Then the Middy-only behaviour: early return on a hit and where to attach the cache relative to
// other middlewares.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import middy, { type MiddlewareObj } from "@middy/core";
import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
  Context,
} from "aws-lambda";
import { beforeEach, describe, expect, vi } from "vitest";
import { CacheAside } from "../../lib/cache/cacheAside.ts";
import {
  type HttpCacheOptions,
  type HttpEvent,
  type HttpResult,
  withHttpCache,
} from "../../lib/cache/httpCache.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { httpCacheMiddleware } from "../../lib/middleware/httpCache.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

/** The fixtures' client of the file's memcached, and a cache over it. */
let client: MemcacheClient;
let cache: CacheAside;

it.beforeAll(({ client: fileClient }) => {
  client = fileClient;
  cache = new CacheAside(clientStore(client));
});

beforeEach(async () => {
  await client.flushAll();
});

// ---- events ----

interface V2Request {
  method?: string;
  path?: string;
  /** The raw query string, without "?". */
  query?: string;
  headers?: Record<string, string>;
  pathParameters?: Record<string, string>;
}

/** An API Gateway HTTP API (payload 2.0) event. */
function v2Event({
  method = "GET",
  path = "/products/1",
  query = "",
  headers = {},
  pathParameters,
}: V2Request = {}): APIGatewayProxyEventV2 {
  const queryStringParameters: Record<string, string> = {};
  for (const pair of query.split("&").filter(Boolean)) {
    const [name = "", value = ""] = pair.split("=");
    queryStringParameters[name] =
      queryStringParameters[name] === undefined ? value : `${queryStringParameters[name]},${value}`;
  }
  return {
    version: "2.0",
    routeKey: `${method} /products/{id}`,
    rawPath: path,
    rawQueryString: query,
    headers: { host: "api.example.com", ...headers },
    ...(query === "" ? {} : { queryStringParameters }),
    ...(pathParameters === undefined ? {} : { pathParameters }),
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: {
        method,
        path,
        protocol: "HTTP/1.1",
        sourceIp: "192.0.2.1",
        userAgent: "vitest",
      },
      requestId: "request-id",
      routeKey: `${method} /products/{id}`,
      stage: "$default",
      time: "01/Jan/2026:00:00:00 +0000",
      timeEpoch: 1_767_225_600_000,
    },
    isBase64Encoded: false,
  };
}

const get = (path: string, more: Omit<V2Request, "path" | "method"> = {}) =>
  v2Event({ path, ...more });

/** An API Gateway REST API (payload 1.0) event. */
function v1Event({
  method = "GET",
  path = "/products/1",
  query,
  multiQuery,
  headers = {},
}: {
  method?: string;
  path?: string;
  query?: Record<string, string>;
  multiQuery?: Record<string, string[]>;
  headers?: Record<string, string>;
}): APIGatewayProxyEvent {
  return {
    resource: "/products/{id}",
    path,
    httpMethod: method,
    headers: { Host: "api.example.com", ...headers },
    multiValueHeaders: Object.fromEntries(
      Object.entries({ Host: "api.example.com", ...headers }).map(([k, v]) => [k, [v]]),
    ),
    queryStringParameters: query ?? null,
    multiValueQueryStringParameters:
      multiQuery ??
      (query === undefined
        ? null
        : Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]]))),
    pathParameters: null,
    stageVariables: null,
    body: null,
    isBase64Encoded: false,
    requestContext: {
      httpMethod: method,
      path: `/prod${path}`,
      stage: "prod",
      requestId: "request-id",
      resourcePath: "/products/{id}",
    } as APIGatewayProxyEvent["requestContext"],
  };
}

// ---- the fake origin handler ----

type Reply = (event: HttpEvent, call: number) => HttpResult | Promise<HttpResult>;

/** The JSON a default reply carries: which request and which handler call produced it. */
interface Payload {
  path: string;
  call: number;
}

function pathOf(event: HttpEvent): string {
  return (event as APIGatewayProxyEventV2).rawPath ?? (event as APIGatewayProxyEvent).path;
}

const jsonReply =
  (extra: Partial<APIGatewayProxyStructuredResultV2> = {}): Reply =>
  (event, call) => ({
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ path: pathOf(event), call } satisfies Payload),
    ...extra,
  });

/** A handler that counts its calls and answers with `reply` (a JSON 200 by default). */
function countingHandler(reply: Reply = jsonReply()) {
  let calls = 0;
  return vi.fn(async (event: HttpEvent, _context: Context): Promise<HttpResult> => {
    calls++;
    return reply(event, calls);
  });
}
type CountingHandler = ReturnType<typeof countingHandler>;

function headersOf(result: HttpResult): Record<string, string | number | boolean> {
  return result.headers ?? {};
}

function xCache(result: HttpResult): string | number | boolean | undefined {
  return headersOf(result)["x-cache"];
}

function payloadOf(result: HttpResult): Payload {
  return JSON.parse(result.body ?? "") as Payload;
}

/** Storage commands memcached has run so far (to see that nothing was written). */
async function setCount(): Promise<number> {
  return (await counters(client, ["cmd_set"])).cmd_set;
}

// ---- the two entry points ----

type Invoke = (event: HttpEvent) => Promise<HttpResult>;
const context = {} as Context;

interface Variant {
  name: string;
  wrap(handler: CountingHandler, options: Partial<HttpCacheOptions>): Invoke;
}

const variants: Variant[] = [
  {
    name: "middy(handler).use(httpCacheMiddleware())",
    wrap(handler, options) {
      const wrapped = middy(handler).use(httpCacheMiddleware(options));
      return (event) => wrapped(event, context);
    },
  },
  {
    name: "withHttpCache(handler)",
    wrap(handler, options) {
      const wrapped = withHttpCache(handler, options);
      return (event) => wrapped(event, context);
    },
  },
];

describe.each(variants)("$name", ({ wrap }) => {
  /** `handler` behind the cache under test, over the shared memcached. */
  const cached = (handler: CountingHandler, options: Partial<HttpCacheOptions> = {}): Invoke =>
    wrap(handler, { cache, ...options });

  it("runs the handler on the first GET (MISS) and serves the second from the cache (HIT)", async () => {
    const handler = countingHandler();
    const invoke = cached(handler);

    const first = await invoke(get("/products/1"));
    expect(handler).toHaveBeenCalledTimes(1);
    expect(first.statusCode).toBe(200);
    expect(xCache(first)).toBe("MISS");
    expect(payloadOf(first)).toEqual({ path: "/products/1", call: 1 });

    const second = await invoke(get("/products/1"));
    expect(handler).toHaveBeenCalledTimes(1);
    expect(second.statusCode).toBe(200);
    expect(xCache(second)).toBe("HIT");
    expect(second.body).toBe(first.body);
    expect(headersOf(second)["content-type"]).toBe("application/json");
    expect(String(headersOf(second).age)).toMatch(/^\d+$/);
    expect(headersOf(first).age).toBeUndefined();
  });

  it("keeps different paths and different query values in different entries", async () => {
    const handler = countingHandler();
    const invoke = cached(handler);

    await invoke(get("/products/1", { query: "a=1" }));
    const otherValue = await invoke(get("/products/1", { query: "a=2" }));
    const otherPath = await invoke(get("/products/2", { query: "a=1" }));

    expect(xCache(otherValue)).toBe("MISS");
    expect(xCache(otherPath)).toBe("MISS");
    expect(handler).toHaveBeenCalledTimes(3);
  });

  it("shares one entry between query strings that differ only in parameter order", async () => {
    const handler = countingHandler();
    const invoke = cached(handler);

    const first = await invoke(get("/search", { query: "a=1&b=2" }));
    const second = await invoke(get("/search", { query: "b=2&a=1" }));

    expect(xCache(first)).toBe("MISS");
    expect(xCache(second)).toBe("HIT");
    expect(second.body).toBe(first.body);
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it.each(["POST", "PUT", "DELETE", "PATCH"])(
    "never caches %s: the handler always runs and no x-cache header is added",
    async (method) => {
      const handler = countingHandler();
      const invoke = cached(handler);
      const setsBefore = await setCount();

      const first = await invoke(v2Event({ method, path: "/products/1" }));
      const second = await invoke(v2Event({ method, path: "/products/1" }));

      expect(handler).toHaveBeenCalledTimes(2);
      expect(xCache(first)).toBeUndefined();
      expect(xCache(second)).toBeUndefined();
      expect(payloadOf(second).call).toBe(2);
      expect(await setCount()).toBe(setsBefore);
    },
  );

  it("does not cache a request with an Authorization header", async () => {
    const handler = countingHandler();
    const invoke = cached(handler);
    const setsBefore = await setCount();

    const request = get("/me", { headers: { authorization: "Bearer alice" } });
    const first = await invoke(request);
    const second = await invoke(request);

    expect(handler).toHaveBeenCalledTimes(2);
    expect(xCache(first)).toBeUndefined();
    expect(xCache(second)).toBeUndefined();
    expect(await setCount()).toBe(setsBefore);
  });

  it('keeps one entry per token with varyHeaders ["authorization"]', async () => {
    const handler = countingHandler((event, call) => ({
      statusCode: 200,
      body: JSON.stringify({ user: event.headers?.authorization, call }),
    }));
    const invoke = cached(handler, { varyHeaders: ["authorization"] });
    const as = (token: string) => get("/me", { headers: { authorization: `Bearer ${token}` } });

    const alice = await invoke(as("alice"));
    const bob = await invoke(as("bob"));
    const aliceAgain = await invoke(as("alice"));
    const bobAgain = await invoke(as("bob"));

    expect([alice, bob, aliceAgain, bobAgain].map(xCache)).toEqual(["MISS", "MISS", "HIT", "HIT"]);
    expect(JSON.parse(aliceAgain.body ?? "")).toEqual({ user: "Bearer alice", call: 1 });
    expect(JSON.parse(bobAgain.body ?? "")).toEqual({ user: "Bearer bob", call: 2 });
    expect(handler).toHaveBeenCalledTimes(2);
  });

  it('keeps one entry per language with varyHeaders ["accept-language"]', async () => {
    const handler = countingHandler((event, call) => ({
      statusCode: 200,
      body: JSON.stringify({ language: event.headers?.["accept-language"], call }),
    }));
    const invoke = cached(handler, { varyHeaders: ["accept-language"] });
    const inLanguage = (language: string) =>
      get("/products/1", { headers: { "accept-language": language } });

    const en = await invoke(inLanguage("en"));
    const de = await invoke(inLanguage("de"));
    const enAgain = await invoke(inLanguage("en"));
    const deAgain = await invoke(inLanguage("de"));

    expect([en, de, enAgain, deAgain].map(xCache)).toEqual(["MISS", "MISS", "HIT", "HIT"]);
    expect(JSON.parse(enAgain.body ?? "")).toEqual({ language: "en", call: 1 });
    expect(JSON.parse(deAgain.body ?? "")).toEqual({ language: "de", call: 2 });
  });

  it.each<[string, Partial<APIGatewayProxyStructuredResultV2>]>([
    ["status 404", { statusCode: 404 }],
    ["status 500", { statusCode: 500 }],
    ["status 302", { statusCode: 302, headers: { location: "/elsewhere" } }],
    ["a Set-Cookie header", { headers: { "Set-Cookie": "session=abc; HttpOnly" } }],
    ["v2 cookies", { cookies: ["a=b"] }],
    ["Cache-Control: private", { headers: { "Cache-Control": "private, max-age=60" } }],
    ["Cache-Control: no-store", { headers: { "cache-control": "no-store" } }],
    ["Cache-Control: no-cache", { headers: { "Cache-Control": "no-cache" } }],
    ["Vary: *", { headers: { Vary: "*" } }],
    ["Cache-Control: max-age=0", { headers: { "Cache-Control": "public, max-age=0" } }],
    ["Cache-Control: s-maxage=0", { headers: { "Cache-Control": "s-maxage=0, max-age=60" } }],
  ])("does not store a response with %s", async (_label, extra) => {
    const handler = countingHandler(jsonReply(extra));
    const invoke = cached(handler);
    const setsBefore = await setCount();

    const first = await invoke(get("/products/1"));
    const second = await invoke(get("/products/1"));

    expect(handler).toHaveBeenCalledTimes(2);
    expect(xCache(first)).toBe("MISS");
    expect(xCache(second)).toBe("MISS");
    expect(second.statusCode).toBe(extra.statusCode ?? 200);
    expect(payloadOf(second).call).toBe(2);
    expect(await setCount()).toBe(setsBefore);
  });

  it("stores a response with Cache-Control: public, max-age=60", async () => {
    const handler = countingHandler(
      jsonReply({ headers: { "Cache-Control": "public, max-age=60" } }),
    );
    const invoke = cached(handler);

    await invoke(get("/products/1"));
    const second = await invoke(get("/products/1"));

    expect(xCache(second)).toBe("HIT");
    expect(headersOf(second)["Cache-Control"]).toBe("public, max-age=60");
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("stores a response for no longer than its Cache-Control max-age", async () => {
    const handler = countingHandler(jsonReply({ headers: { "Cache-Control": "max-age=1" } }));
    const invoke = cached(handler);

    await invoke(get("/short-lived"));
    expect(xCache(await invoke(get("/short-lived")))).toBe("HIT");
    // ttlSeconds is longer; max-age=1 wins, so the entry expires within about two seconds.
    await vi.waitFor(async () => expect(xCache(await invoke(get("/short-lived")))).toBe("MISS"), {
      timeout: 3_500,
      interval: 200,
    });
  });

  it("replays a base64-encoded body byte for byte", async () => {
    const bytes = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a]).toString("base64");
    const handler = countingHandler(() => ({
      statusCode: 200,
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
      isBase64Encoded: true,
    }));
    const invoke = cached(handler);

    await invoke(get("/file"));
    const second = await invoke(get("/file"));

    expect(xCache(second)).toBe("HIT");
    expect(second.body).toBe(bytes);
    expect(second.isBase64Encoded).toBe(true);
  });

  it("caches hostile paths and queries under safe keys without injecting commands", async () => {
    await client.set("sentinel", "still here");
    const hostile: V2Request[] = [
      { path: "/products/a%0D%0Adelete%20sentinel" },
      { path: "/products/a\r\ndelete sentinel" },
      { path: "/products/a\r\nflush_all" },
      { path: "/products/with spaces in it" },
      { path: `/products/${"x".repeat(300)}` },
      { path: "/products/ünïcødé-😀" },
      { path: "/products/1", query: "q=%0D%0Aflush_all&x=\r\ndelete sentinel" },
    ];
    const handler = countingHandler();
    const invoke = cached(handler);

    for (const request of hostile) {
      const first = await invoke(v2Event(request));
      const second = await invoke(v2Event(request));
      expect(xCache(first), JSON.stringify(request)).toBe("MISS");
      expect(xCache(second), JSON.stringify(request)).toBe("HIT");
      expect(payloadOf(second).path).toBe(request.path);
    }

    expect(handler).toHaveBeenCalledTimes(hostile.length);
    expect(await client.get("sentinel")).toBe("still here");
  });

  it("serves every GET from the handler as BYPASS while memcached is paused, and caches again after it resumes", async ({
    memcached: mc,
  }) => {
    const pausable = new MemcacheClient({
      servers: mc.endpoint,
      timeoutMs: 150,
      connectTimeoutMs: 150,
      deadRetryMs: 200,
    });
    try {
      const handler = countingHandler();
      const invoke = cached(handler, { cache: new CacheAside(clientStore(pausable)) });
      expect(xCache(await invoke(get("/warm-up")))).toBe("MISS"); // the socket is open

      await mc.pause();
      try {
        for (let i = 1; i <= 4; i++) {
          const started = performance.now();
          const result = await invoke(get("/products/1"));
          expect(performance.now() - started).toBeLessThan(1_000);
          expect(result.statusCode).toBe(200);
          expect(xCache(result)).toBe("BYPASS");
          expect(payloadOf(result)).toEqual({ path: "/products/1", call: i + 1 });
        }
      } finally {
        mc.resume();
      }

      // The node is tried again once deadRetryMs has passed; wait for that, not a fixed time.
      await vi.waitFor(async () => expect(xCache(await invoke(get("/probe")))).not.toBe("BYPASS"), {
        timeout: 5_000,
        interval: 50,
      });
      const calls = handler.mock.calls.length;
      expect(xCache(await invoke(get("/products/1")))).toBe("MISS");
      expect(xCache(await invoke(get("/products/1")))).toBe("HIT");
      expect(handler).toHaveBeenCalledTimes(calls + 1);
    } finally {
      mc.resume();
      pausable.close();
    }
  });

  it("keeps concurrent invocations apart: each gets its own status and body, stored under its own key", async () => {
    // Timeline: slow looks up (MISS), fast looks up (MISS) and its handler starts; only then
    // does slow's handler finish. State shared between invocations would now store one
    // response under the other's key, or label one with the other's status.
    let fastStarted!: () => void;
    const fastHasStarted = new Promise<void>((resolve) => {
      fastStarted = resolve;
    });
    const handler = countingHandler(async (event) => {
      const path = pathOf(event);
      if (path === "/fast") fastStarted();
      if (path === "/slow") await fastHasStarted;
      return { statusCode: 200, body: JSON.stringify({ path }) };
    });
    const invoke = cached(handler);
    await invoke(get("/cached"));

    const [slow, fast, hit] = await Promise.all([
      invoke(get("/slow")),
      invoke(get("/fast")),
      invoke(get("/cached")),
    ]);

    expect([xCache(slow), xCache(fast), xCache(hit)]).toEqual(["MISS", "MISS", "HIT"]);
    expect(JSON.parse(slow.body ?? "")).toEqual({ path: "/slow" });
    expect(JSON.parse(fast.body ?? "")).toEqual({ path: "/fast" });
    expect(JSON.parse(hit.body ?? "")).toEqual({ path: "/cached" });

    const slowAgain = await invoke(get("/slow"));
    const fastAgain = await invoke(get("/fast"));
    expect([xCache(slowAgain), xCache(fastAgain)]).toEqual(["HIT", "HIT"]);
    expect(JSON.parse(slowAgain.body ?? "")).toEqual({ path: "/slow" });
    expect(JSON.parse(fastAgain.body ?? "")).toEqual({ path: "/fast" });
  });

  describe("REST API (payload 1.0) events", () => {
    it("serves the second GET from the cache, whatever the order of the query parameters", async () => {
      const handler = countingHandler();
      const invoke = cached(handler);

      const first = await invoke(v1Event({ path: "/products/7", query: { a: "1", b: "2" } }));
      const second = await invoke(v1Event({ path: "/products/7", query: { b: "2", a: "1" } }));
      const other = await invoke(v1Event({ path: "/products/7", query: { a: "1", b: "3" } }));

      expect([xCache(first), xCache(second), xCache(other)]).toEqual(["MISS", "HIT", "MISS"]);
      expect(second.body).toBe(first.body);
      expect(handler).toHaveBeenCalledTimes(2);
    });

    it("never caches a v1 POST", async () => {
      const handler = countingHandler();
      const invoke = cached(handler);

      await invoke(v1Event({ method: "POST", path: "/products/7" }));
      const second = await invoke(v1Event({ method: "POST", path: "/products/7" }));

      expect(xCache(second)).toBeUndefined();
      expect(handler).toHaveBeenCalledTimes(2);
    });

    it("does not store a v1 response with Set-Cookie in multiValueHeaders", async () => {
      const handler = countingHandler(() => ({
        statusCode: 200,
        body: "{}",
        multiValueHeaders: { "Set-Cookie": ["a=1", "b=2"] },
      }));
      const invoke = cached(handler);

      await invoke(v1Event({ path: "/products/7" }));
      const second = await invoke(v1Event({ path: "/products/7" }));

      expect(xCache(second)).toBe("MISS");
      expect(handler).toHaveBeenCalledTimes(2);
    });

    it("replays a v1 response's multiValueHeaders on a hit", async () => {
      const handler = countingHandler(() => ({
        statusCode: 200,
        body: "{}",
        multiValueHeaders: { Link: ["</a>; rel=prev", "</c>; rel=next"] },
      }));
      const invoke = cached(handler);

      await invoke(v1Event({ path: "/products/7" }));
      const second = (await invoke(v1Event({ path: "/products/7" }))) as APIGatewayProxyResult;

      expect(xCache(second)).toBe("HIT");
      expect(second.multiValueHeaders).toEqual({ Link: ["</a>; rel=prev", "</c>; rel=next"] });
    });

    it("keeps requests that differ only in a repeated query parameter apart", async () => {
      const handler = countingHandler((event, call) => ({
        statusCode: 200,
        body: JSON.stringify({
          tags: (event as APIGatewayProxyEvent).multiValueQueryStringParameters?.tag,
          call,
        }),
      }));
      const invoke = cached(handler);

      await invoke(v1Event({ query: { tag: "b" }, multiQuery: { tag: ["a", "b"] } }));
      const onlyB = await invoke(v1Event({ query: { tag: "b" }, multiQuery: { tag: ["b"] } }));

      expect(xCache(onlyB)).toBe("MISS");
      expect(JSON.parse(onlyB.body ?? "")).toEqual({ tags: ["b"], call: 2 });
    });
  });

  it("leaves a v2 handler's bare JSON result intact on a miss and on a hit", async () => {
    const bare = { message: "hi" };
    const handler = countingHandler(() => ({ ...bare }) as unknown as HttpResult);
    const invoke = cached(handler);

    const results = [await invoke(get("/bare")), await invoke(get("/bare"))];

    for (const result of results) {
      const payload = "statusCode" in result ? JSON.parse(result.body || "null") : result;
      expect(payload).toEqual(bare);
    }
  });
});

describe("httpCacheMiddleware in a Middy chain", () => {
  /** An `after` decorator (think CORS or security headers) that counts its runs. */
  function decorator() {
    const runs = { count: 0 };
    const middleware: MiddlewareObj<HttpEvent, HttpResult> = {
      after: (request) => {
        runs.count++;
        const response = request.response!;
        request.response = {
          ...response,
          headers: { ...(response.headers ?? {}), "x-decorated": "yes" },
        };
      },
    };
    return { runs, middleware };
  }

  /** A `before` check that rejects a request without an API key with a 401-style error. */
  const requireApiKey: MiddlewareObj<HttpEvent, HttpResult> = {
    before: (request) => {
      if (request.event.headers?.["x-api-key"] === undefined) {
        throw Object.assign(new Error("Unauthorized"), { statusCode: 401 });
      }
    },
  };

  it("returns a hit early, and the hit carries what an after-middleware attached later added on the miss", async () => {
    const handler = countingHandler();
    const { runs, middleware } = decorator();
    const wrapped = middy(handler).use(httpCacheMiddleware({ cache })).use(middleware);

    const miss = await wrapped(get("/products/1"), context);
    expect(xCache(miss)).toBe("MISS");
    expect(headersOf(miss)["x-decorated"]).toBe("yes");

    const hit = await wrapped(get("/products/1"), context);
    expect(xCache(hit)).toBe("HIT");
    expect(headersOf(hit)["x-decorated"]).toBe("yes");
    expect(handler).toHaveBeenCalledTimes(1);
    expect(runs.count).toBe(1); // no `after` runs on the early return: the header was stored
  });

  it("runs a before-middleware attached earlier (auth) even when the entry is cached", async () => {
    const handler = countingHandler();
    const wrapped = middy(handler).use(requireApiKey).use(httpCacheMiddleware({ cache }));
    const withKey = get("/products/1", { headers: { "x-api-key": "k" } });

    expect(xCache(await wrapped(withKey, context))).toBe("MISS");
    expect(xCache(await wrapped(withKey, context))).toBe("HIT");

    await expect(wrapped(get("/products/1"), context)).rejects.toMatchObject({ statusCode: 401 });
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("skips a before-middleware attached later on a hit (the documented reason to attach auth first)", async () => {
    const handler = countingHandler();
    const wrapped = middy(handler).use(httpCacheMiddleware({ cache })).use(requireApiKey);

    await wrapped(get("/products/1", { headers: { "x-api-key": "k" } }), context);
    const withoutKey = await wrapped(get("/products/1"), context);

    expect(xCache(withoutKey)).toBe("HIT");
    expect(withoutKey.statusCode).toBe(200);
  });

  it("adds no x-cache header and stores nothing when the handler throws", async () => {
    const failure = new Error("origin down");
    const handler = countingHandler(() => {
      throw failure;
    });
    const wrapped = middy(handler).use(httpCacheMiddleware({ cache }));
    const setsBefore = await setCount();

    await expect(wrapped(get("/products/1"), context)).rejects.toBe(failure);
    await expect(wrapped(get("/products/1"), context)).rejects.toBe(failure);

    expect(handler).toHaveBeenCalledTimes(2);
    expect(await setCount()).toBe(setsBefore);
  });
});
