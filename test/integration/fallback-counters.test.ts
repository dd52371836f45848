// Counters during a cutover, against two real memcached processes "old" and "new": the
// movingCounters view (phases fallback and new) moves a counter old holds into new on its first
// write — a mark in old, then an add in new (one mover wins) — so concurrent CAS and incr callers
// on separate sockets lose no update and count old's value once; the prepareCounters view
// (phase prepare) counts in old until the mark is there, then in new, so a prepare version and a
// fallback version counting one counter at once end exact and read the same value.

import { afterAll, describe, expect } from "vitest";
import {
  type CounterClient,
  type CounterValue,
  casIncrement,
  casUpdate,
  increment,
  readCounter,
} from "../../lib/cache/counters.ts";
import {
  MOVED_FLAGS,
  markFor,
  movingCounters,
  prepareCounters,
} from "../../lib/cache/cutoverCounters.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { MemcacheCounterValueError } from "../../lib/memcache/errors.ts";
import { range, waitFor } from "../helpers/app.ts";
import { counters } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

/** Five new/old client pairs, each with its own sockets, and a counter view over each. */
let views: CounterClient[];
/** The same, as a version in phase prepare counts. */
let prepareViews: CounterClient[];
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

/** What `old` holds for `k`, raw: its flags and bytes (a mark reads "moved:<flags>:<bytes>"). */
async function oldRaw(old: MemcacheClient, k: string) {
  const item = await old.gets(k);
  return item === undefined ? undefined : { flags: item.flags, text: item.data.toString() };
}

/** Old's mark after a move of `text` stored under `flags`. */
const movedMark = (text: string, flags = 2) => ({
  flags: MOVED_FLAGS,
  text: markFor(Buffer.from(text), flags).toString(),
});
const ascending = (a: CounterValue, b: CounterValue) => Number(a) - Number(b);

// The clusters and one client of each come from the fixtures (newMemcached, oldMemcached,
// newClient, oldClient); the views' own clients are opened here.
it.beforeAll(({ newMemcached, oldMemcached }) => {
  views = Array.from({ length: 5 }, () =>
    movingCounters(client(newMemcached.endpoint), client(oldMemcached.endpoint)),
  );
  prepareViews = Array.from({ length: 5 }, () =>
    prepareCounters(client(newMemcached.endpoint), client(oldMemcached.endpoint)),
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

  it("counts old's value once under 50 concurrent CAS updates over 5 client pairs: 100 + 50 = 150 in new, old marked moved at 100", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("cas");
    await oldClient.set(k, 100);
    const oldCounts = await counters(oldClient, ["incr_hits"]);

    const results = await concurrently(50, (view) => casUpdate(view, k, plusOne));

    expect(await newClient.get(k)).toBe(150);
    expect(await readCounter(views[0]!, k)).toBe(150);
    // Every update saw a different predecessor: none lost, none doubled, old's 100 moved once.
    expect(results.sort(ascending)).toEqual(range(101, 150));
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("100"));
    expect(await counters(oldClient, ["incr_hits"])).toEqual(oldCounts);
  });

  it("counts old's value once under 50 concurrent increments (incr) over 5 client pairs: 100 + 50 = 150 in new, old marked moved at 100", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("incr");
    await oldClient.set(k, 100);
    const oldCounts = await counters(oldClient, ["incr_hits"]);

    const results = await concurrently(50, (view) => increment(view, k));

    expect(await readCounter(newClient, k)).toBe(150);
    expect(await readCounter(views[0]!, k)).toBe(150);
    expect(results.sort(ascending)).toEqual(range(101, 150));
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("100"));
    expect(await counters(oldClient, ["incr_hits"])).toEqual(oldCounts);
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
      expect(await oldRaw(oldClient, k)).toEqual(movedMark("123", flags));
    },
  );

  it("copies old's bytes and flags verbatim when incr moves the counter into new, exact past 2^53", async ({
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
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("1000", 0));
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
  it("starts at 0 and reaches exactly 50 under 50 concurrent CAS updates, created in new (old: an empty mark)", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("fresh-cas");
    expect(await readCounter(views[0]!, k)).toBe(0);

    const results = await concurrently(50, (view) => casUpdate(view, k, plusOne));

    expect(results.sort(ascending)).toEqual(range(1, 50));
    expect(await readCounter(views[0]!, k)).toBe(50);
    expect(await newClient.get(k)).toBe(50);
    expect(await oldClient.get(k)).toBeUndefined(); // the mark reads as a miss
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("", 0));
  });

  it("starts at 0 and reaches exactly 50 under 50 concurrent increments, created in new (old: an empty mark)", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("fresh-incr");
    expect(await readCounter(views[0]!, k)).toBe(0);

    const results = await concurrently(50, (view) => increment(view, k));

    expect(results.sort(ascending)).toEqual(range(1, 50));
    expect(await readCounter(views[0]!, k)).toBe(50);
    expect(await readCounter(newClient, k)).toBe(50);
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("", 0));
  });
});

describe("a prepare version and a fallback version counting one counter at once", () => {
  /** `total` updates, alternating between prepare and fallback views, all in flight at once. */
  function mixed<T>(total: number, run: (view: CounterClient) => Promise<T>): Promise<T[]> {
    return Promise.all(
      Array.from({ length: total }, (_, i) =>
        run(i % 2 === 0 ? prepareViews[i % 5]! : views[i % 5]!),
      ),
    );
  }

  it.for([
    ["casIncrement", (view: CounterClient, k: string) => casIncrement(view, k)],
    ["increment (incr)", (view: CounterClient, k: string) => increment(view, k)],
    [
      "both mixed",
      (view: CounterClient, k: string) =>
        Math.random() < 0.5 ? casIncrement(view, k) : increment(view, k),
    ],
  ] as const)(
    "end exact with %s from 100 in old: 60 concurrent updates give 160, read the same on both sides",
    async ([, update], { oldClient, newClient }) => {
      const k = key("both-sides");
      await oldClient.set(k, 100);

      const results = await mixed(60, (view) => update(view, k));

      expect(results.map(Number).sort((a, b) => a - b)).toEqual(range(101, 160));
      expect(await readCounter(prepareViews[0]!, k)).toBe(160);
      expect(await readCounter(views[0]!, k)).toBe(160);
      expect(await readCounter(newClient, k)).toBe(160);
      // Old holds the mark, with what the prepare side had counted to when it moved.
      expect((await oldRaw(oldClient, k))?.flags).toBe(MOVED_FLAGS);
      expect(await oldClient.get(k)).toBeUndefined();
    },
  );

  it("counts in old on the prepare side until a fallback version writes, then both count in new", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("in-turn");
    await oldClient.set(k, 10);

    expect(await increment(prepareViews[0]!, k)).toBe(11);
    expect(await casIncrement(prepareViews[1]!, k)).toBe(12);
    expect(await readCounter(views[0]!, k)).toBe(12); // a read moves nothing
    expect(await readCounter(oldClient, k)).toBe(12);
    expect(await newClient.get(k)).toBeUndefined();

    expect(await casIncrement(views[1]!, k)).toBe(13); // the move, with this update in new
    expect(await increment(prepareViews[2]!, k)).toBe(14); // incr refuses the mark: counted in new
    expect(await casIncrement(prepareViews[3]!, k)).toBe(15);
    expect(await readCounter(prepareViews[4]!, k)).toBe(15);
    expect(await readCounter(views[2]!, k)).toBe(15);
    expect(await oldRaw(oldClient, k)).toEqual(movedMark("12"));
  });

  it("creates a counter born on either side once: in new, with an empty mark in old", async () => {
    const k = key("born");
    const results = await mixed(40, (view) =>
      Math.random() < 0.5 ? casIncrement(view, k) : increment(view, k),
    );

    expect(results.map(Number).sort((a, b) => a - b)).toEqual(range(1, 40));
    expect(await readCounter(prepareViews[0]!, k)).toBe(40);
    expect(await readCounter(views[0]!, k)).toBe(40);
  });

  it("completes a move that stopped after the mark (crash between the two steps) from either side", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("half-moved");
    const j = key("half-moved-2");
    for (const name of [k, j]) {
      await oldClient.set(name, markFor(Buffer.from("70"), 2), { flags: MOVED_FLAGS });
    }

    expect(await readCounter(prepareViews[0]!, k)).toBe(70);
    expect(await increment(prepareViews[1]!, k)).toBe(71);
    expect(await readCounter(views[0]!, j)).toBe(70);
    expect(await increment(views[1]!, j)).toBe(71);
    expect(await readCounter(newClient, k)).toBe(71);
    expect(await readCounter(newClient, j)).toBe(71);
  });

  it("keeps counting in old on the prepare side while no version on the new side writes", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("prepare-only");
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => increment(prepareViews[i % 5]!, k)),
    );
    expect(results.map(Number).sort((a, b) => a - b)).toEqual(range(1, 30));
    expect(await readCounter(oldClient, k)).toBe(30);
    expect(await newClient.get(k)).toBeUndefined();
  });
});

/** The TTL `client` reports left on `k` (`mg t`): seconds, -1 for no expiry, undefined if absent. */
async function ttlLeft(client: MemcacheClient, k: string): Promise<number | undefined> {
  const reply = await client.metaGet(k, ["t"]);
  return reply.code === "EN" ? undefined : Number(reply.flags.t);
}

/**
 * Polls both clusters until neither holds `k` (bounded); true when there was a moment where new
 * had lost the count while old still held a mark with a value in it — the moment a mover would
 * bring the expired count back. New is read first: a mark old holds after that read was there
 * during it (nothing writes a mark with a value again).
 */
async function markOutlivedCount(old: MemcacheClient, fresh: MemcacheClient, k: string) {
  let outlived = false;
  await waitFor(
    `"${k}" to expire in both clusters`,
    async () => {
      const inNew = await fresh.gets(k);
      const raw = await oldRaw(old, k);
      const markWithValue = raw?.flags === MOVED_FLAGS && raw.text !== "moved:0:";
      if (inNew === undefined && markWithValue) outlived = true;
      return inNew === undefined && raw === undefined ? true : undefined;
    },
    { timeoutMs: 6_000, intervalMs: 20 },
  );
  return outlived;
}

describe("a counter with a TTL (a window: rate limits, quotas) that moves", () => {
  it("keeps the TTL old's count had left (increment): the window ends in new too, the mark before the count, and the next increment starts at 1 on both sides", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("ttl-incr");
    expect(await increment(oldClient, k, 5, { ttlSeconds: 2 })).toBe(5);

    expect(await increment(views[0]!, k, 1, { ttlSeconds: 2 })).toBe(6);

    const markTtl = await ttlLeft(oldClient, k);
    const countTtl = await ttlLeft(newClient, k);
    expect(markTtl).toBeGreaterThanOrEqual(1);
    expect(markTtl).toBeLessThanOrEqual(2);
    expect(countTtl).toBeGreaterThanOrEqual(1);
    expect(countTtl).toBeLessThanOrEqual(3);
    expect(await markOutlivedCount(oldClient, newClient, k)).toBe(false);
    expect(await increment(views[1]!, k, 1, { ttlSeconds: 2 })).toBe(1);
    expect(await readCounter(prepareViews[0]!, k)).toBe(1);
  });

  it("keeps the TTL each CAS write sets (casIncrement): after the window the next count is 1 on both sides, not old's value again", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("ttl-cas");
    expect(await casIncrement(oldClient, k, 5, { ttlSeconds: 2 })).toBe(5);

    expect(await casIncrement(views[0]!, k, 1, { ttlSeconds: 2 })).toBe(6);

    expect(await ttlLeft(oldClient, k)).toBeGreaterThanOrEqual(1);
    expect(await markOutlivedCount(oldClient, newClient, k)).toBe(false);
    expect(await casIncrement(views[1]!, k, 1, { ttlSeconds: 2 })).toBe(1);
    expect(await increment(prepareViews[0]!, k, 1, { ttlSeconds: 2 })).toBe(2);
  });

  it("completes a half-way move with the TTL the mark has left", async ({
    oldClient,
    newClient,
  }) => {
    const k = key("ttl-half-moved");
    await oldClient.set(k, markFor(Buffer.from("70"), 2), { flags: MOVED_FLAGS, ttlSeconds: 2 });

    expect(await increment(prepareViews[0]!, k)).toBe(71);

    expect(await ttlLeft(newClient, k)).toBeGreaterThanOrEqual(1);
    expect(await ttlLeft(newClient, k)).toBeLessThanOrEqual(3);
    expect(await markOutlivedCount(oldClient, newClient, k)).toBe(false);
  });

  it("without the meta protocol on old (memcached < 1.6.10): casIncrement's writes still set the TTL; a count moved by incr keeps no expiry (the TTL left cannot be read)", async ({
    oldMemcached,
    newMemcached,
    oldClient,
    newClient,
  }) => {
    const blindOld = client(oldMemcached.endpoint);
    blindOld.hasMeta = async () => false;
    const blindView = movingCounters(client(newMemcached.endpoint), blindOld);
    const cas = key("no-meta-cas");
    const incr = key("no-meta-incr");
    await casIncrement(oldClient, cas, 5, { ttlSeconds: 2 });
    await increment(oldClient, incr, 5, { ttlSeconds: 2 });

    expect(await casIncrement(blindView, cas, 1, { ttlSeconds: 2 })).toBe(6);
    expect(await increment(blindView, incr, 1, { ttlSeconds: 2 })).toBe(6);

    expect(await ttlLeft(newClient, incr)).toBe(-1);
    expect(await ttlLeft(oldClient, incr)).toBe(-1);
    expect(await markOutlivedCount(oldClient, newClient, cas)).toBe(false);
    expect(await casIncrement(blindView, cas, 1, { ttlSeconds: 2 })).toBe(1);
  });
});
