// Leases against stampedes: when many callers miss the same key at once, one "wins" and loads it
// from the origin; the others wait briefly for its value. Two implementations:
//
// - metaLeases (memcached >= 1.6.10): `mg <key> v f c t N<leaseTtl> [R<recache>]`. A miss
//   vivifies an empty placeholder and returns W (won) to exactly one caller, Z (someone else won)
//   to the rest. R hands one W to the first reader of an item whose TTL fell below R, while the
//   others keep being served (early refresh). `md <key> I T<n>` marks an item stale: readers get
//   the stale value (X), one of them with W to refresh it. Fills use `ms ... C<cas>`, so a fill
//   loses against an invalidation that happened during the load.
// - lockLeases (older servers, or forced): an `add` of `<key>#lock` with a short TTL is the lease.
//   Same guarantee for misses; no early refresh and no stale marking (invalidation deletes).
//
// If a winner never fills (crashed, frozen), its placeholder or lock expires after leaseTtl and
// the next reader wins again.

import { createHash } from "node:crypto";
import type { MemcacheClient } from "../memcache/client.ts";
import { MAX_KEY_BYTES } from "../memcache/keys.ts";
import { toWireExptime } from "../memcache/protocol.ts";
import { FLAG_INTERNAL } from "../memcache/serde.ts";

export interface LeaseOptions {
  /** How long a winner may take before another reader may win (N token / lock TTL), in s. */
  leaseTtlSeconds: number;
  /** Early refresh: an item with fewer seconds left is refreshed by one reader. 0 = off. */
  recacheSeconds: number;
}

export type LeaseRead<T> =
  /** A usable value (stale: marked stale or close to expiry while someone else refreshes it). */
  | { status: "hit"; value: T; stale: boolean; fallback: boolean }
  /**
   * The caller won: load and fill(token). `stale` is a value it may serve if the load fails;
   * `tombstone` says the key was invalidated (during a cutover: do not look in the old cluster).
   */
  | { status: "win"; token: string; stale?: T; tombstone?: boolean }
  /** Someone else is loading; ask again shortly. */
  | { status: "wait" }
  /** No lease could be taken (e.g. undecodable bytes): load and write plainly. */
  | { status: "miss" };

export interface Leases {
  readonly mode: "meta" | "lock";
  readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>>;
  /** Stores the loaded value if the lease still holds; false when an invalidation won. */
  fill(key: string, value: unknown, ttlSeconds: number, token: string): Promise<boolean>;
  /** Gives the lease up without a value (load failed), so waiters need not wait for its TTL. */
  release(key: string, token: string): Promise<void>;
  /** Marks the item stale for `staleSeconds` instead of deleting it; false if unsupported/absent. */
  markStale(key: string, staleSeconds: number): Promise<boolean>;
}

/**
 * Flags word of a tombstone: the value an invalidation leaves during a cutover (fallback.ts).
 * Readers take it as a miss that must not fall back to the old cluster; one of the serde's
 * internal flags, so plain gets read it as a miss too, and Python readers as plain bytes (no
 * pickle bit: pylibmc would raise on it).
 */
export const TOMBSTONE_FLAGS = FLAG_INTERNAL;

// Lease tokens say how to fill: "cas:<n>" ms with C<n> (a vivified placeholder or stale item),
// "tomb:<n>" the same for a stale-marked tombstone (release re-arms it instead of deleting),
// "lock:<id>" add after winning lock <id>, "lockcas:<id>:<n>" cas over a tombstone after that.
function tokenParts(token: string): [kind: string, first: string, second: string] {
  const [kind = "", first = "", second = ""] = token.split(":");
  return [kind, first, second];
}

let lockSequence = 0;
const lockOwner = `${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 8)}`;

export function metaLeases(client: MemcacheClient): Leases {
  return {
    mode: "meta",
    async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
      const flags = ["v", "f", "c", "t", `N${Math.max(1, options.leaseTtlSeconds)}`];
      if (options.recacheSeconds > 0) flags.push(`R${options.recacheSeconds}`);
      const reply = await client.metaGet(key, flags);
      if (reply.code !== "VA" || reply.value === undefined) return { status: "miss" };
      const won = "W" in reply.flags;
      const stale = "X" in reply.flags;
      const cas = reply.flags.c ?? "";
      const token = `cas:${cas}`;
      // The vivified placeholder: no data, flags 0, not stale, and always with W or Z (a stored
      // empty Buffer looks the same but comes with neither).
      const placeholder =
        reply.value.length === 0 &&
        (reply.flags.f ?? "0") === "0" &&
        !stale &&
        (won || "Z" in reply.flags);
      if (placeholder) return won ? { status: "win", token } : { status: "wait" };
      const value = client.decodeMeta<T>(reply, key);
      if (value === undefined) {
        if (Number(reply.flags.f) !== TOMBSTONE_FLAGS) return { status: "miss" }; // foreign bytes
        // A tombstone marked stale (see fallback.ts): one reader wins it, the rest wait.
        if (won) return { status: "win", token: `tomb:${cas}`, tombstone: true };
        return "Z" in reply.flags ? { status: "wait" } : { status: "miss" };
      }
      if (won) return { status: "win", token, stale: value };
      return { status: "hit", value, stale: stale || "Z" in reply.flags, fallback: false };
    },
    async fill(key, value, ttlSeconds, token) {
      const [, cas] = tokenParts(token);
      const flags = [`T${toWireExptime(ttlSeconds)}`];
      if (cas !== "") flags.push(`C${cas}`);
      const reply = await client.metaSet(key, value, flags);
      return reply.code === "HD";
    },
    async release(key, token) {
      const [kind, cas] = tokenParts(token);
      // A tombstone stays (removing it would let the old cluster's copy be read again): marking
      // it stale again hands the win to the next reader.
      if (kind === "tomb") await client.metaDelete(key, ["I"]);
      else if (cas !== "") await client.metaDelete(key, [`C${cas}`]);
    },
    async markStale(key, staleSeconds) {
      const reply = await client.metaDelete(key, ["I", `T${toWireExptime(staleSeconds)}`]);
      return reply.code === "HD";
    },
  };
}

/** The lock key for `key`: `<key>#lock`, hashed when that would be too long. */
export function lockKeyFor(key: string): string {
  const lock = `${key}#lock`;
  if (lock.length <= MAX_KEY_BYTES) return lock;
  return `#lock#${createHash("sha256").update(key).digest("base64url")}`;
}

export function lockLeases(client: MemcacheClient): Leases {
  return {
    mode: "lock",
    async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
      const item = await client.gets<T>(key);
      if (item !== undefined) {
        if (item.value !== undefined) {
          return { status: "hit", value: item.value, stale: false, fallback: false };
        }
        if (item.flags !== TOMBSTONE_FLAGS) return { status: "miss" }; // foreign bytes: overwrite
      }
      const id = `${lockOwner}.${(lockSequence++).toString(36)}`;
      const won = await client.add(lockKeyFor(key), id, {
        ttlSeconds: Math.max(1, options.leaseTtlSeconds),
      });
      if (!won) return { status: "wait" };
      // The previous winner may have filled between our read and our lock: look once more.
      const again = await client.gets<T>(key);
      if (again?.value !== undefined) {
        await releaseLock(client, key, id);
        return { status: "hit", value: again.value, stale: false, fallback: false };
      }
      return again === undefined
        ? { status: "win", token: `lock:${id}` }
        : { status: "win", token: `lockcas:${id}:${again.cas}`, tombstone: true };
    },
    async fill(key, value, ttlSeconds, token) {
      // add (or cas over the tombstone seen): a value written meanwhile, or a newer
      // invalidation, wins over the one this caller loaded.
      const [kind, id, cas] = tokenParts(token);
      const stored =
        kind === "lockcas"
          ? (await client.cas(key, value, cas, { ttlSeconds })) === "stored"
          : await client.add(key, value, { ttlSeconds });
      await releaseLock(client, key, id);
      return stored;
    },
    async release(key, token) {
      await releaseLock(client, key, tokenParts(token)[1]);
    },
    async markStale() {
      return false;
    },
  };
}

/**
 * Deletes the lock only while it is still ours: a winner slower than the lock TTL must not
 * remove the next winner's lock. (get + delete is not atomic; the window is one round trip.)
 */
async function releaseLock(client: MemcacheClient, key: string, id: string): Promise<void> {
  const lockKey = lockKeyFor(key);
  if ((await client.get(lockKey)) === id) await client.delete(lockKey);
}

/** Which lease implementation a store uses: auto = meta where the server has it, else lock. */
export type LeaseMode = "auto" | "meta" | "lock" | "off";

/**
 * The lease implementation for `client`, resolved once (auto probes the meta protocol on the
 * first call; a probe that fails is retried on the next call).
 */
export function leaseResolver(
  client: MemcacheClient,
  mode: LeaseMode,
): () => Promise<Leases | undefined> {
  let resolved: Promise<Leases | undefined> | undefined;
  return () => {
    resolved ??= leasesFor(client, mode).catch((error: unknown) => {
      resolved = undefined;
      throw error;
    });
    return resolved;
  };
}

/** Resolves the lease implementation for `client` (probing the meta protocol for auto). */
export async function leasesFor(
  client: MemcacheClient,
  mode: LeaseMode,
): Promise<Leases | undefined> {
  if (mode === "off") return undefined;
  if (mode === "lock") return lockLeases(client);
  if (mode === "meta" || (await client.hasMeta())) return metaLeases(client);
  return lockLeases(client);
}
