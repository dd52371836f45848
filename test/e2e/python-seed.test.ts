// The seed's story end to end: the cluster a team cuts over from was filled by a Python service
// (pymemcache and pylibmc, the real ones: test/fixtures/python/agent.py). The reference app runs
// the fallback phase over real HTTP through serverless-offline with an empty new cluster in front
// of that old one: it serves Python's cached responses as HIT-FALLBACK without one origin read,
// and its counters read Python's values and count on from them, exactly, also past 2^53.
//
// Load: the functions get patient cache timeouts (appCacheTimeoutMs, 2 s), so what the app answers
// does not depend on an idle machine.

import { afterAll, beforeAll, describe, expect } from "vitest";
import { type Origin, startOrigin } from "../../infra/local/origin.ts";
import type { Stack } from "../../infra/local/stack.ts";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import { safeKey } from "../../lib/memcache/keys.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import {
  type AppClient,
  appClient,
  mapLimit,
  originStats,
  range,
  resetOriginStats,
  startTestStack,
  tally,
} from "../helpers/app.ts";
import { it } from "../helpers/fixtures.ts";
import { type PythonAgent, type PyValue, py } from "../helpers/python.ts";

// The app's keys, as functions/products.ts and functions/counters.ts build them.
const productKey = (id: string) => safeKey(`product/${id}`, "products:");
const counterKey = (name: string) => safeKey(name, "counter:");

const ids = range(1, 60).map(String);

/** The response the app caches (lib/cache/httpCache.ts), as the Python service writes it. */
function cachedResponse(id: string) {
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id, name: `Python's product ${id}`, version: 7 }),
    isBase64Encoded: false,
    storedAt: Date.now(),
  };
}

// [counter name, the Python client that keeps it, its value there, as the app replies with it]
const counters: Array<
  [string, "pymemcache" | "pymemcache-serde" | "pylibmc", PyValue, number | string]
> = [
  ["page-views", "pymemcache", py.int(123), 123], // no serde: "123", flags 0
  ["signups", "pymemcache-serde", py.int(41), 41], // flags 2
  ["orders", "pylibmc", py.int(5_000), 5_000], // flags 4
  ["str-count", "pymemcache-serde", py.str("77"), 77], // a str: flags 16
  ["huge", "pymemcache-serde", py.int(2n ** 53n + 1n), "9007199254740993"], // past 2^53
];

let oldMemcached: MemcachedProcess;
let newMemcached: MemcachedProcess;
let origin: Origin;
let python: PythonAgent;
let stack: Stack;
let app: AppClient;
let newClient: MemcacheClient;

// The clusters, a client of new and the Python agent come from the fixtures; the stack gets the
// patient cache timeouts of the end-to-end tests (startTestStack).
it.beforeAll(
  ({ oldMemcached: oldProcess, newMemcached: newProcess, newClient: client, python: agent }) => {
    [oldMemcached, newMemcached, newClient, python] = [oldProcess, newProcess, client, agent];
  },
);

beforeAll(async () => {
  origin = await startOrigin({ port: 0 });
  const old = [oldMemcached.endpoint];
  // The Python service fills old: cached responses as JSON (the README's JsonSerde, flags 32),
  // counters as each Python client keeps them, one of them counted on with incr there.
  for (const id of ids) {
    await python.set("pymemcache-json", old, productKey(id), py.json(cachedResponse(id)));
  }
  for (const [name, client, value] of counters) {
    expect(await python.set(client, old, counterKey(name), value)).toBe(true);
  }
  expect(
    await python.request({
      op: "incr",
      client: "pymemcache",
      servers: old,
      key: counterKey("page-views"),
      delta: 1,
    }),
  ).toBe("124");
  // A value the app must never decode: a pickle under a product key.
  await python.set("pymemcache-serde", old, productKey("61"), py.json({ pickled: true }));

  stack = await startTestStack({
    newEndpoint: newMemcached.endpoint,
    oldEndpoint: oldMemcached.endpoint,
    originUrl: origin.url,
  });
  app = appClient(stack.httpUrl);
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  await origin?.close();
});

describe("a cutover from a cluster a Python service filled, over HTTP", () => {
  it("serves Python's 60 cached products as HIT-FALLBACK, then HIT, with zero origin reads", {
    timeout: 60_000,
  }, async () => {
    await resetOriginStats(stack.originUrl);
    const reads = await mapLimit(ids, 8, async (id) => {
      const first = await app.getProduct(id);
      const second = await app.getProduct(id);
      expect(first.body).toEqual({ id, name: `Python's product ${id}`, version: 7 });
      expect(second.body).toEqual(first.body);
      return `${first.status} ${first.cache}, ${second.status} ${second.cache}`;
    });

    expect(tally(reads)).toEqual({ "200 HIT-FALLBACK, 200 HIT": 60 });
    expect(await originStats(stack.originUrl)).toEqual({ reads: 0, writes: 0 });
    expect((await newClient.getMany(ids.map(productKey))).size).toBe(60);
  });

  it("never decodes the pickle Python left under a product key: the origin answers", async () => {
    await resetOriginStats(stack.originUrl);
    const response = await app.getProduct("61");
    expect(response.status).toBe(200);
    expect(response.cache).toBe("MISS");
    expect(response.body).toMatchObject({ id: "61", name: "Product 61", version: 1 });
    expect(await originStats(stack.originUrl)).toEqual({ reads: 1, writes: 0 });
    // Reported: the app's clients log one CacheUndecodable metric line per pickle they met.
    const lines = stack
      .output()
      .split("\n")
      .filter((line) => line.includes("CacheUndecodable"));
    expect(lines.some((line) => line.includes(`"key":"${productKey("61")}","flags":1`))).toBe(true);
  });

  it.each(counters)(
    "reads Python's counter %s (%s) and counts on from it",
    async (name, _client, _value, expected) => {
      const start = name === "page-views" ? 124 : expected; // incremented once in Python
      const next = typeof start === "number" ? start + 1 : (BigInt(start) + 1n).toString();

      expect((await app.getCounter(name)).body).toEqual({ name, value: start });
      const post = await app.postCounter(name);
      expect(post.status).toBe(200);
      expect(post.body).toEqual({ name, value: next });
      expect((await app.getCounter(name)).body).toEqual({ name, value: next });
    },
  );

  it("counts 40 concurrent POSTs on Python's counter exactly once each", {
    timeout: 60_000,
  }, async () => {
    const name = "orders";
    const before = Number((await app.getCounter(name)).body.value);
    const posts = await Promise.all(range(1, 40).map(() => app.postCounter(name)));
    expect(tally(posts.map((post) => String(post.status)))).toEqual({ "200": 40 });
    expect(posts.map((post) => Number(post.body.value)).sort((a, b) => a - b)).toEqual(
      range(before + 1, before + 40),
    );
    // Python reads the count in new as a number too.
    expect(await python.get("pylibmc", [newMemcached.endpoint], counterKey(name))).toEqual(
      py.int(before + 40),
    );
  });

  it("answers 409 for a counter name whose key holds something else, and leaves it", async () => {
    await python.set(
      "pymemcache-serde",
      [oldMemcached.endpoint],
      counterKey("pickled"),
      py.json([1]),
    );
    expect((await app.getCounter("pickled")).status).toBe(409);
    expect((await app.postCounter("pickled")).status).toBe(409);
    expect(await newClient.get(counterKey("pickled"))).toBeUndefined();
  });
});
