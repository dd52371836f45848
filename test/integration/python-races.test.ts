// Python and Node processes racing on one counter, released at the same moment: Node workers
// (test/fixtures/counter-worker.ts) with casIncrement (gets/cas) and increment (incr), Python ones
// (test/fixtures/python/agent.py) with pylibmc's and pymemcache's gets/cas loops and incr. Each
// side reads what the other wrote (pylibmc writes flags 4, pymemcache without serde flags 0, we
// write 2): no update may be lost or doubled, so the counter ends at the exact sum.

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCounter } from "../../lib/cache/counters.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../../tools/memcached.ts";
import type { CounterWorkerResult } from "../fixtures/counter-worker.ts";
import { type PythonAgent, py, startPythonAgent, startPythonRacer } from "../helpers/python.ts";
import { type Racer, race, startRacer } from "../helpers/racers.ts";

const WORKER = path.join(import.meta.dirname, "../fixtures/counter-worker.ts");
const EACH = 300;
const SEED = 1_000;

let mc: MemcachedProcess;
let client: MemcacheClient;
let python: PythonAgent;

beforeAll(async () => {
  [mc, python] = await Promise.all([startMemcached(), startPythonAgent()]);
  client = new MemcacheClient({ servers: mc.endpoint, timeoutMs: 2_000 });
});

afterAll(async () => {
  client?.close();
  await python?.close();
  await mc?.stop();
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
