// Hostile input against the HTTP cache on a real memcached: a Middy handler with
// httpCacheMiddleware over CacheAside(clientStore(client)), the client talking through a relay
// that records every byte memcached receives.
//   - Protocol injection: paths, queries and vary-headers with CRLF, NUL, spaces,
//     "\r\ndelete victim", "\r\nflush_all", 300+ characters and unicode reach memcached only
//     as well-formed commands on hashed keys; the victim key survives.
//   - Cache poisoning: responses with Set-Cookie, Cache-Control private / no-store / no-cache
//     or Vary: * are never served to another caller; neither is a response to an Authorization
//     request unless the key includes the credential (then each token has its own entry).
//   - Corrupt cached bytes and wrong flags under the middleware's own key: a MISS (the handler
//     answers), never a crash, and the next write repairs the entry.
//   - Oversized responses: served, not cached (a write-error event, nothing thrown).
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import middy from "@middy/core";
import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
  Context,
} from "aws-lambda";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { CacheAside, type CacheEvent } from "../../lib/cache/cacheAside.ts";
import {
  HttpCache,
  type HttpCacheOptions,
  type HttpEvent,
  type HttpResult,
} from "../../lib/cache/httpCache.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { MemcacheIllegalInputError, MemcacheServerError } from "../../lib/memcache/errors.ts";
import { httpCacheMiddleware } from "../../lib/middleware/httpCache.ts";
import {
  checkCommandStream,
  type RecordingRelay,
  startRecordingRelay,
} from "../../tools/recording-relay.ts";
import { counters } from "../helpers/client.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";

let relay: RecordingRelay;
/** The client under test: through the recording relay to the file's memcached (a fixture). */
let client: MemcacheClient;
/** For setup and inspection, straight to memcached (not recorded): the fixtures' `client`. */
let direct: MemcacheClient;
let cacheEvents: CacheEvent[] = [];
let cache: CacheAside;

const context = {} as Context;
const VICTIM = "victim";

it.beforeAll(async ({ memcached, client: directClient }) => {
  relay = await startRecordingRelay(memcached);
  client = new MemcacheClient({ servers: relay.endpoint, timeoutMs: patientTimeoutMs });
  direct = directClient;
  cache = new CacheAside(clientStore(client), {
    onEvent: (event) => cacheEvents.push(event),
  });
});

afterAll(async () => {
  client?.close();
  await relay?.close();
});

beforeEach(async () => {
  await direct.flushAll();
  await direct.set(VICTIM, "still here");
  cacheEvents = [];
  relay.clear();
});

// ---- events and the handler ----

interface V2Request {
  path?: string;
  query?: string;
  headers?: Record<string, string>;
  cookies?: string[];
}

function v2Event({ path = "/products/1", query = "", headers = {} }: V2Request = {}) {
  return {
    version: "2.0",
    routeKey: "GET /products/{id}",
    rawPath: path,
    rawQueryString: query,
    headers: { host: "api.example.com", ...headers },
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: {
        method: "GET",
        path,
        protocol: "HTTP/1.1",
        sourceIp: "192.0.2.1",
        userAgent: "vitest",
      },
      requestId: "request-id",
      routeKey: "GET /products/{id}",
      stage: "$default",
      time: "01/Jan/2026:00:00:00 +0000",
      timeEpoch: 1_767_225_600_000,
    },
    isBase64Encoded: false,
  } satisfies APIGatewayProxyEventV2;
}

function v1Event(
  path: string,
  query: Record<string, string> | null,
  headers: Record<string, string> = {},
): APIGatewayProxyEvent {
  return {
    resource: "/products/{id}",
    path,
    httpMethod: "GET",
    headers: { Host: "api.example.com", ...headers },
    multiValueHeaders: {},
    queryStringParameters: query,
    multiValueQueryStringParameters:
      query === null ? null : Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]])),
    pathParameters: null,
    stageVariables: null,
    body: null,
    isBase64Encoded: false,
    requestContext: {
      httpMethod: "GET",
      path: `/prod${path}`,
      stage: "prod",
      requestId: "request-id",
      resourcePath: "/products/{id}",
    } as APIGatewayProxyEvent["requestContext"],
  };
}

/** What the fake handler answers: who asked (x-caller, not part of any key) and which call. */
interface Payload {
  caller: string | null;
  call: number;
}

type Reply = (event: HttpEvent, payload: Payload) => HttpResult;

const json: Reply = (_event, payload) => ({
  statusCode: 200,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(payload),
});

function callerOf(event: HttpEvent): string | null {
  const headers = event.headers ?? {};
  return headers["x-caller"] ?? headers.authorization ?? headers.Authorization ?? null;
}

/** A middy handler with the HTTP cache, answering with `reply`; `calls()` counts handler runs. */
function app(options: Partial<HttpCacheOptions> = {}, reply: Reply = json) {
  let calls = 0;
  const handler = middy(async (event: HttpEvent, _context: Context): Promise<HttpResult> => {
    calls++;
    return reply(event, { caller: callerOf(event), call: calls });
  }).use(httpCacheMiddleware({ cache, ...options }));
  return {
    invoke: (event: HttpEvent) => handler(event, context) as Promise<HttpResult>,
    calls: () => calls,
  };
}

function xCache(result: HttpResult): unknown {
  return result.headers?.["x-cache"];
}

function payloadOf(result: HttpResult): Payload {
  return JSON.parse(result.body ?? "") as Payload;
}

/** Every command the relay saw, checked against the grammar; fails on any violation. */
function receivedCommands() {
  const commands = [];
  for (const stream of relay.streams()) {
    const check = checkCommandStream(stream);
    expect(check.errors).toEqual([]);
    commands.push(...check.commands);
  }
  return commands;
}

// ---- protocol injection ----

describe("the command-stream checker", () => {
  it("flags what an injection would put on the wire", () => {
    const errors = (text: string) => checkCommandStream(Buffer.from(text, "latin1")).errors;
    expect(errors("mg http:a v\r\nms http:b 2 T60\r\nok\r\nmn\r\n")).toEqual([]);
    expect(errors("mg a\u0000b v\r\n")).toHaveLength(1);
    expect(errors("mg a  b\r\n")).toHaveLength(1);
    expect(errors("mg \u00e9\r\n")).toHaveLength(1);
    expect(errors("ms k 10 T0\r\nshort\r\n")).toHaveLength(1);
    expect(errors("ms k 2 T0\r\nabc\r\n")).not.toEqual([]);
    expect(errors(`mg ${"k".repeat(251)} v\r\n`)).toHaveLength(1);
    expect(errors("mg k v")).toHaveLength(1);
    expect(errors("rm -rf\r\n")).toHaveLength(1);
    // A well-formed injected command passes the grammar: the key checks in the tests catch it.
    const injected = checkCommandStream(Buffer.from("mg a v\r\ndelete victim\r\n", "latin1"));
    expect(injected.commands.map((c) => [c.verb, c.keys])).toEqual([
      ["mg", ["a"]],
      ["delete", ["victim"]],
    ]);
  });
});

const hostile: ReadonlyArray<readonly [string, string]> = [
  ["CRLF + delete", "\r\ndelete victim"],
  ["CRLF + flush_all", "\r\nflush_all\r\n"],
  ["CRLF + set with data", `\r\nset ${VICTIM} 0 0 6\r\npwned!\r\n`],
  ["a bare CR and a bare LF", "a\rb\nc"],
  ["NUL", "a\u0000b"],
  ["spaces", "a b  c "],
  ["a tab and DEL", "a\tb\u007f"],
  ["300 characters", "k".repeat(300)],
  ["unicode", "ключ/日本語/🙂/\u2028"],
  ["the victim's name", VICTIM],
  ["a percent-encoded CRLF", "%0D%0Adelete%20victim"],
  ["the empty string", ""],
];

const VARY = ["x-tenant", "accept-language"];

/** The ways one hostile text can reach the key: path, query, vary headers, v1 query. */
function eventsFor(text: string): Array<readonly [string, HttpEvent]> {
  return [
    ["v2 path", v2Event({ path: `/products/${text}` })],
    ["v2 query", v2Event({ query: `q=${text}&id=${text}` })],
    ["v2 query name", v2Event({ query: `${text}=1` })],
    ["vary header x-tenant", v2Event({ headers: { "x-tenant": text } })],
    ["vary header Accept-Language", v2Event({ headers: { "Accept-Language": text } })],
    ["v1 path", v1Event(`/products/${text}`, null)],
    ["v1 query", v1Event("/products/1", { [text]: text })],
  ];
}

describe("protocol injection through request text", () => {
  const hashedKey = /^http:#[A-Za-z0-9_-]{43}$/;
  const plainKey = /^http:[A-Za-z0-9_.:~/@+=,-]{1,245}$/;
  const plainOrHashed = new RegExp(`${hashedKey.source}|${plainKey.source}`);

  it.each<[string, Partial<HttpCacheOptions>]>([
    ["the default key (method, path, query, vary headers)", {}],
    ["a custom getKey returning the raw path", { getKey: (e: HttpEvent) => pathOf(e) }],
  ])("sends only well-formed commands on safe keys with %s", async (_name, extra) => {
    const options: Partial<HttpCacheOptions> = { varyHeaders: VARY, ...extra };
    const { invoke, calls } = app(options);
    const httpCache = new HttpCache({ cache, ...options });
    const flushesBefore = (await counters(direct, ["cmd_flush"])).cmd_flush;
    const bodies = new Map<string, string>();

    for (const [textName, text] of hostile) {
      for (const [where, event] of eventsFor(text)) {
        const label = `${textName} in ${where}`;
        const key = httpCache.keyFor(event);
        expect(key, label).toMatch(extra.getKey === undefined ? hashedKey : plainOrHashed);
        const first = await invoke(event);
        expect(first.statusCode, label).toBe(200);
        const second = await invoke(event);
        expect(second.statusCode, label).toBe(200);
        // Requests that map to one key share one entry; otherwise each has its own.
        const earlier = bodies.get(key!);
        if (earlier === undefined) {
          expect(xCache(first), label).toBe("MISS");
          bodies.set(key!, first.body!);
        } else {
          expect(xCache(first), label).toBe("HIT");
          expect(first.body, label).toBe(earlier);
        }
        expect(xCache(second), label).toBe("HIT");
        expect(second.body, label).toBe(bodies.get(key!));
      }
    }
    expect(calls()).toBe(bodies.size);

    const commands = receivedCommands();
    expect(commands.length).toBeGreaterThan(0);
    for (const command of commands) {
      // gets: a new client's first read, sent with the meta probe (see autoLeases).
      expect(["mn", "version", "gets", "mg", "ms", "md"]).toContain(command.verb);
      for (const key of command.keys) {
        expect(key).toMatch(plainOrHashed);
        expect(key).not.toBe(VICTIM);
      }
    }
    await expect(direct.get(VICTIM)).resolves.toBe("still here");
    expect((await counters(direct, ["cmd_flush"])).cmd_flush).toBe(flushesBefore);
  });
});

function pathOf(event: HttpEvent): string {
  return (event as APIGatewayProxyEventV2).rawPath ?? (event as APIGatewayProxyEvent).path;
}

// ---- cache poisoning ----

describe("cache poisoning", () => {
  const url = "/products/42";

  const uncacheable: ReadonlyArray<readonly [string, Partial<APIGatewayProxyResult>]> = [
    ["Set-Cookie", { headers: { "Set-Cookie": "session=secret-of-caller" } }],
    ["set-cookie (lowercase)", { headers: { "set-cookie": "session=secret-of-caller" } }],
    [
      "Set-Cookie in multiValueHeaders",
      { multiValueHeaders: { "Set-Cookie": ["session=secret-of-caller", "b=2"] } },
    ],
    ["Cache-Control: private", { headers: { "Cache-Control": "private, max-age=60" } }],
    ["Cache-Control: Private (case)", { headers: { "cache-control": "Private" } }],
    ["Cache-Control: no-store", { headers: { "Cache-Control": "public, no-store" } }],
    ["Cache-Control: no-cache", { headers: { "Cache-Control": "no-cache" } }],
    ["Vary: *", { headers: { Vary: "*" } }],
  ];

  it.each(uncacheable)("never serves a response with %s to another caller", async (_n, extra) => {
    const { invoke, calls } = app({}, (event, payload) => ({
      ...json(event, payload),
      ...extra,
      headers: { "content-type": "application/json", ...(extra.headers ?? {}) },
    }));
    const event = (caller: string) => v2Event({ path: url, headers: { "x-caller": caller } });

    const first = await invoke(event("alice"));
    expect(payloadOf(first)).toEqual({ caller: "alice", call: 1 });
    const second = await invoke(event("bob"));
    expect(payloadOf(second)).toEqual({ caller: "bob", call: 2 });
    expect(xCache(second)).toBe("MISS");
    expect(calls()).toBe(2);
    // Nothing was stored under the key (the lease placeholder was released too).
    const key = new HttpCache({ cache }).keyFor(event("x"))!;
    await expect(direct.get(key)).resolves.toBeUndefined();
  });

  it("never serves a response with v2 cookies to another caller", async () => {
    const { invoke, calls } = app(
      {},
      (event, payload): APIGatewayProxyStructuredResultV2 => ({
        ...(json(event, payload) as APIGatewayProxyStructuredResultV2),
        cookies: ["session=secret-of-caller"],
      }),
    );
    const event = (caller: string) => v2Event({ path: url, headers: { "x-caller": caller } });
    await invoke(event("alice"));
    const second = await invoke(event("bob"));
    expect(payloadOf(second).caller).toBe("bob");
    expect((second as APIGatewayProxyStructuredResultV2).cookies).toEqual([
      "session=secret-of-caller",
    ]);
    expect(calls()).toBe(2);
  });

  describe("Authorization with the default options (not part of the key)", () => {
    for (const headerName of ["Authorization", "authorization"]) {
      it(`never serves a response for ${headerName}: Bearer A to Bearer B or to no one`, async () => {
        const { invoke, calls } = app();
        const as = (token: string | undefined) =>
          v2Event({ path: url, headers: token === undefined ? {} : { [headerName]: token } });

        const a = await invoke(as("Bearer A"));
        expect(payloadOf(a).caller).toBe("Bearer A");
        expect(xCache(a)).toBeUndefined(); // not a cacheable request: not even looked up
        const b = await invoke(as("Bearer B"));
        expect(payloadOf(b).caller).toBe("Bearer B");
        const anonymous = await invoke(as(undefined));
        expect(payloadOf(anonymous).caller).toBeNull();
        expect(xCache(anonymous)).toBe("MISS");
        // The anonymous response is cached, and is not served to an authorized caller either.
        expect(payloadOf(await invoke(as(undefined)))).toEqual(payloadOf(anonymous));
        const aAgain = await invoke(as("Bearer A"));
        expect(payloadOf(aAgain)).toEqual({ caller: "Bearer A", call: 4 });
        expect(calls()).toBe(4);
      });
    }

    it("does not store a response for Bearer A under any key", async () => {
      const { invoke } = app();
      relay.clear();
      await invoke(v2Event({ path: url, headers: { Authorization: "Bearer A" } }));
      // No command at all went to memcached for it.
      expect(receivedCommands().map((c) => c.verb)).toEqual([]);
    });
  });

  it('gives each token its own entry with varyHeaders ["authorization"]', async () => {
    const { invoke, calls } = app({ varyHeaders: ["authorization"] });
    const as = (token: string | undefined) =>
      v2Event({ path: url, headers: token === undefined ? {} : { Authorization: token } });
    const seen = async (token: string | undefined) => {
      const result = await invoke(as(token));
      return [xCache(result), payloadOf(result)] as const;
    };

    const a = { caller: "Bearer A", call: 1 };
    const b = { caller: "Bearer B", call: 2 };
    const none = { caller: null, call: 3 };
    expect(await seen("Bearer A")).toEqual(["MISS", a]);
    expect(await seen("Bearer A")).toEqual(["HIT", a]);
    expect(await seen("Bearer B")).toEqual(["MISS", b]);
    expect(await seen("Bearer B")).toEqual(["HIT", b]);
    expect(await seen(undefined)).toEqual(["MISS", none]);
    expect(await seen(undefined)).toEqual(["HIT", none]);
    expect(await seen("Bearer A")).toEqual(["HIT", a]);
    expect(await seen("Bearer B")).toEqual(["HIT", b]);
    // Tokens are compared exactly: a different case is a different credential.
    expect((await seen("bearer a"))[0]).toBe("MISS");
    expect(calls()).toBe(4);
  });
});

// ---- corrupt cached bytes, wrong flags ----

describe("corrupt bytes under the middleware's key", () => {
  const corrupt: ReadonlyArray<readonly [string, Buffer, number]> = [
    ["bad JSON (flags 32)", Buffer.from('{"statusCode":200,"body":'), 32],
    ["invalid UTF-8 (flags 16)", Buffer.from([0xc3, 0x28, 0xff, 0xfe]), 16],
    ["invalid UTF-8 in JSON (flags 32)", Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]), 32],
    ["unknown flags 99 holding a response", Buffer.from('{"statusCode":200,"body":"poison"}'), 99],
    [
      "a response as JSON under flags 3 (pymemcache's int|pickle)",
      Buffer.from('{"statusCode":200,"body":"poison"}'),
      3,
    ],
    [
      "a response as JSON under the pickle flags (1)",
      Buffer.from('{"statusCode":200,"body":"poison"}'),
      1,
    ],
    ["valid JSON that is not a response", Buffer.from('{"hello":"world"}'), 32],
    ["a response with a string statusCode", Buffer.from('{"statusCode":"200","body":"x"}'), 32],
    ["JSON null", Buffer.from("null"), 32],
    ["a JSON array", Buffer.from("[1,2,3]"), 32],
    ["an integer (flags 2)", Buffer.from("12345"), 2],
    ["not an integer (flags 2)", Buffer.from("12a45"), 2],
    ["raw bytes (flags 0)", Buffer.from([0, 1, 2, 3]), 0],
    ["a string (flags 16)", Buffer.from("<html>poison</html>"), 16],
  ];

  it.each(corrupt)("treats %s as a MISS and repairs the entry", async (_name, bytes, flags) => {
    const { invoke, calls } = app();
    const event = v2Event({ path: "/products/7" });
    const key = new HttpCache({ cache }).keyFor(event)!;
    await direct.set(key, bytes, { flags });

    const miss = await invoke(event);
    expect(miss.statusCode).toBe(200);
    expect(xCache(miss)).toBe("MISS");
    expect(payloadOf(miss)).toEqual({ caller: null, call: 1 });
    expect(miss.body).not.toContain("poison");

    const hit = await invoke(event);
    expect(xCache(hit)).toBe("HIT");
    expect(hit.body).toBe(miss.body);
    expect(calls()).toBe(1);
    expect(cacheEvents.filter((e) => e.type.endsWith("error"))).toEqual([]);
    // The entry now holds the response, with the JSON flags.
    const stored = await direct.gets<{ statusCode: number; body: string }>(key);
    expect(stored?.flags).toBe(32);
    expect(stored?.value?.body).toBe(miss.body);
  });

  /** Writes an empty flags-0 value (a truncated entry) under the key, then requests it. */
  async function emptyEntry(path: string) {
    const { invoke, calls } = app();
    const event = v2Event({ path });
    const key = new HttpCache({ cache }).keyFor(event)!;
    await direct.set(key, Buffer.alloc(0), { flags: 0 });
    const started = performance.now();
    const miss = await invoke(event);
    return { invoke, calls, event, miss, missMs: performance.now() - started };
  }

  it("treats an empty value with flags 0 (a truncated entry) as a MISS and repairs it", async () => {
    const { invoke, calls, event, miss } = await emptyEntry("/products/8");
    expect(xCache(miss)).toBe("MISS");
    const hit = await invoke(event);
    expect(xCache(hit)).toBe("HIT");
    expect(hit.body).toBe(miss.body);
    expect(calls()).toBe(1);
  });

  // An empty flags-0 item looks like a lease placeholder; only W or Z make it one. (Before the
  // fix in leases.ts, this request waited maxWaitMs for a fill nobody was doing.)
  it("does not wait for another caller's load when the entry is merely empty", async () => {
    const { miss, missMs } = await emptyEntry("/products/9");
    expect(xCache(miss)).toBe("MISS");
    expect(missMs).toBeLessThan(cache.options.maxWaitMs / 2);
  });
});

// ---- oversized values ----

describe("oversized responses", () => {
  const twoMiB = "x".repeat(2 * 1024 * 1024);

  it("serves a 2 MiB body (MISS), does not cache it, and reports a write-error", async () => {
    const { invoke, calls } = app({}, () => ({ statusCode: 200, body: twoMiB }));
    const event = v2Event({ path: "/products/big" });

    const first = await invoke(event);
    expect(first.statusCode).toBe(200);
    expect(xCache(first)).toBe("MISS");
    expect(first.body).toHaveLength(twoMiB.length);
    const writeErrors = cacheEvents.filter((e) => e.type === "write-error");
    expect(writeErrors).toHaveLength(1);
    expect(writeErrors[0]!.error).toBeInstanceOf(MemcacheIllegalInputError);

    const second = await invoke(event);
    expect(xCache(second)).toBe("MISS");
    expect(second.body).toHaveLength(twoMiB.length);
    expect(calls()).toBe(2);
    // Nothing but well-formed commands went out, and no data block of 2 MiB.
    const commands = receivedCommands();
    expect(commands.every((c) => (c.dataBytes ?? 0) < 1024 * 1024)).toBe(true);
  });

  it("does not make the next request wait for the lease of a failed fill", async () => {
    const { invoke } = app({}, () => ({ statusCode: 200, body: twoMiB }));
    const event = v2Event({ path: "/products/big-again" });
    await invoke(event);
    const started = performance.now();
    expect(xCache(await invoke(event))).toBe("MISS");
    expect(performance.now() - started).toBeLessThan(cache.options.maxWaitMs / 2);
  });

  it("reports a value the server refuses (SERVER_ERROR) as a write-error and stays usable", async () => {
    // The client would send 1.5 MiB; memcached (-I 1m) refuses it.
    const bigClient = new MemcacheClient({
      servers: relay.endpoint,
      timeoutMs: 2_000,
      maxValueBytes: 4 * 1024 * 1024,
    });
    const events: CacheEvent[] = [];
    const bigCache = new CacheAside(clientStore(bigClient), { onEvent: (e) => events.push(e) });
    try {
      const body = "y".repeat(1.5 * 1024 * 1024);
      let calls = 0;
      const handler = middy(async (): Promise<HttpResult> => {
        calls++;
        return { statusCode: 200, body };
      }).use(httpCacheMiddleware({ cache: bigCache }));
      const event = v2Event({ path: "/products/server-refuses" });

      const first = (await handler(event, context)) as HttpResult;
      expect(xCache(first)).toBe("MISS");
      expect(first.body).toHaveLength(body.length);
      const writeError = events.find((e) => e.type === "write-error");
      expect(writeError?.error).toBeInstanceOf(MemcacheServerError);
      // The same connection still answers correctly.
      await expect(bigClient.get(VICTIM)).resolves.toBe("still here");
      const second = (await handler(event, context)) as HttpResult;
      expect(xCache(second)).toBe("MISS");
      expect(calls).toBe(2);
    } finally {
      bigClient.close();
    }
  });
});
