// Counters against a real memcached: the CAS loop and incr/decr under real concurrency (many
// clients, each with its own socket, many calls in flight on each), with every returned value
// checked so a lost or doubled update shows, and the commands each path sends.

import { describe, expect } from "vitest";
import {
  type CounterClient,
  casIncrement,
  casUpdate,
  increment,
  readCounter,
} from "../../lib/cache/counters.ts";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheCasConflictError,
  MemcacheClientError,
  MemcacheCounterValueError,
} from "../../lib/memcache/errors.ts";
import { FLAG_INTEGER, FLAG_JSON } from "../../lib/memcache/serde.ts";
import { test } from "../helpers/fixtures.ts";

let keyCount = 0;

/** A key no other test uses. */
function key(name: string): string {
  keyCount++;
  return `counters:${keyCount}:${name}`;
}

/** The fixtures, and `moreClients(n)`: n more clients, each with its own connection to the server. */
const it = test.extend("moreClients", async ({ extraClient }) => {
  return (n: number): MemcacheClient[] => Array.from({ length: n }, () => extraClient());
});

/** A CounterClient over `target` that records the name of every command it sends. */
function recording(target: MemcacheClient): { calls: string[]; client: CounterClient } {
  const calls: string[] = [];
  return {
    calls,
    client: {
      gets: <T>(k: string) => {
        calls.push("gets");
        return target.gets<T>(k);
      },
      cas: (k, value, cas, options) => {
        calls.push("cas");
        return target.cas(k, value, cas, options);
      },
      add: (k, value, options) => {
        calls.push("add");
        return target.add(k, value, options);
      },
      incr: (k, delta) => {
        calls.push("incr");
        return target.incr(k, delta);
      },
      decr: (k, delta) => {
        calls.push("decr");
        return target.decr(k, delta);
      },
    },
  };
}

/** 1..n, to compare with the sorted values concurrent updates resolved with. */
function oneTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

const plusOne = (current: number | undefined) => (current ?? 0) + 1;

describe("casUpdate", () => {
  it("creates a missing key with add, passing undefined to the update", async ({ client }) => {
    const k = key("create");
    const { calls, client: recorded } = recording(client);
    const seen: unknown[] = [];

    const value = await casUpdate<number>(recorded, k, (current) => {
      seen.push(current);
      return 10;
    });

    expect(value).toBe(10);
    expect(seen).toEqual([undefined]);
    expect(calls).toEqual(["gets", "add"]);
    expect(await client.get(k)).toBe(10);
  });

  it("updates an existing key with gets and cas", async ({ client }) => {
    const k = key("update");
    await client.set(k, { items: ["a"] });
    const { calls, client: recorded } = recording(client);

    const value = await casUpdate<{ items: string[] }>(recorded, k, (current) => ({
      items: [...(current?.items ?? []), "b"],
    }));

    expect(value).toEqual({ items: ["a", "b"] });
    expect(calls).toEqual(["gets", "cas"]);
    expect(await client.get(k)).toEqual({ items: ["a", "b"] });
  });

  it("starts over when the key is deleted between its gets and its cas (cas NOT_FOUND is not a store)", async ({
    client,
  }) => {
    const k = key("deleted-meanwhile");
    await client.set(k, 5);
    const { calls, client: recorded } = recording(client);
    let deleted = false;
    const deleting: CounterClient = {
      ...recorded,
      gets: async <T>(key: string) => {
        const item = await recorded.gets<T>(key);
        if (!deleted) {
          deleted = true;
          await client.delete(key); // another service deletes it before our cas
        }
        return item;
      },
    };

    const value = await casUpdate<number>(deleting, k, (n) => (n ?? 0) + 1, { jitterMs: 0 });

    expect(value).toBe(1); // the key was gone: the update ran again from nothing
    expect(calls).toEqual(["gets", "cas", "gets", "add"]);
    expect(await client.get(k)).toBe(1);
  });

  it("stores the value with the TTL given", async ({ client }) => {
    const k = key("ttl");
    await casUpdate(client, k, plusOne, { ttlSeconds: 120 });
    await casUpdate(client, k, plusOne, { ttlSeconds: 120 });

    const reply = await client.metaGet(k, ["t", "v", "f"]);
    expect(client.decodeMeta(reply)).toBe(2);
    expect(Number(reply.flags.t)).toBeGreaterThan(100);
    expect(Number(reply.flags.t)).toBeLessThanOrEqual(120);
  });

  it("loses no update: 8 clients x 100 concurrent +1 on a missing key end at exactly 800", async ({
    client,
    moreClients,
  }) => {
    const k = key("contended");
    const clients = moreClients(8);

    // 800 updaters of one key take turns: with the default 50 attempts, a slow machine (or
    // instrumented code under mutation testing) makes some give up, which is tested apart.
    const patient = { maxAttempts: 2_000 };
    const results = await Promise.all(
      clients.flatMap((c) => Array.from({ length: 100 }, () => casUpdate(c, k, plusOne, patient))),
    );

    expect(await client.get(k)).toBe(800);
    expect(await readCounter(client, k)).toBe(800);
    // Each update saw a different predecessor: no two resolved with the same value.
    expect([...results].sort((a, b) => a - b)).toEqual(oneTo(800));
  });

  it("gives up with MemcacheCasConflictError when maxAttempts is 1 under contention, keeping every success", async ({
    client,
    moreClients,
  }) => {
    const k = key("give-up");
    await client.set(k, 0);
    const clients = moreClients(4);

    const settled = await Promise.allSettled(
      clients.flatMap((c) =>
        Array.from({ length: 25 }, () => casUpdate(c, k, plusOne, { maxAttempts: 1 })),
      ),
    );

    const stored = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const failed = settled.flatMap((s) => (s.status === "rejected" ? [s.reason] : []));
    expect(failed.length).toBeGreaterThan(0);
    for (const error of failed) {
      expect(error).toBeInstanceOf(MemcacheCasConflictError);
      expect((error as Error).message).toContain("maxAttempts");
    }
    expect(stored.length).toBeGreaterThan(0);
    expect(await client.get(k)).toBe(stored.length);
    expect([...stored].sort((a, b) => a - b)).toEqual(oneTo(stored.length));
  });

  // An undecodable value reads as absent (update gets undefined) but is overwritten with cas using
  // its token: add() would never succeed on the existing key and the loop would end in a
  // MemcacheCasConflictError blaming contention that does not exist.
  it("refuses to update a value that cannot be decoded and leaves the stored bytes alone", async ({
    client,
  }) => {
    const k = key("undecodable");
    await client.set(k, Buffer.from("{not json"), { flags: FLAG_JSON });
    const { calls, client: recorded } = recording(client);

    await expect(casUpdate(recorded, k, plusOne, { maxAttempts: 5 })).rejects.toBeInstanceOf(
      MemcacheCounterValueError,
    );
    expect(calls).toEqual(["gets"]);
    const raw = await client.gets(k);
    expect(raw?.flags).toBe(FLAG_JSON);
    expect(raw?.value).toBeUndefined();
  });

  it("overwrites a value that cannot be decoded when repairUndecodable is set", async ({
    client,
  }) => {
    const k = key("repair");
    await client.set(k, Buffer.from("{not json"), { flags: FLAG_JSON });
    const { calls, client: recorded } = recording(client);

    expect(await casUpdate(recorded, k, plusOne, { maxAttempts: 5, repairUndecodable: true })).toBe(
      1,
    );
    expect(calls).toEqual(["gets", "cas"]);
    expect(await client.get(k)).toBe(1);
  });
});

describe("increment", () => {
  it("seeds a missing counter with add and increments it with incr afterwards", async ({
    client,
  }) => {
    const k = key("seed");
    const { calls, client: recorded } = recording(client);

    expect(await increment(recorded, k)).toBe(1);
    expect(calls).toEqual(["incr", "add"]);

    calls.length = 0;
    expect(await increment(recorded, k, 5)).toBe(6);
    expect(calls).toEqual(["incr"]);
    expect(await readCounter(client, k)).toBe(6);
  });

  it("seeds the counter with the TTL given", async ({ client }) => {
    const k = key("seed-ttl");
    await increment(client, k, 3, { ttlSeconds: 90 });

    const reply = await client.metaGet(k, ["t"]);
    expect(Number(reply.flags.t)).toBeGreaterThan(60);
    expect(Number(reply.flags.t)).toBeLessThanOrEqual(90);
  });

  it("loses no update: 50 concurrent increments across 5 clients on a missing key end at exactly 50", async ({
    client,
    moreClients,
  }) => {
    const k = key("concurrent");
    const clients = moreClients(5);

    const results = await Promise.all(
      clients.flatMap((c) => Array.from({ length: 10 }, () => increment(c, k))),
    );

    expect(await readCounter(client, k)).toBe(50);
    expect([...results].sort((a, b) => Number(a) - Number(b))).toEqual(oneTo(50));
  });

  it("subtracts a negative delta with decr and stops at 0", async ({ client }) => {
    const k = key("decr");
    await increment(client, k, 10);
    const { calls, client: recorded } = recording(client);

    expect(await increment(recorded, k, -1)).toBe(9);
    expect(await increment(recorded, k, -4)).toBe(5);
    expect(await increment(recorded, k, -100)).toBe(0);
    expect(calls).toEqual(["decr", "decr", "decr"]);
    expect(await readCounter(client, k)).toBe(0);
  });

  it("seeds a missing counter at 0 for a negative delta", async ({ client }) => {
    const k = key("decr-missing");
    const { calls, client: recorded } = recording(client);

    expect(await increment(recorded, k, -3)).toBe(0);
    expect(calls).toEqual(["decr", "add"]);
    expect(await readCounter(client, k)).toBe(0);
  });

  it("counts on from a value casUpdate wrote (both keep a decimal integer)", async ({ client }) => {
    const k = key("mixed");
    await casUpdate(client, k, () => 41);
    expect(await increment(client, k)).toBe(42);
    expect(await casUpdate(client, k, plusOne)).toBe(43);
    expect(await readCounter(client, k)).toBe(43);
  });

  it("turns the server's refusal to increment a value that is not a number into MemcacheCounterValueError", async ({
    client,
  }) => {
    const k = key("not-a-number");
    await client.set(k, "hello");

    const error = await increment(client, k).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemcacheCounterValueError);
    expect((error as Error).cause).toBeInstanceOf(MemcacheClientError);
    expect(await client.get(k)).toBe("hello");
  });

  it("refuses a negative counter (incr is unsigned), which casIncrement counts on", async ({
    client,
  }) => {
    const k = key("negative");
    await client.set(k, -5);

    await expect(increment(client, k)).rejects.toBeInstanceOf(MemcacheCounterValueError);
    expect(await casIncrement(client, k, 2)).toBe(-3);
    expect(await readCounter(client, k)).toBe(-3);
  });
});

describe("readCounter", () => {
  it("returns 0 for a key that was never counted", async ({ client }) => {
    expect(await readCounter(client, key("never"))).toBe(0);
  });

  it("returns the current count, also after decr shortened it in place", async ({ client }) => {
    const k = key("read");
    await increment(client, k, 100);
    expect(await readCounter(client, k)).toBe(100);
    // memcached pads a number that got shorter with spaces ("99 ") instead of reallocating.
    await increment(client, k, -1);
    expect(await readCounter(client, k)).toBe(99);
  });

  it.for<[string, unknown, number | undefined]>([
    ["integer-flagged bytes that are not digits", Buffer.from("12ab"), FLAG_INTEGER],
    ["JSON that does not parse", Buffer.from("{not json"), FLAG_JSON],
    ["a word stored as text", "lots", undefined],
    ["a JSON object", { count: 3 }, undefined],
    ["a fraction", 1.5, undefined],
  ])(
    "refuses a key holding %s (MemcacheCounterValueError), as casIncrement does, and leaves it",
    async ([_label, value, flags], { client }) => {
      const k = key("garbage");
      await client.set(k, value, flags === undefined ? {} : { flags });
      const before = await client.gets(k);
      await expect(readCounter(client, k)).rejects.toBeInstanceOf(MemcacheCounterValueError);
      await expect(casIncrement(client, k)).rejects.toBeInstanceOf(MemcacheCounterValueError);
      expect((await client.gets(k))?.cas).toBe(before?.cas);
    },
  );

  // The counter rule: decimal text is a counter whatever its flags (pymemcache's default
  // client keeps flags 0, its serde 2, pylibmc 4, PHP 1; a str "100" has 16).
  it.for([0, 1, 2, 4, 16, 32, 64, 3, 0x7442_0001])(
    "reads decimal text under flags %d as the counter, and casIncrement and increment count on from it",
    async (flags, { client }) => {
      const k = key(`flags-${flags}`);
      await client.set(k, Buffer.from("100"), { flags });
      expect(await readCounter(client, k)).toBe(100);
      expect(await casIncrement(client, k)).toBe(101);
      expect(await increment(client, k)).toBe(102);
      expect(await readCounter(client, k)).toBe(102);
    },
  );

  it("keeps counters exact past 2^53 and up to 2^64 - 1 (bigint), through incr, CAS and reads", async ({
    client,
  }) => {
    const k = key("big");
    await client.set(k, Buffer.from("9007199254740993")); // 2^53 + 1: not a double
    expect(await readCounter(client, k)).toBe(9007199254740993n);
    expect(await casIncrement(client, k)).toBe(9007199254740994n);
    expect(await increment(client, k, 2n)).toBe(9007199254740996n);
    expect(await casIncrement(client, k, -(2n ** 53n))).toBe(4);
    await client.set(k, Buffer.from("18446744073709551614"));
    expect(await increment(client, k)).toBe(2n ** 64n - 1n);
    expect(await readCounter(client, k)).toBe(2n ** 64n - 1n);
    // Past 2^64 only the CAS path counts (incr would wrap to 0).
    expect(await casIncrement(client, k)).toBe(2n ** 64n);
  });
});
