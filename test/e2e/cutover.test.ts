// A cutover end to end, over real HTTP through serverless-offline: memcached "old" is warmed by
// the app in its single-cluster phase, then the app runs the fallback phase with an empty "new"
// in front of it. Both memcached processes and the demo origin are started here, so they outlive
// the first stack into the second, and the test can flush new or kill old under the running app.
//
// Load: the functions get patient cache timeouts (appCacheTimeoutMs, 2 s), so what the app answers
// does not depend on an idle machine; the time bounds are expressed in that timeout and hold with
// two CPU-bound processes running beside the suite on 2 cores.

import { describe, expect } from "vitest";
import { MOVED_FLAGS } from "../../lib/cache/cutoverCounters.ts";
import { safeKey } from "../../lib/memcache/keys.ts";
import {
  type AppResponse,
  appCacheTimeoutMs,
  cutoverTest,
  mapLimit,
  originStats,
  outcome,
  range,
  resetOriginStats,
  startWorkers,
  tally,
} from "../helpers/app.ts";

const warmIds = range(1, 500).map(String);
/**
 * A request that waited on old for a whole cache timeout. The timing checks below count such
 * requests, so they hold on a loaded machine too: CPU contention adds tens to hundreds of ms to
 * a request, not a cache timeout (appCacheTimeoutMs, 2 s).
 */
const waitedOnOld = (ms: number) => ms >= appCacheTimeoutMs;
/** What any one request may take at most: one cache timeout, plus a second for the rest. */
const requestBoundMs = appCacheTimeoutMs + 1_000;
/** Requests in flight at once when walking many products (each gets a worker of its own). */
const parallel = 8;

// The app's keys, as functions/products.ts and functions/counters.ts build them (importing
// those modules would build their cache clients from this process's environment).
const productKey = (id: string) => safeKey(`product/${id}`, "products:");
const counterKey = (name: string) => safeKey(name, "counter:");

/**
 * The fixtures (`oldMemcached`, `newMemcached` and a client of each), and for the whole file:
 * `origin`, the demo origin both stacks share (a fixture); `warming`, the single-cluster phase's answers while
 * it warmed old (a stack on old alone, stopped afterwards: they must all be MISS); `stack`, the
 * cutover (new, empty, first; old behind it) started after that; and `app`, its HTTP client.
 */
const it = cutoverTest(warmIds, parallel);

// Both stacks start before the first test, given a minute each on a loaded machine.
it.beforeAll(async ({ app }) => {
  expect((await app.health()).status).toBe(200);
}, 120_000);

describe("cutover from an old cluster to a new one, over HTTP", () => {
  it("serves 500 products warmed in old without the origin: HIT-FALLBACK first, then HIT", {
    timeout: 60_000,
  }, async ({ app, stack, warming, oldClient, newClient }) => {
    expect(tally(warming.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 MISS": 500 });
    const keys = warmIds.map(productKey);
    expect((await oldClient.getMany(keys)).size).toBe(500);
    expect((await newClient.getMany(keys)).size).toBe(0);

    await resetOriginStats(stack.originUrl);
    const reads = await mapLimit(warmIds, parallel, async (id) => {
      const first = await app.getProduct(id);
      const second = await app.getProduct(id);
      expect(first.body).toMatchObject({ id, name: `Product ${id}`, version: 1 });
      expect(second.body).toEqual(first.body);
      return `${first.status} ${first.cache}, ${second.status} ${second.cache}`;
    });

    expect(tally(reads)).toEqual({ "200 HIT-FALLBACK, 200 HIT": 500 });
    expect(await originStats(stack.originUrl)).toEqual({ reads: 0, writes: 0 });
    // Copied into new on the way; old is only read.
    expect((await newClient.getMany(keys)).size).toBe(500);
    expect((await oldClient.getMany(keys)).size).toBe(500);
  });

  it("never resurfaces old's copy after a PUT, even once new has been flushed", async ({
    app,
    oldClient,
    newClient,
  }) => {
    const ids = ["41", "42", "43", "44", "45"];
    for (const id of ids) {
      // Cached in both clusters: old from the warm-up, new by this read (or the test before).
      expect((await app.getProduct(id)).cache).toMatch(/^HIT/);
      const put = await app.putProduct(id, { name: `Renamed ${id} during the cutover`, price: 1 });
      expect(put.status).toBe(200);
      expect(put.invalidated).toBe("complete");
      expect(put.body).toMatchObject({ id, version: 2 });
      expect(await oldClient.get(productKey(id))).toBeUndefined();
    }

    await newClient.flushAll();

    for (const id of ids) {
      const after = await app.getProduct(id);
      expect(after.status).toBe(200);
      expect(after.cache).toBe("MISS");
      expect(after.body).toMatchObject({
        id,
        name: `Renamed ${id} during the cutover`,
        version: 2,
      });
      const again = await app.getProduct(id);
      expect(again.cache).toBe("HIT");
      expect(again.body).toEqual(after.body);
    }
  });

  it("continues a counter from old's value: 100 in old + 50 concurrent POSTs = 150", {
    timeout: 60_000,
  }, async ({ app, oldClient, newClient }) => {
    const name = "cutover-visits";
    const key = counterKey(name);
    await oldClient.set(key, 100);
    expect(await newClient.get(key)).toBeUndefined();
    expect((await app.getCounter(name)).body).toEqual({ name, value: 100 });

    // 50 workers started first: their cold starts at once are not what this test measures.
    await startWorkers(50, () => app.postCounter("warm-up"));
    const posts = await Promise.all(range(1, 50).map(() => app.postCounter(name)));
    expect(tally(posts.map(outcome))).toEqual({ "200": 50 });
    expect(posts.map((post) => Number(post.body.value)).sort((a, b) => a - b)).toEqual(
      range(101, 150),
    );

    expect((await app.getCounter(name)).body).toEqual({ name, value: 150 });
    expect(await newClient.get(key)).toBe(150);
    // Old keeps the mark of the move (moved:<flags>:<value>), which no reader takes for a value.
    const mark = await oldClient.gets(key);
    expect([mark?.flags, mark?.data.toString()]).toEqual([MOVED_FLAGS, "moved:2:100"]);
    expect(await oldClient.get(key)).toBeUndefined();
  });

  it("reports phase fallback (both endpoints, no phase given) with both clusters on GET /health", async ({
    app,
    oldMemcached,
    newMemcached,
  }) => {
    const health = await app.health();
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ phase: "fallback", ok: true });
    expect(Object.keys(health.body.clusters).sort()).toEqual(["new", "old"]);
    for (const [name, memcached] of [
      ["new", newMemcached],
      ["old", oldMemcached],
    ] as const) {
      expect(health.body.clusters[name]!.servers).toEqual([memcached.endpoint]);
      expect(health.body.clusters[name]!.nodes).toEqual([
        { endpoint: memcached.endpoint, ok: true, version: expect.any(String) },
      ]);
    }
  });

  it("waits on a hung old cluster only as long as the dead-node rule allows", {
    timeout: 60_000,
  }, async ({ app, oldMemcached }) => {
    // The rule (lib/memcache/connection.ts defaults): a node is skipped for deadRetryMs (2 s)
    // after failuresBeforeDead (2) consecutive failures, then one request probes it again. Each
    // failure against a hung node costs one cache timeout on top of the origin's 50 ms.
    const failuresBeforeDead = 2;
    const deadRetryMs = 2_000;
    for (const id of ["701", "702", "703"]) expect((await app.getProduct(id)).status).toBe(200);
    await oldMemcached.pause();
    const gets: AppResponse[] = [];
    const started = performance.now();
    try {
      for (const id of range(1001, 1060).map(String)) gets.push(await app.getProduct(id));
    } finally {
      oldMemcached.resume();
    }
    const elapsedMs = performance.now() - started;

    expect(tally(gets.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 MISS": 60 });
    const latencies = gets.map((r) => Math.round(r.ms));
    // Sequential requests run in one worker, so its one connection to old decides every wait.
    const allowed = failuresBeforeDead + Math.ceil(elapsedMs / deadRetryMs);
    expect(latencies.filter(waitedOnOld).length, String(latencies)).toBeLessThanOrEqual(allowed);
    expect(Math.max(...latencies), String(latencies)).toBeLessThan(requestBoundMs);
  });

  // Last: it kills old for good.
  it("keeps answering, without waiting on it, when old is killed mid-cutover", {
    timeout: 60_000,
  }, async ({ app, oldMemcached }) => {
    // Warm a few workers on the path first, so that their cold starts are not measured.
    for (const id of ["601", "602", "603"]) expect((await app.getProduct(id)).status).toBe(200);
    await oldMemcached.kill("SIGKILL");

    const gets: AppResponse[] = [];
    for (const id of range(2001, 2060).map(String)) gets.push(await app.getProduct(id));
    const puts: AppResponse[] = [];
    for (const id of ["1", "2", "3", "4", "5"]) {
      puts.push(await app.putProduct(id, { name: `Written with old dead ${id}`, price: 2 }));
    }
    const reread = await Promise.all(["1", "2", "3", "4", "5"].map((id) => app.getProduct(id)));

    expect(tally(gets.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 MISS": 60 });
    expect(tally(puts.map(outcome))).toEqual({ "200": 5 });
    // The origin took the writes; old could not acknowledge the invalidation, and the PUT says so.
    expect(puts.map((put) => put.invalidated)).toEqual(puts.map(() => "incomplete"));
    for (const response of reread) {
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({
        name: expect.stringMatching(/^Written with old dead/),
      });
    }
    const latencies = gets.map((r) => Math.round(r.ms));
    // The dead-node rule: a failing node is skipped, not waited on; the origin itself takes 50 ms.
    expect(latencies.filter(waitedOnOld).length, String(latencies)).toBeLessThanOrEqual(3);
    expect(Math.max(...latencies), String(latencies)).toBeLessThan(requestBoundMs);
    expect(Math.max(...[...puts, ...reread].map((r) => r.ms))).toBeLessThan(requestBoundMs);
  });
});
