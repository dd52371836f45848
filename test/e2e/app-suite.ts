// The reference app end to end, single-cluster phase: real HTTP (fetch) through serverless-offline
// to the functions, a real memcached started here (so the test can stop, pause and restart it
// under the running stack) and the demo origin, whose /_stats shows when the cache was skipped.
// The suite is run by app.test.ts (plain text) and app-tls.test.ts (TLS to memcached -Z).
//
// Load: the functions get patient cache timeouts (appCacheTimeoutMs, 2 s), so what the app answers
// does not depend on an idle machine; the time bounds are expressed in that timeout and hold with
// two CPU-bound processes running beside the suite on 2 cores.

import { describe, expect } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  type AppResponse,
  appCacheTimeoutMs,
  appClient,
  memcachedKeys,
  originStats,
  outcome,
  type Product,
  range,
  startTestStack,
  startWorkers,
  tally,
  waitFor,
} from "../helpers/app.ts";
import { counters } from "../helpers/client.ts";
import { patientTimeoutMs, test } from "../helpers/fixtures.ts";

/**
 * A request the cache could not serve must still answer within this: one cache timeout (the
 * functions' CACHE_TIMEOUT_MS) and a second for the origin and the HTTP path on a loaded machine.
 */
const bypassBoundMs = appCacheTimeoutMs + 1_000;

function expectProduct(response: AppResponse<Product>, id: string): void {
  expect(response.status).toBe(200);
  expect(response.body).toMatchObject({ id, name: `Product ${id}`, version: 1 });
}

/**
 * The suite, run once over plain text (app.test.ts) and once over TLS (app-tls.test.ts).
 *
 * For the whole file: `cache`, the memcached the app runs on (TLS only with "tls", certificates
 * from the `certs` fixture, so the test can stop, pause and restart it under the running stack);
 * `direct`, a client of it to look into it; `stack`, the app on that memcached alone (with "tls"
 * the functions speak TLS to it and trust the test CA); `app`, its HTTP client; `reads()`, the
 * origin's read count; and `pollUntilMissThenHit(id)`, which GETs `id` until the cache is usable
 * again and the x-cache values reach "MISS, HIT", returning every value seen so the assertion
 * can show them all.
 */
export function appSuite(transport: "plain" | "tls"): void {
  const tls = transport === "tls";
  const it = test
    .extend("cache", { scope: "file" }, async ({ spawnFileMemcached, certs }) =>
      spawnFileMemcached(tls ? { tls: { certFile: certs.certFile, keyFile: certs.keyFile } } : {}),
    )
    .extend("direct", { scope: "file" }, async ({ cache, certs }, { onCleanup }) => {
      const client = new MemcacheClient({
        servers: cache.endpoint,
        timeoutMs: patientTimeoutMs,
        connectTimeoutMs: patientTimeoutMs,
        tls: tls ? { ca: certs.caPem } : false,
      });
      onCleanup(() => client.close());
      return client;
    })
    .extend("stack", { scope: "file" }, async ({ cache, certs }, { onCleanup }) => {
      const stack = await startTestStack({
        newEndpoint: cache.endpoint,
        oldEndpoint: "",
        ...(tls && { tls: true, certificates: certs }),
      });
      onCleanup(() => stack.stop());
      return stack;
    })
    .extend("app", { scope: "file" }, async ({ stack }) => appClient(stack.httpUrl))
    .extend("reads", { scope: "file" }, async ({ stack }) => {
      return async () => (await originStats(stack.originUrl)).reads;
    })
    .extend("pollUntilMissThenHit", { scope: "file" }, async ({ app }) => {
      return async (id: string): Promise<string[]> => {
        const seen: string[] = [];
        await waitFor(`x-cache MISS then HIT for /products/${id}`, async () => {
          const response = await app.getProduct(id);
          expect(response.status).toBe(200);
          seen.push(String(response.cache));
          return seen.slice(-2).join(",") === "MISS,HIT" ? true : undefined;
        });
        return seen;
      };
    });

  // The stack starts before the first test, given a minute to answer on a loaded machine.
  it.beforeAll(async ({ app }) => {
    expect((await app.health()).status).toBe(200);
  }, 60_000);

  describe(`reference app over HTTP, one cluster (${transport})`, () => {
    it("serves a product as MISS from the origin, then as HIT without touching the origin", async ({
      app,
      reads,
    }) => {
      const before = await reads();
      const first = await app.getProduct("101");
      expectProduct(first, "101");
      expect(first.cache).toBe("MISS");
      expect(await reads()).toBe(before + 1);

      const second = await app.getProduct("101");
      expect(second.status).toBe(200);
      expect(second.cache).toBe("HIT");
      expect(second.body).toEqual(first.body);
      expect(await reads()).toBe(before + 1);
    });

    it("returns the written data right after a PUT, never the cached old copy", async ({ app }) => {
      const id = "202";
      expect((await app.getProduct(id)).cache).toBe("MISS");
      expect((await app.getProduct(id)).cache).toBe("HIT");

      for (let round = 1; round <= 5; round++) {
        const put = await app.putProduct(id, { name: `Renamed ${round}`, price: round });
        expect(put.status).toBe(200);
        expect(put.body).toMatchObject({ id, name: `Renamed ${round}`, version: round + 1 });

        const after = await app.getProduct(id);
        expect(after.status).toBe(200);
        expect(after.cache).toBe("MISS");
        expect(after.body).toEqual(put.body);
        const again = await app.getProduct(id);
        expect(again.cache).toBe("HIT");
        expect(again.body).toEqual(put.body);
      }
    });

    it("answers 404 for an unknown product without caching it, and shows it once created", async ({
      app,
      reads,
    }) => {
      const id = "no-such-product";
      const before = await reads();
      const first = await app.getProduct(id);
      expect(first.status).toBe(404);
      expect(first.cache).not.toMatch(/^HIT/);
      expect(await reads()).toBe(before + 1);

      // Not cached: the second GET reaches the origin again (and does not wait on a lease).
      const second = await app.getProduct(id);
      expect(second.status).toBe(404);
      expect(second.cache).not.toMatch(/^HIT/);
      expect(second.ms).toBeLessThan(bypassBoundMs);
      expect(await reads()).toBe(before + 2);

      const put = await app.putProduct(id, { name: "Created later", price: 5 });
      expect(put.status).toBe(200);
      const created = await app.getProduct(id);
      expect(created.status).toBe(200);
      expect(created.body).toMatchObject({ id, name: "Created later", version: 1 });
      expect(created.body).toEqual(put.body);
    });

    it("counts 100 concurrent POST /counters/x to exactly 100", { timeout: 90_000 }, async ({
      app,
    }) => {
      // 100 workers started first: their cold starts at once are not what this test measures.
      await startWorkers(100, () => app.postCounter("warm-up"));
      expect((await app.getCounter("x")).body).toEqual({ name: "x", value: 0 });

      const posts = await Promise.all(range(1, 100).map(() => app.postCounter("x")));
      expect(tally(posts.map(outcome))).toEqual({ "200": 100 });
      const values = posts.map((post) => Number(post.body.value)).sort((a, b) => a - b);
      expect(values).toEqual(range(1, 100));

      const read = await app.getCounter("x");
      expect(read.status).toBe(200);
      expect(read.body).toEqual({ name: "x", value: 100 });
    });

    it("never sends a product id with CR/LF, spaces or 300 characters to memcached raw", async ({
      app,
      direct,
      cache,
      certs,
    }) => {
      await direct.set("sentinel", "still here");
      const hostile = [
        "a\r\nflush_all",
        "b\r\ndelete sentinel",
        "c\r\nset sentinel 0 0 4\r\ngone",
        "with spaces in it",
        "delete sentinel",
        "x".repeat(300),
      ];
      const createdHostile = hostile.map((id) => `created ${id}`);
      const before = await counters(direct, ["cmd_flush", "delete_hits"]);

      // Created at the origin first: PUT invalidates (a delete that misses), GET caches them.
      for (const id of createdHostile) {
        const put = await app.putProduct(id, { name: "hostile", price: 1 });
        expect(put.status, JSON.stringify(id)).toBe(200);
        expect(put.body.id).toBe(id);
        const first = await app.getProduct(id);
        expect([first.status, first.cache, first.body.id]).toEqual([200, "MISS", id]);
        const second = await app.getProduct(id);
        expect([second.status, second.cache, second.body]).toEqual([200, "HIT", put.body]);
      }
      // Nothing deleted a cached item: no command was smuggled in through a key.
      expect(await counters(direct, ["cmd_flush", "delete_hits"])).toEqual(before);

      // Unknown at the origin: 404, twice each. Each such miss takes a stampede lease and gives it
      // back once the 404 turns out not cacheable: exactly one delete hit per request, no more.
      let notFound = 0;
      for (const id of hostile) {
        for (let i = 0; i < 2; i++) {
          const response = await app.getProduct(id);
          expect(response.status, JSON.stringify(id)).toBe(404);
          notFound++;
        }
      }

      expect(await direct.get("sentinel")).toBe("still here");
      expect(await counters(direct, ["cmd_flush", "delete_hits"])).toEqual({
        cmd_flush: 0,
        delete_hits: before.delete_hits + notFound,
      });
      const keys = await memcachedKeys(cache.endpoint, tls ? { ca: certs.caPem } : undefined);
      expect(keys).toContain("sentinel");
      // What the ids became: hashed keys; every key is 1..250 printable ASCII characters ("!".."~"),
      // so none holds a space, CR/LF or any other control character.
      expect(keys.filter((key) => !/^[!-~]{1,250}$/.test(key))).toEqual([]);
      expect(keys.filter((key) => key.startsWith("products:#")).length).toBeGreaterThanOrEqual(
        createdHostile.length,
      );
    });

    it("reports phase single and the new cluster's node on GET /health", async ({ app, cache }) => {
      const health = await app.health();
      expect(health.status).toBe(200);
      expect(health.body.phase).toBe("single");
      expect(health.body.ok).toBe(true);
      expect(Object.keys(health.body.clusters)).toEqual(["new"]);
      expect(health.body.clusters.new!.servers).toEqual([cache.endpoint]);
      expect(health.body.clusters.new!.nodes).toEqual([
        { endpoint: cache.endpoint, ok: true, version: expect.any(String) },
      ]);
    });

    it("serves every GET from the origin (BYPASS) while memcached is down, and HITs once it is back", {
      timeout: 60_000,
    }, async ({ app, cache, pollUntilMissThenHit }) => {
      expect((await app.getProduct("303")).cache).toBe("MISS");
      await cache.stop();
      try {
        for (const id of ["303", "304", "305", "306", "307", "308"]) {
          const response = await app.getProduct(id);
          expectProduct(response, id);
          expect(response.cache).toBe("BYPASS");
          expect(response.ms).toBeLessThan(bypassBoundMs);
        }
        // Counters live only in the cache: a clear 503, quickly, instead of a wrong count.
        const post = await app.postCounter("while-down");
        expect(post.status).toBe(503);
        expect(post.body).toEqual({ error: "counter store unavailable" }); // no detail to callers
        expect(post.ms).toBeLessThan(bypassBoundMs);
        // Health says the cache is down, and nothing about where it is or why.
        const health = await app.health();
        expect(health.status).toBe(503);
        expect(health.body).toEqual({ phase: "single", error: "cache unavailable" });
      } finally {
        await cache.restart();
      }
      // The same stack (same Lambda environments, same module-scope clients) recovers.
      expect((await pollUntilMissThenHit("309")).join(",")).toMatch(/^(BYPASS,)*MISS,HIT$/);
    });

    it("serves every GET from the origin (BYPASS) while memcached hangs, and HITs once it answers", {
      timeout: 60_000,
    }, async ({ app, cache, pollUntilMissThenHit }) => {
      expect((await app.getProduct("501")).cache).toBe("MISS");
      expect((await app.getProduct("501")).cache).toBe("HIT");
      await cache.pause();
      try {
        for (const id of ["501", "502", "503", "504", "505", "506"]) {
          const response = await app.getProduct(id);
          expectProduct(response, id);
          expect(response.cache).toBe("BYPASS");
          expect(response.ms).toBeLessThan(bypassBoundMs);
        }
      } finally {
        cache.resume();
      }
      expect((await pollUntilMissThenHit("507")).join(",")).toMatch(/^(BYPASS,)*MISS,HIT$/);
      // The data survived the hang.
      const cached = await app.getProduct("501");
      expect(cached.cache).toBe("HIT");
      expectProduct(cached, "501");
    });
  });
}
