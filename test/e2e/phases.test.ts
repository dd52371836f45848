// The cutover runbook over real HTTP through serverless-offline, one phase after the other and
// neighbouring phases side by side (two stacks at once: two deployed versions while traffic
// shifts), against two memcached processes and the demo origin started here, so that they
// outlive every stack:
//
//   single (on the cluster that becomes old) -> prepare -> prepare + fallback -> fallback + new
//   -> new, then old killed under new.
//
// The functions get patient cache timeouts (startTestStack): this checks where things go, not how
// fast. Each step checks where reads, fills, invalidations and counters go, that a PUT through one
// version is seen by the other at once, that counters stay exact across versions, and that a PUT
// whose invalidation could not reach a cluster says so (x-cache-invalidated: incomplete, and the
// CacheInvalidationIncomplete metric line).

import { afterAll, describe, expect } from "vitest";
import { type Origin, startOrigin } from "../../infra/local/origin.ts";
import type { Stack } from "../../infra/local/stack.ts";
import { TOMBSTONE_FLAGS } from "../../lib/cache/leases.ts";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import { safeKey } from "../../lib/memcache/keys.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import {
  type AppClient,
  appClient,
  outcome,
  range,
  startTestStack,
  tally,
  waitFor,
} from "../helpers/app.ts";
import { it } from "../helpers/fixtures.ts";

// The app's keys, as functions/products.ts and functions/counters.ts build them.
const productKey = (id: string) => safeKey(`product/${id}`, "products:");
const counterKey = (name: string) => safeKey(name, "counter:");

let oldMemcached: MemcachedProcess;
let newMemcached: MemcachedProcess;
let origin: Origin;
let oldClient: MemcacheClient;
let newClient: MemcacheClient;
const stacks = new Map<string, { stack: Stack; app: AppClient }>();

/** Starts the app in `phase` (undefined: no phase given) with both clusters, or old alone. */
async function deploy(name: string, phase: string | undefined) {
  const single = phase === "single";
  const stack = await startTestStack({
    newEndpoint: single ? oldMemcached.endpoint : newMemcached.endpoint,
    oldEndpoint: single ? "" : oldMemcached.endpoint,
    ...(phase === undefined || single ? {} : { cutoverPhase: phase }),
    originUrl: origin.url,
  });
  const deployed = { stack, app: appClient(stack.httpUrl) };
  stacks.set(name, deployed);
  return deployed.app;
}

async function retire(name: string): Promise<void> {
  await stacks.get(name)?.stack.stop();
  stacks.delete(name);
}

const app = (name: string) => stacks.get(name)!.app;

/** Where a product is: its version in a cluster, "tombstone", or undefined. */
async function productIn(client: MemcacheClient, id: string) {
  const item = await client.gets<{ body: string }>(productKey(id));
  if (item === undefined) return undefined;
  if (item.flags === TOMBSTONE_FLAGS) return "tombstone";
  return (JSON.parse(item.value!.body) as { version: number }).version;
}

// The two clusters and a client of each are the file's fixtures; the origin and the stacks are
// started here and stopped after the last test.
it.beforeAll(async ({ oldMemcached: old, newMemcached: fresh, oldClient: o, newClient: n }) => {
  [oldMemcached, newMemcached, oldClient, newClient] = [old, fresh, o, n];
  origin = await startOrigin({ port: 0 });
});

afterAll(async () => {
  for (const name of [...stacks.keys()]) await retire(name);
  await origin?.close();
});

describe("the cutover, phase by phase, over HTTP", { timeout: 120_000 }, () => {
  it("single, before the cutover: caches and counts in the one cluster (the future old)", async () => {
    const before = await deploy("single", "single");
    expect((await before.health()).body.phase).toBe("single");
    const warmed = await Promise.all(range(1, 20).map((id) => before.getProduct(String(id))));
    expect(tally(warmed.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 MISS": 20 });
    for (let i = 0; i < 10; i++) expect((await before.postCounter("visits")).status).toBe(200);
    expect(await oldClient.get(counterKey("visits"))).toBe(10);
    expect(await productIn(oldClient, "1")).toBe(1);
    await retire("single");
  });

  it("prepare: reads and counts in old; a PUT deletes in old and leaves a tombstone in new", async () => {
    const prepare = await deploy("prepare", "prepare");
    expect((await prepare.health()).body.phase).toBe("prepare");

    const reads = await Promise.all(range(1, 20).map((id) => prepare.getProduct(String(id))));
    expect(tally(reads.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 HIT": 20 });
    expect(await productIn(newClient, "1")).toBeUndefined();

    const put = await prepare.putProduct("3", { name: "Renamed in prepare", price: 3 });
    expect([put.status, put.invalidated]).toEqual([200, "complete"]);
    expect(await productIn(oldClient, "3")).toBeUndefined();
    expect(await productIn(newClient, "3")).toBe("tombstone");
    const reread = await prepare.getProduct("3");
    expect([reread.cache, reread.body.version]).toEqual(["MISS", 2]);
    expect(await productIn(oldClient, "3")).toBe(2);

    expect((await prepare.postCounter("visits")).body).toEqual({ name: "visits", value: 11 });
    expect(await newClient.get(counterKey("visits"))).toBeUndefined();
  });

  it("prepare + fallback side by side: a PUT through either is seen through both, counters stay exact", async () => {
    const fallback = await deploy("fallback", "fallback");
    const prepare = app("prepare");
    expect((await fallback.health()).body.phase).toBe("fallback");

    // Version B copies old's value into new...
    expect((await fallback.getProduct("1")).cache).toBe("HIT-FALLBACK");
    expect((await fallback.getProduct("1")).cache).toBe("HIT");
    expect(await productIn(newClient, "1")).toBe(1);
    // ...and a PUT through version A (prepare) reaches new too: B serves the new version at once.
    const put = await prepare.putProduct("1", { name: "Renamed through prepare", price: 1 });
    expect(put.invalidated).toBe("complete");
    const afterPut = await fallback.getProduct("1");
    expect([afterPut.cache, afterPut.body.version]).toEqual(["MISS", 2]);
    expect((await prepare.getProduct("1")).body.version).toBe(2);
    // And the other way round.
    expect((await prepare.getProduct("2")).cache).toBe("HIT");
    expect((await fallback.putProduct("2", { name: "Renamed through fallback" })).invalidated).toBe(
      "complete",
    );
    const prepareRead = await prepare.getProduct("2");
    expect([prepareRead.cache, prepareRead.body.version]).toEqual(["MISS", 2]);

    // 40 POSTs, half through each version, at once: the counter moves from old to new once.
    const posts = await Promise.all(
      range(1, 40).map((i) => (i % 2 === 0 ? prepare : fallback).postCounter("visits")),
    );
    expect(tally(posts.map(outcome))).toEqual({ "200": 40 });
    expect(
      posts.map((p) => Number(p.body.value)).sort((a, b) => a - b),
      JSON.stringify(posts.map((p) => p.body)),
    ).toEqual(range(12, 51));
    expect((await prepare.getCounter("visits")).body.value).toBe(51);
    expect((await fallback.getCounter("visits")).body.value).toBe(51);
    expect(await newClient.get(counterKey("visits"))).toBe(51);
    await retire("prepare");
  });

  it("fallback + new side by side: a PUT through new is seen through fallback, also after new lost its tombstone", async () => {
    const newApp = await deploy("new", "new");
    const fallback = app("fallback");
    expect((await newApp.health()).body.phase).toBe("new");

    expect((await newApp.getProduct("5")).cache).toBe("MISS"); // new never reads old
    expect((await fallback.getProduct("6")).cache).toBe("HIT-FALLBACK");
    const put = await newApp.putProduct("6", { name: "Renamed through new" });
    expect(put.invalidated).toBe("complete");
    expect(await productIn(newClient, "6")).toBe("tombstone");
    expect(await productIn(oldClient, "6")).toBeUndefined(); // old still configured: deleted too
    await newClient.flushAll(); // new loses the tombstone
    const afterFlush = await fallback.getProduct("6");
    expect([afterFlush.cache, afterFlush.body.version]).toEqual(["MISS", 2]);

    const posts = await Promise.all(
      range(1, 20).map((i) => (i % 2 === 0 ? newApp : fallback).postCounter("likes")),
    );
    expect(tally(posts.map(outcome))).toEqual({ "200": 20 });
    expect((await newApp.getCounter("likes")).body.value).toBe(20);
    expect((await fallback.getCounter("likes")).body.value).toBe(20);
    await retire("fallback");
  });

  it("new alone: never serves old's copy; with old dead, a PUT answers incomplete and counts a metric", async () => {
    const newApp = app("new");
    await oldClient.set(productKey("9"), "a value only old holds");
    const read = await newApp.getProduct("9");
    expect([read.cache, read.body.version]).toEqual(["MISS", 1]);

    await oldMemcached.kill("SIGKILL");
    const put = await newApp.putProduct("9", { name: "Written with old dead" });
    expect([put.status, put.invalidated]).toEqual([200, "incomplete"]);
    await waitFor(
      "the CacheInvalidationIncomplete metric line",
      async () =>
        stacks.get("new")!.stack.output().includes('"CacheInvalidationIncomplete":1') || undefined,
    );
    // new itself holds the tombstone: its own readers get the new version.
    const after = await newApp.getProduct("9");
    expect([after.cache, after.body.version]).toEqual(["MISS", 2]);
  });
});
