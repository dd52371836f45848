// What a fill reports when it stores nothing: a load won over an item that is deleted before
// the fill (another caller's invalidation) ends with fill() resolving false and the key still
// absent — the fill's `cas` answers NOT_FOUND, which is not a store. Every lease that fills with
// `cas` over an item it read: lock leases over a tombstone, and the no-lease fill over
// undecodable bytes (lock and off modes). Meta leases fill with `ms C<cas>`, whose NF the
// stampede tests cover.

import { describe, expect } from "vitest";
import { CacheAside } from "../../lib/cache/cacheAside.ts";
import { type LeaseMode, TOMBSTONE_FLAGS } from "../../lib/cache/leases.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { FLAG_PICKLE } from "../../lib/memcache/serde.ts";
import { it } from "../helpers/fixtures.ts";

let keyCount = 0;
const key = (name: string) => `lease-fills:${++keyCount}:${name}`;

describe.each<[string, LeaseMode, number]>([
  ["a lock lease over a tombstone", "lock", TOMBSTONE_FLAGS],
  ["a lock-mode fill over undecodable bytes (a pickle)", "lock", FLAG_PICKLE],
  ["an off-mode fill over a tombstone", "off", TOMBSTONE_FLAGS],
  ["an off-mode fill over undecodable bytes (a pickle)", "off", FLAG_PICKLE],
])("%s", (_name, leaseMode, flags) => {
  it("resolves false and stores nothing when the item is deleted during the load", async ({
    client,
  }) => {
    const cache = new CacheAside(clientStore(client, { leaseMode }));
    const k = key(leaseMode);
    await client.set(k, Buffer.from("seen by the reader"), { flags });

    const acquired = await cache.acquire<string>(k);
    if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);
    expect(await client.delete(k)).toBe(true); // an invalidation lands during the load

    expect(await acquired.load.fill("loaded before the invalidation")).toBe(false);
    expect(await client.get(k)).toBeUndefined();
  });

  it("resolves true and stores the value when the item is still the one read", async ({
    client,
  }) => {
    const cache = new CacheAside(clientStore(client, { leaseMode }));
    const k = key(`${leaseMode}-kept`);
    await client.set(k, Buffer.from("seen by the reader"), { flags });

    const acquired = await cache.acquire<string>(k);
    if (!("load" in acquired)) throw new Error(`expected a miss, got ${acquired.status}`);

    expect(await acquired.load.fill("loaded")).toBe(true);
    expect(await client.get(k)).toBe("loaded");
  });
});
