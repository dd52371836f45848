// Python and Node processes racing on one counter, released at the same moment: Node workers
// (test/fixtures/counter-worker.ts) with casIncrement (gets/cas) and increment (incr), Python ones
// (test/fixtures/python/agent.py) with pylibmc's and pymemcache's gets/cas loops and incr. Each
// side reads what the other wrote (pylibmc writes flags 4, pymemcache without serde flags 0, we
// write 2): no update may be lost or doubled, so the counter ends at the exact sum.

import path from "node:path";
import { describe, expect } from "vitest";
import { readCounter } from "../../lib/cache/counters.ts";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import type { CounterWorkerResult } from "../fixtures/counter-worker.ts";
import { it } from "../helpers/fixtures.ts";
import { type PythonAgent, py, startPythonRacer } from "../helpers/python.ts";
import { type Racer, race, startRacer } from "../helpers/racers.ts";

const WORKER = path.join(import.meta.dirname, "../fixtures/counter-worker.ts");
const EACH = 300;
const SEED = 1_000;

// memcached, a client of it and the Python agent come from the fixtures.
let mc: MemcachedProcess;
let client: MemcacheClient;
let python: PythonAgent;

it.beforeAll(({ memcached, client: fileClient, python: agent }) => {
  [mc, client, python] = [memcached, fileClient, agent];
});

type Tally = { ok: number };

function node(key: string, op: "cas" | "incr"): Racer<Tally> {
  return startRacer<CounterWorkerResult>(process.execPath, [
    WORKER,
    "direct",
    mc.endpoint,
    "-",
    key,
    String(EACH),
    op,
  ]);
}

describe("Python and Node processes adding to one counter at once", () => {
  it(`end exactly at ${SEED} + 8 x ${EACH}: 4 Node (CAS, incr), 4 Python (pylibmc and pymemcache, CAS and incr)`, async () => {
    const key = "race:mixed";
    // A Python service created the counter (pymemcache without serde: "1000", flags 0).
    await python.set("pymemcache", [mc.endpoint], key, py.int(SEED));

    const racers: Racer<Tally>[] = [
      node(key, "cas"),
      node(key, "cas"),
      node(key, "incr"),
      node(key, "incr"),
      startPythonRacer("pylibmc", mc.endpoint, key, EACH, "cas"),
      startPythonRacer("pymemcache", mc.endpoint, key, EACH, "cas"),
      startPythonRacer("pymemcache-serde", mc.endpoint, key, EACH, "cas"),
      startPythonRacer("pylibmc", mc.endpoint, key, EACH, "incr"),
    ];
    const results = await race(racers);
    const ok = results.reduce((sum, result) => sum + result.ok, 0);
    console.info("mixed race:", JSON.stringify(results));

    expect(results.map((result) => result.ok)).toEqual(Array(8).fill(EACH));
    expect(ok).toBe(8 * EACH);
    expect(await readCounter(client, key)).toBe(SEED + 8 * EACH);
    const [viaPylibmc, viaPymemcache] = await Promise.all([
      python.get("pylibmc", [mc.endpoint], key),
      python.get("pymemcache-serde", [mc.endpoint], key),
    ]);
    // Whoever wrote last decides the flags; every reader sees the same number.
    expect(viaPylibmc).toEqual(py.int(SEED + 8 * EACH));
    expect(viaPymemcache).toEqual(py.int(SEED + 8 * EACH));
  }, 120_000);
});
