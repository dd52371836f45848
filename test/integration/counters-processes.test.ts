// Counters under real parallelism: 8 OS processes (test/fixtures/counter-worker.ts), each with
// its own MemcacheClient and socket, run 500 casIncrement(+1) each on one key, all starting at the
// same moment. No update may be lost or doubled: every call that resolved added exactly one,
// and the counter ends at their sum (4,000, plus old's value during a cutover) — also with half
// the processes in phase prepare (counting in old until the counter moves) and half in fallback.

import path from "node:path";
import { describe, expect } from "vitest";
import { cacheConfigFromEnv } from "../../lib/cache/config.ts";
import { readCounter } from "../../lib/cache/counters.ts";
import { MOVED_FLAGS } from "../../lib/cache/cutoverCounters.ts";
import { cacheForPhase } from "../../lib/cache/phases.ts";
import type { CounterWorkerResult } from "../fixtures/counter-worker.ts";
import { it } from "../helpers/fixtures.ts";
import { race, startRacer } from "../helpers/racers.ts";

const PROCESSES = 8;
const UPDATES = 500;
const WORKER = path.join(import.meta.dirname, "../fixtures/counter-worker.ts");

// The two clusters and a client of each come from the fixtures (newMemcached, newClient, ...).

/** Runs PROCESSES workers with `args`, releases them together, and collects their tallies. */
function runWorkers(args: readonly string[]): Promise<CounterWorkerResult[]> {
  return race(
    Array.from({ length: PROCESSES }, () =>
      startRacer<CounterWorkerResult>(process.execPath, [WORKER, ...args]),
    ),
  );
}

function summary(results: readonly CounterWorkerResult[]) {
  const sum = (pick: (r: CounterWorkerResult) => number) =>
    results.reduce((total, r) => total + pick(r), 0);
  return {
    ok: sum((r) => r.ok),
    conflicts: sum((r) => r.conflicts),
    errors: sum((r) => r.errors),
    casCalls: sum((r) => r.casCalls),
    casLost: sum((r) => r.casLost),
    firstError: results.find((r) => r.firstError !== undefined)?.firstError,
  };
}

describe(`${PROCESSES} processes x ${UPDATES} CAS increments on one key`, () => {
  it("end exactly at 4,000 on one memcached", async ({ newMemcached, newClient }) => {
    const key = "processes:direct";
    const results = await runWorkers(["direct", newMemcached.endpoint, "-", key, String(UPDATES)]);
    const totals = summary(results);
    console.info("direct:", JSON.stringify(totals));

    expect(totals.errors, totals.firstError).toBe(0);
    expect(totals.conflicts).toBe(0);
    for (const result of results) expect(result.ok).toBe(UPDATES);
    expect(totals.ok).toBe(PROCESSES * UPDATES);
    expect(await readCounter(newClient, key)).toBe(totals.ok);
    expect(await readCounter(newClient, key)).toBe(4_000);
  }, 60_000);

  it("end exactly at 4,100 in new through the fallback layer, moved once from old's 100", async ({
    newMemcached,
    oldMemcached,
    newClient,
    oldClient,
  }) => {
    const key = "processes:fallback";
    await oldClient.set(key, 100);
    await newClient.delete(key);
    const results = await runWorkers([
      "fallback",
      newMemcached.endpoint,
      oldMemcached.endpoint,
      key,
      String(UPDATES),
    ]);
    const totals = summary(results);
    console.info("fallback:", JSON.stringify(totals));

    expect(totals.errors, totals.firstError).toBe(0);
    expect(totals.conflicts).toBe(0);
    for (const result of results) expect(result.ok).toBe(UPDATES);
    expect(totals.ok).toBe(PROCESSES * UPDATES);
    expect(await readCounter(newClient, key)).toBe(100 + totals.ok);
    expect(await readCounter(newClient, key)).toBe(4_100);
    // Old keeps the mark of the move, with the 100 it held.
    const old = await oldClient.gets(key);
    expect([old?.flags, old?.data.toString()]).toEqual([MOVED_FLAGS, "moved:2:100"]);
  }, 60_000);

  it("end exactly at 4,100 with 4 processes in phase prepare and 4 in fallback on the same key, both reading 4,100", async ({
    newMemcached,
    oldMemcached,
    newClient,
    oldClient,
  }) => {
    const key = "processes:prepare+fallback";
    await oldClient.set(key, 100);
    await newClient.delete(key);
    const racers = Array.from({ length: PROCESSES }, (_, i) =>
      startRacer<CounterWorkerResult>(process.execPath, [
        WORKER,
        i % 2 === 0 ? "prepare" : "fallback",
        newMemcached.endpoint,
        oldMemcached.endpoint,
        key,
        String(UPDATES),
        i % 4 < 2 ? "cas" : "incr",
      ]),
    );
    const totals = summary(await race(racers));
    console.info("prepare+fallback:", JSON.stringify(totals));

    expect(totals.errors, totals.firstError).toBe(0);
    expect(totals.conflicts).toBe(0);
    expect(totals.ok).toBe(PROCESSES * UPDATES);
    const views = cacheForPhase(
      cacheConfigFromEnv({
        CACHE_NEW_ENDPOINT: newMemcached.endpoint,
        CACHE_OLD_ENDPOINT: oldMemcached.endpoint,
        CACHE_CUTOVER_PHASE: "prepare",
      }),
      { longestTtlSeconds: 300 },
    );
    try {
      expect(await readCounter(views.counters, key)).toBe(4_100);
      expect(await readCounter(newClient, key)).toBe(4_100);
    } finally {
      views.close();
    }
  }, 60_000);
});
