// The cutover phases (lib/cache/phases.ts), each built by cacheForPhase from its environment as the
// reference app builds it, against two real memcached processes "old" and "new": where each
// phase reads and fills, what its invalidation touches, that an invalidation is reported
// incomplete (false, an event naming the cluster) when a cluster does not acknowledge it after
// the retries, and that a load which read before an invalidation never fills after it — with
// every lease mode, also for a waiter that gives up, and across a restart of memcached (whose
// CAS values start again from 1).

import { afterAll, describe, expect, vi } from "vitest";
import { CacheAside, type CacheEvent } from "../../lib/cache/cacheAside.ts";
import { type CutoverPhase, cacheConfigFromEnv } from "../../lib/cache/config.ts";
import { casIncrement, increment, readCounter } from "../../lib/cache/counters.ts";
import { type LeaseMode, PLACEHOLDER_FLAGS, TOMBSTONE_FLAGS } from "../../lib/cache/leases.ts";
import { cacheForPhase, type PhaseCache } from "../../lib/cache/phases.ts";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheConnectionClosedError,
  MemcacheCounterValueError,
  MemcacheIncompleteInvalidationError,
} from "../../lib/memcache/errors.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { freePort } from "../../tools/ports.ts";
import { it } from "../helpers/fixtures.ts";

let oldServer: MemcachedProcess;
let newServer: MemcachedProcess;
let probeNew: PhaseCache;
let probeOld: PhaseCache;
const built: PhaseCache[] = [];
let keyCount = 0;

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `phases:${keyCount}:${name}`;
}

/** A function of `phase`, as cacheForPhase builds it from its environment, with its events. */
function deployed(
  phase: CutoverPhase,
  leaseMode: Exclude<LeaseMode, "auto"> = "meta",
  servers: { newEndpoint?: string; oldEndpoint?: string } = {},
) {
  const newEndpoint = servers.newEndpoint ?? newServer.endpoint;
  const oldEndpoint = servers.oldEndpoint ?? oldServer.endpoint;
  const env = {
    CACHE_NEW_ENDPOINT: phase === "single" ? oldEndpoint : newEndpoint,
    CACHE_OLD_ENDPOINT: phase === "single" ? "" : oldEndpoint,
    CACHE_CUTOVER_PHASE: phase,
    CACHE_LEASE_MODE: leaseMode,
    CACHE_TIMEOUT_MS: "2000",
    CACHE_CONNECT_TIMEOUT_MS: "2000",
  };
  const phaseCache = cacheForPhase(cacheConfigFromEnv(env), { longestTtlSeconds: 300 });
  built.push(phaseCache);
  const events: CacheEvent[] = [];
  const cache = new CacheAside(phaseCache.store, { onEvent: (event) => events.push(event) });
  return { ...phaseCache, cache, events };
}

/** A loader that counts its calls and resolves with `value`. */
const loader = <T>(value: T) => vi.fn(async () => value);

/** What a cluster holds for `k`: its flags and value, or undefined. */
async function held(client: MemcacheClient, k: string) {
  const item = await client.gets(k);
  return item === undefined ? undefined : { flags: item.flags, value: item.value };
}

// The two clusters are the file's memcached fixtures; a test that breaks a cluster makes its own.
it.beforeAll(({ newMemcached, oldMemcached }) => {
  [oldServer, newServer] = [oldMemcached, newMemcached];
  probeNew = deployed("new", "meta", { oldEndpoint: "" });
  probeOld = deployed("single", "meta");
});

afterAll(() => {
  for (const phaseCache of built.splice(0)) phaseCache.close();
});

const newProbe = () => probeNew.newClient;
const oldProbe = () => probeOld.newClient;

describe("where each phase reads, fills and invalidates", () => {
  it("prepare: reads and fills old; the invalidation deletes in old and leaves a tombstone in new", async () => {
    const app = deployed("prepare");
    const k = key("prepare");
    await oldProbe().set(k, "v1");

    expect(await app.cache.getOrLoad(k, loader("origin"))).toEqual({ value: "v1", status: "HIT" });
    expect(await app.cache.invalidate(k)).toBe(true);
    expect(await held(oldProbe(), k)).toBeUndefined();
    expect((await held(newProbe(), k))?.flags).toBe(TOMBSTONE_FLAGS);
    expect(await app.cache.getOrLoad(k, loader("v2"))).toEqual({ value: "v2", status: "MISS" });
    expect(await oldProbe().get(k)).toBe("v2");
    expect((await held(newProbe(), k))?.flags).toBe(TOMBSTONE_FLAGS); // new is not filled
  });

  it("new: reads and fills new only; the invalidation leaves a tombstone in new and deletes in old while old is configured", async () => {
    const app = deployed("new");
    const k = key("new");
    await oldProbe().set(k, "from old");

    expect(await app.cache.getOrLoad(k, loader("v1"))).toEqual({ value: "v1", status: "MISS" });
    expect(await newProbe().get(k)).toBe("v1");
    expect(await app.cache.invalidate(k)).toBe(true);
    expect((await held(newProbe(), k))?.flags).toBe(TOMBSTONE_FLAGS);
    expect(await held(oldProbe(), k)).toBeUndefined();

    const withoutOld = deployed("new", "meta", { oldEndpoint: "" });
    const j = key("new-alone");
    expect(await withoutOld.cache.invalidate(j)).toBe(true);
    expect((await held(newProbe(), j))?.flags).toBe(TOMBSTONE_FLAGS);
  });

  it("single: the invalidation deletes (no tombstone)", async () => {
    const app = deployed("single");
    const k = key("single");
    await oldProbe().set(k, "v1");
    expect(await app.cache.invalidate(k)).toBe(true);
    expect(await held(oldProbe(), k)).toBeUndefined();
    expect(await held(newProbe(), k)).toBeUndefined();
  });
});

describe.each<CutoverPhase>(["single", "prepare", "fallback", "new"])(
  "an invalidation in phase %s that a cluster does not acknowledge",
  (phase) => {
    it("is retried, then reported incomplete: false, an event naming the cluster; never true", async () => {
      const app = deployed(phase);
      const failing = phase === "single" || phase === "prepare" ? "old" : "new";
      const client = failing === "old" ? (app.oldClient ?? app.newClient) : app.newClient;
      const command = failing === "old" ? "delete" : "set";
      const attempts = vi
        .spyOn(client, command)
        .mockRejectedValue(new MemcacheConnectionClosedError("test: dropped"));
      const k = key(`incomplete-${phase}`);

      expect(await app.cache.invalidate(k)).toBe(false);

      expect(attempts).toHaveBeenCalledTimes(3);
      const error = app.events.find((e) => e.type === "invalidate-error")?.error;
      expect(error).toBeInstanceOf(MemcacheIncompleteInvalidationError);
      const expected = phase === "single" ? ["cache"] : [failing];
      expect((error as MemcacheIncompleteInvalidationError).clusters).toEqual(expected);
    });

    it("is complete when a retry gets through", async () => {
      const app = deployed(phase);
      const client = phase === "single" ? app.newClient : (app.oldClient ?? app.newClient);
      const command = phase === "new" ? "set" : "delete";
      const target = phase === "new" ? app.newClient : client;
      const real = target[command].bind(target) as (...args: unknown[]) => Promise<boolean>;
      let calls = 0;
      vi.spyOn(target, command).mockImplementation(async (...args: unknown[]) => {
        calls++;
        if (calls === 1) throw new MemcacheConnectionClosedError("test: dropped once");
        return real(...args);
      });

      expect(await app.cache.invalidate(key(`retried-${phase}`))).toBe(true);
      expect(calls).toBe(2);
    });
  },
);

// The runbook's rollback rule (README "Rolling back", infra/cutoverPhases.ts caveats): once a
// fallback version ran, roll prepare back no further than prepare. Single on old reads and
// invalidates old alone: it cannot count a counter moved to new, and it leaves new's copies for a
// fallback deployed again to serve — unless new is flushed before prepare is deployed again.
describe("rolling prepare back to single after a fallback version ran", () => {
  /** Two fresh clusters, and a function of each phase on them. */
  async function stage(spawnMemcached: (o?: object) => Promise<MemcachedProcess>) {
    const [oldOne, newOne] = await Promise.all([spawnMemcached(), spawnMemcached()]);
    const on = { oldEndpoint: oldOne.endpoint, newEndpoint: newOne.endpoint };
    const at = (phase: CutoverPhase) => deployed(phase, "meta", on);
    return { single: at("single"), prepare: at("prepare"), fallback: at("fallback") };
  }

  it("single refuses a counter moved to new (MemcacheCounterValueError); prepare counts it on", async ({
    spawnMemcached,
  }) => {
    const { single, prepare, fallback } = await stage(spawnMemcached);
    const k = key("rollback-counter");
    expect(await increment(single.counters, k, 5)).toBe(5);
    expect(await increment(fallback.counters, k)).toBe(6); // moved to new

    for (const count of [
      () => readCounter(single.counters, k),
      () => increment(single.counters, k),
      () => casIncrement(single.counters, k),
    ]) {
      await expect(count()).rejects.toBeInstanceOf(MemcacheCounterValueError);
    }
    expect(await readCounter(prepare.counters, k)).toBe(6);
    expect(await increment(prepare.counters, k)).toBe(7);
  });

  it("single's invalidation misses new's copy: fallback deployed again serves it, until new is flushed", async ({
    spawnMemcached,
  }) => {
    const { single, fallback } = await stage(spawnMemcached);
    const k = key("rollback-copy");
    await single.newClient.set(k, "v1"); // old
    expect(await fallback.cache.getOrLoad(k, loader("origin"))).toEqual({
      value: "v1",
      status: "HIT-FALLBACK",
    });
    expect(await fallback.newClient.get(k)).toBe("v1"); // copied into new

    // Rolled back to single: origin := v2, invalidation acknowledged (old only).
    expect(await single.cache.invalidate(k)).toBe(true);
    expect(await single.cache.getOrLoad(k, loader("v2"))).toEqual({ value: "v2", status: "MISS" });

    // Forward again without a flush: new's copy is older than the acknowledged invalidation.
    expect(await fallback.cache.getOrLoad(k, loader("v2"))).toEqual({ value: "v1", status: "HIT" });
    // The runbook's step: flush new (while single runs) before prepare and fallback again.
    await fallback.newClient.flushAll();
    expect(await fallback.cache.getOrLoad(k, loader("v3"))).toEqual({
      value: "v2",
      status: "HIT-FALLBACK",
    });
  });
});

describe("when the old cluster is dead", () => {
  it("prepare and fallback report invalidations incomplete at once; new (without old) is unaffected", async () => {
    const oldEndpoint = `127.0.0.1:${await freePort()}`; // nothing listens there
    for (const phase of ["prepare", "fallback", "new"] as const) {
      const app = deployed(phase, "meta", { oldEndpoint });
      const started = performance.now();
      expect(await app.cache.invalidate(key(`dead-${phase}`))).toBe(false);
      expect(performance.now() - started).toBeLessThan(1_000);
    }
    expect(await deployed("new", "meta", { oldEndpoint: "" }).cache.invalidate(key("x"))).toBe(
      true,
    );
  });
});

// A load that read before an invalidation and fills after it (the race of the lock
// leases): the fill must lose, in every lease mode and every phase that fills, and also for a
// waiter that gave up waiting (maxWaitMs 0) and loads itself.
//   reader: miss -> lease (meta: vivified; lock, off: a placeholder under the key) -> load v1
//   writer: origin := v2; invalidate (delete, or tombstone)  -> acknowledged
//   reader: fill v1 -> refused (the placeholder or the CAS it stood on is gone)
//   next reader: MISS -> v2
describe.each<Exclude<LeaseMode, "auto">>(["meta", "lock", "off"])(
  "a fill that read before an acknowledged invalidation (leases: %s)",
  (mode) => {
    it.each<CutoverPhase>(["single", "prepare", "fallback", "new"])(
      "loses in phase %s, and the next read loads the new value",
      async (phase) => {
        const app = deployed(phase, mode);
        const k = key(`race-${phase}-${mode}`);
        const acquired = await app.cache.acquire<string>(k);
        if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);

        expect(await app.cache.invalidate(k)).toBe(true);
        expect(await acquired.load.fill("v1 (read before the invalidation)")).toBe(false);

        expect(await app.cache.getOrLoad(k, loader("v2"))).toEqual({ value: "v2", status: "MISS" });
      },
    );

    it("loses for a waiter that gave up waiting and loaded itself", async () => {
      const winner = deployed("single", mode);
      const waiter = new CacheAside(deployed("single", mode).store, { maxWaitMs: 0 });
      const k = key(`gave-up-${mode}`);
      const won = await winner.cache.acquire<string>(k);
      if (!("load" in won)) throw new Error(`expected a miss, got ${won.status}`);
      const gaveUp = await waiter.acquire<string>(k);
      if (!("load" in gaveUp)) throw new Error(`expected a miss, got ${gaveUp.status}`);

      expect(await winner.cache.invalidate(k)).toBe(true);
      expect(await gaveUp.load.fill("v1 (read before the invalidation)")).toBe(false);
      expect(await won.load.fill("v1 too")).toBe(false);
      expect(await oldProbe().get(k)).toBeUndefined();
    });
  },
);

describe("lock leases without the meta protocol", () => {
  it("keep the lease as a placeholder under the key, and give it back without deleting what replaced it", async () => {
    const app = deployed("fallback", "lock");
    const k = key("placeholder");
    const acquired = await app.cache.acquire<string>(k);
    if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);
    expect((await held(newProbe(), k))?.flags).toBe(PLACEHOLDER_FLAGS);
    expect(await newProbe().get(k)).toBeUndefined(); // a miss for plain readers

    expect(await app.cache.invalidate(k)).toBe(true);
    await acquired.load.abandon();
    expect((await held(newProbe(), k))?.flags).toBe(TOMBSTONE_FLAGS); // the tombstone stays
  });
});

describe("a restart of memcached between a lease and its fill", () => {
  // memcached counts CAS values from 1 again after a restart: a token read before it can equal
  // the CAS of an item written after it. A lease fills only on the socket its token was read on.
  it.for<Exclude<LeaseMode, "auto">>(["meta", "lock", "off"])(
    "does not fill with a token from before the restart (leases: %s)",
    async (mode, { spawnMemcached }) => {
      const server = await spawnMemcached();
      const app = deployed("new", mode, { newEndpoint: server.endpoint, oldEndpoint: "" });
      const k = key(`restart-${mode}`);
      // Line the CAS values up: after the restart the tombstone gets CAS 1 (lock, off), and its
      // stale mark (meta) CAS 2 — the lease's token must be that number for the test to bite.
      if (mode === "meta") await app.newClient.set(key("cas-1"), "x");
      const acquired = await app.cache.acquire<string>(k);
      if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);

      await server.kill("SIGKILL");
      await server.restart();
      // The first command after the restart finds the socket closed; the retry gets through.
      expect(await app.cache.invalidate(k)).toBe(true);

      expect(await acquired.load.fill("v1 (read before the invalidation)")).toBe(false);
      expect((await app.newClient.gets(k))?.flags).toBe(TOMBSTONE_FLAGS);
    },
  );
});

describe("what a fallback version finds in old", () => {
  it("another version's load in progress there (a prepare reader's meta lease) is a miss, not an empty value", async () => {
    const preparing = deployed("prepare", "meta");
    const falling = deployed("fallback", "meta");
    const k = key("old-placeholder");
    const acquired = await preparing.cache.acquire<string>(k);
    if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);

    const origin = loader("v1");
    expect(await falling.cache.getOrLoad(k, origin)).toEqual({ value: "v1", status: "MISS" });
    expect(origin).toHaveBeenCalledTimes(1);
    expect(await held(newProbe(), k)).toEqual({ flags: 16, value: "v1" }); // not copied empty
    await acquired.load.abandon();
  });

  it("an item marked stale there is not copied into new as fresh: the origin answers", async () => {
    const falling = deployed("fallback", "meta");
    const k = key("old-stale");
    // As a single version's invalidate(k, { stale: true }) leaves it in old: md with I and T.
    expect(await oldProbe().set(k, "v1")).toBe(true);
    expect((await oldProbe().metaDelete(k, ["I", "T30"])).code).toBe("HD");

    const origin = loader("v2");
    expect(await falling.cache.getOrLoad(k, origin)).toEqual({ value: "v2", status: "MISS" });
    expect(await held(newProbe(), k)).toEqual({ flags: 16, value: "v2" });
  });
});

describe("a refresh of a stale value that fails (serveStaleOnError)", () => {
  it("keeps an invalidation's tombstone written meanwhile, with its own lifetime", async () => {
    const app = deployed("fallback", "meta");
    const k = key("stale-refresh-tombstone");
    await app.cache.write(k, "v1");
    expect(await app.cache.invalidate(k, { stale: true })).toBe(true);
    const refreshing = await app.cache.acquire<string>(k);
    if (!("load" in refreshing)) throw new Error(`expected a refresh, got ${refreshing.status}`);
    expect(refreshing.load.stale).toBe("v1");

    expect(await app.cache.invalidate(k)).toBe(true); // a PUT's tombstone, 310 s
    expect(await refreshing.load.fail(new Error("origin down"))).toBe("v1");

    const reply = await newProbe().metaGet(k, ["f", "t"]);
    expect(Number(reply.flags.f)).toBe(TOMBSTONE_FLAGS);
    expect(Number(reply.flags.t)).toBeGreaterThan(60); // not cut to staleSeconds (30)
  });
});
