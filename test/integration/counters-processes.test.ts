// Counters under real parallelism: 8 OS processes (test/fixtures/counter-worker.ts), each with
// its own MemcacheClient and socket, run 500 casIncrement(+1) each on one key, all starting at the
// same moment. No update may be lost or doubled: every call that resolved added exactly one,
// and the counter ends at their sum (4,000, plus the seed during a cutover).

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCounter } from "../../lib/cache/counters.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../../tools/memcached.ts";
import type { CounterWorkerResult } from "../fixtures/counter-worker.ts";
import { race, startRacer } from "../helpers/racers.ts";

const PROCESSES = 8;
const UPDATES = 500;
const WORKER = path.join(import.meta.dirname, "../fixtures/counter-worker.ts");

let newMc: MemcachedProcess;
let oldMc: MemcachedProcess;
let newClient: MemcacheClient;
let oldClient: MemcacheClient;

beforeAll(async () => {
  [newMc, oldMc] = await Promise.all([startMemcached(), startMemcached()]);
  newClient = new MemcacheClient({ servers: newMc.endpoint, timeoutMs: 2_000 });
  oldClient = new MemcacheClient({ servers: oldMc.endpoint, timeoutMs: 2_000 });
});

afterAll(async () => {
  newClient?.close();
  oldClient?.close();
  await Promise.all([newMc?.stop(), oldMc?.stop()]);
});

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
  it("end exactly at 4,000 on one memcached", async () => {
    const key = "processes:direct";
    const results = await runWorkers(["direct", newMc.endpoint, "-", key, String(UPDATES)]);
    const totals = summary(results);
    console.info("direct:", JSON.stringify(totals));

    expect(totals.errors, totals.firstError).toBe(0);
    expect(totals.conflicts).toBe(0);
    for (const result of results) expect(result.ok).toBe(UPDATES);
    expect(totals.ok).toBe(PROCESSES * UPDATES);
    expect(await readCounter(newClient, key)).toBe(totals.ok);
    expect(await readCounter(newClient, key)).toBe(4_000);
  }, 60_000);

  it("end exactly at 4,100 in new through the fallback layer, seeded once from old's 100", async () => {
    const key = "processes:fallback";
    await oldClient.set(key, 100);
    await newClient.delete(key);
    const results = await runWorkers([
      "fallback",
      newMc.endpoint,
      oldMc.endpoint,
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
    // Old is read only: its value is untouched.
    expect(await readCounter(oldClient, key)).toBe(100);
  }, 60_000);
});
