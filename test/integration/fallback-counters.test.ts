// Counters during a cutover, against two real memcached processes "old" and "new": the
// fallbackCounters view seeds a counter missing in new once from old (add: one seeder wins), so
// concurrent CAS and incr callers on separate sockets lose no update and count old's value once;
// old is only ever read.

import { afterAll, describe, expect } from "vitest";
import {
  type CounterClient,
  type CounterValue,
  casIncrement,
  casUpdate,
  increment,
  readCounter,
} from "../../lib/cache/counters.ts";
import { fallbackCounters } from "../../lib/cache/fallback.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { MemcacheCounterValueError } from "../../lib/memcache/errors.ts";
import { range } from "../helpers/app.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

/** Five new/old client pairs, each with its own sockets, and a counter view over each. */
let views: CounterClient[];
let keyCount = 0;
const clients: MemcacheClient[] = [];

function client(servers: string): MemcacheClient {
  const created = new MemcacheClient({ servers, timeoutMs: 2_000 });
  clients.push(created);
  return created;
}

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `fallback-counters:${keyCount}:${name}`;
}

/** `total` calls of `run`, spread round-robin over the five views, all in flight at once. */
function concurrently<T>(total: number, run: (view: CounterClient) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: total }, (_, i) => run(views[i % views.length]!)));
}

const plusOne = (n: number | undefined) => (n ?? 0) + 1;
const ascending = (a: CounterValue, b: CounterValue) => Number(a) - Number(b);

// The clusters and one client of each come from the fixtures (newMemcached, oldMemcached,
// newClient, oldClient); the views' own clients are opened here.
it.beforeAll(({ newMemcached, oldMemcached }) => {
  views = Array.from({ length: 5 }, () =>
    fallbackCounters(client(newMemcached.endpoint), client(oldMemcached.endpoint)),
  );
});

afterAll(() => {
  for (const c of clients.splice(0)) c.close();
});

describe("a counter that only old holds", () => {
  it("reads old's value through the view before anything was counted in new", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("read");
    await oldClient.set(k, 100);

    expect(await readCounter(views[0]!, k)).toBe(100);
    expect(await newClient.get(k)).toBeUndefined();
  });

  it("counts old's value once under 50 concurrent CAS updates over 5 client pairs: 100 + 50 = 150 in new, old still 100", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("cas");
    await oldClient.set(k, 100);
    const oldSets = await counters(oldClient, ["cmd_set"]);

    const results = await concurrently(50, (view) => casUpdate(view, k, plusOne));

    expect(await newClient.get(k)).toBe(150);
    expect(await readCounter(views[0]!, k)).toBe(150);
    // Every update saw a different predecessor: none lost, none doubled, old's 100 seeded once.
    expect(results.sort(ascending)).toEqual(range(101, 150));
    expect(await oldClient.get(k)).toBe(100);
    expect(await counters(oldClient, ["cmd_set"])).toEqual(oldSets);
  });

  it("counts old's value once under 50 concurrent increments (incr) over 5 client pairs: 100 + 50 = 150 in new, old still 100", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("incr");
    await oldClient.set(k, 100);
    const oldCounts = await counters(oldClient, ["cmd_set", "incr_hits", "incr_misses"]);

    const results = await concurrently(50, (view) => increment(view, k));

    expect(await readCounter(newClient, k)).toBe(150);
    expect(await readCounter(views[0]!, k)).toBe(150);
    expect(results.sort(ascending)).toEqual(range(101, 150));
    expect(await oldClient.get(k)).toBe(100);
    expect(await counters(oldClient, ["cmd_set", "incr_hits", "incr_misses"])).toEqual(oldCounts);
  });

  it("seeds from old only while new misses: a counter already in new ignores old's value", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("in-both");
    await oldClient.set(k, 100);
    await newClient.set(k, 7);

    expect(await readCounter(views[0]!, k)).toBe(7);
    expect(await increment(views[1]!, k)).toBe(8);
    expect(await casUpdate(views[2]!, k, plusOne)).toBe(9);
    expect(await oldClient.get(k)).toBe(100);
  });
});

describe("a counter another client keeps in old (the counter rule: decimal text, any flags)", () => {
  // pymemcache's default client: flags 0; its serde: 2; pylibmc: 4; PHP: 1; a str: 16.
  it.for([0, 1, 2, 4, 16])(
    "reads it, then continues it with casIncrement and increment, under flags %d",
    async (flags, { oldClient, newClient }) => {
      const k = key(`foreign-${flags}`);
      await oldClient.set(k, Buffer.from("123"), { flags });

      expect(await readCounter(views[0]!, k)).toBe(123);
      expect(await newClient.get(k)).toBeUndefined(); // a read writes nothing
      expect(await casIncrement(views[1]!, k)).toBe(124);
      expect(await increment(views[2]!, k)).toBe(125);
      expect(await readCounter(newClient, k)).toBe(125);
      expect((await oldClient.gets(k))?.data.toString()).toBe("123");
    },
  );

  it("copies old's bytes and flags verbatim when incr seeds new, exact past 2^53", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("verbatim");
    await oldClient.set(k, Buffer.from("9007199254740993"), { flags: 4 });

    expect(await increment(views[0]!, k, 2)).toBe(9007199254740995n);
    const item = await newClient.gets(k);
    expect(item?.flags).toBe(4);
    expect(await readCounter(views[1]!, k)).toBe(9007199254740995n);
  });

  it("counts old's value once under 40 concurrent casIncrement and increment calls mixed", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("mixed");
    await oldClient.set(k, Buffer.from("1000"));

    await concurrently(40, (view) =>
      Math.random() < 0.5 ? casIncrement(view, k) : increment(view, k),
    );

    expect(await readCounter(newClient, k)).toBe(1040);
    expect(await readCounter(oldClient, k)).toBe(1000);
  });

  it("refuses a key old holds that is not a counter (MemcacheCounterValueError), writing nothing", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("not-a-counter");
    await oldClient.set(k, { not: "a counter" });

    await expect(readCounter(views[0]!, k)).rejects.toBeInstanceOf(MemcacheCounterValueError);
    await expect(casIncrement(views[1]!, k)).rejects.toBeInstanceOf(MemcacheCounterValueError);
    expect(await newClient.get(k)).toBeUndefined();
  });
});

describe("a counter in neither cluster", () => {
  it("starts at 0 and reaches exactly 50 under 50 concurrent CAS updates, created in new only", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("fresh-cas");
    expect(await readCounter(views[0]!, k)).toBe(0);

    const results = await concurrently(50, (view) => casUpdate(view, k, plusOne));

    expect(results.sort(ascending)).toEqual(range(1, 50));
    expect(await readCounter(views[0]!, k)).toBe(50);
    expect(await newClient.get(k)).toBe(50);
    expect(await oldClient.get(k)).toBeUndefined();
  });

  it("starts at 0 and reaches exactly 50 under 50 concurrent increments, created in new only", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("fresh-incr");
    expect(await readCounter(views[0]!, k)).toBe(0);

    const results = await concurrently(50, (view) => increment(view, k));

    expect(results.sort(ascending)).toEqual(range(1, 50));
    expect(await readCounter(views[0]!, k)).toBe(50);
    expect(await readCounter(newClient, k)).toBe(50);
    expect(await oldClient.get(k)).toBeUndefined();
  });
});
