// Leases against stampedes: when many callers miss the same key at once, one "wins" and loads it
// from the origin; the others wait briefly for its value. Three implementations of one interface:
//
// - metaLeases (memcached >= 1.6.10): `mg <key> v f c t N<leaseTtl> [R<recache>]`. A miss
//   vivifies an empty placeholder and returns W (won) to exactly one caller, Z (someone else won)
//   to the rest. R hands one W to the first reader of an item whose TTL fell below R, while the
//   others keep being served (early refresh). `md <key> I T<n>` marks an item stale: readers get
//   the stale value (X), one of them with W to refresh it. Fills use `ms ... C<cas>`, so a fill
//   loses against an invalidation that happened during the load.
// - lockLeases (older servers, or forced): an `add` of `<key>#lock` with a short TTL is the lease.
//   Same guarantee for misses; no early refresh and no stale marking (invalidation deletes).
// - autoLeases (the default): meta where the server has it, else lock, decided by a probe that
//   rides in the same write as the first read (see autoLeases).
// - plainLeases ("off"): no stampede protection. Every miss wins at once; the fill is still
//   conditional (add, or cas over what was read), so it never overwrites a value or tombstone
//   written after the read.
//
// A won lease is a Lease object: it owns its key and token and ends exactly once, by fill() or
// release(); whichever comes second does nothing (see Lease). If a winner never ends its lease
// (crashed, frozen), the placeholder or lock expires after leaseTtl and the next reader wins.

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
  /** The caller won: load, then end the lease (fill it, or release it). */
  | { status: "win"; lease: Lease<T> }
  /** Someone else is loading; ask again shortly. */
  | { status: "wait" };

/**
 * What a lease stands on, by implementation: how its fill is made conditional and how it is
 * given back. Built by the implementation that won it; never parsed from text.
 */
export type LeaseToken =
  /** Meta: the vivified placeholder or the stale item seen has this CAS; fill with `ms C<cas>`. */
  | { kind: "meta"; cas: string | undefined }
  /** Meta, a stale-marked tombstone (fallback.ts): fill with `ms C<cas>`; release re-marks it. */
  | { kind: "meta-tombstone"; cas: string | undefined }
  /** Lock: `<key>#lock` holds lockId; fill with add. */
  | { kind: "lock"; lockId: string }
  /** Lock over a tombstone: fill with cas over the tombstone's CAS. */
  | { kind: "lock-tombstone"; lockId: string; cas: string }
  /** No lease: fill with add, or cas over the item seen (a tombstone or undecodable bytes). */
  | { kind: "plain"; cas: string | undefined };

/** How an implementation ends one of its leases. Called at most once per lease (by Lease). */
export interface LeaseEnds {
  /** Stores the loaded value if the lease still holds; false when something newer won. */
  fill(value: unknown, ttlSeconds: number): Promise<boolean>;
  /**
   * Gives the lease up without a value, so waiters need not wait for its TTL. With
   * `keepStaleSeconds`, a stale item being refreshed is kept (marked stale for that long) and the
   * refresh is handed to the next reader instead of being deleted.
   */
  release(keepStaleSeconds: number | undefined): Promise<void>;
}

/**
 * The right to fill one key, won by one caller. It ends exactly once: fill() or release(). The
 * first ending is the only one sent to memcached; any later call resolves (false / nothing)
 * without a command. A fill that throws releases the lease before the error is passed on, so
 * the caller never has to end it a second time.
 */
export class Lease<T = unknown> {
  readonly key: string;
  readonly token: LeaseToken;
  /** The value being refreshed: one the caller may serve if its load fails. */
  readonly stale: T | undefined;
  /** The key was invalidated (a tombstone, see fallback.ts): do not look in the old cluster. */
  readonly tombstone: boolean;
  #ends: LeaseEnds | undefined;

  constructor(
    key: string,
    token: LeaseToken,
    ends: LeaseEnds,
    seen: { stale?: T; tombstone?: boolean } = {},
  ) {
    this.key = key;
    this.token = token;
    this.#ends = ends;
    this.stale = seen.stale;
    this.tombstone = seen.tombstone ?? false;
  }

  /** True once fill() or release() was called. */
  get ended(): boolean {
    return this.#ends === undefined;
  }

  /** Stores the loaded value; false when the lease was lost, or was already ended. */
  async fill(value: unknown, ttlSeconds: number): Promise<boolean> {
    const ends = this.#take();
    if (ends === undefined) return false;
    try {
      return await ends.fill(value, ttlSeconds);
    } catch (error) {
      // Nothing was stored (too large, refused, timed out): let the next caller in at once
      // instead of waiting out the lease.
      await ends.release(undefined).catch(() => {
        // It expires by itself after leaseTtlSeconds.
      });
      throw error;
    }
  }

  /** Gives the lease up without a value (see LeaseEnds.release); nothing if already ended. */
  async release(options: { keepStaleSeconds?: number } = {}): Promise<void> {
    await this.#take()?.release(options.keepStaleSeconds);
  }

  #take(): LeaseEnds | undefined {
    const ends = this.#ends;
    this.#ends = undefined;
    return ends;
  }
}

/** The implementation a store uses: meta protocol, add-lock, or none ("off"). */
export interface Leases {
  /** "auto" until autoLeases knows which of meta and lock the server takes. */
  readonly mode: "meta" | "lock" | "off" | "auto";
  readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>>;
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

let lockSequence = 0;
const lockOwner = `${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 8)}`;

type MetaToken = Extract<LeaseToken, { kind: "meta" | "meta-tombstone" }>;

/** A meta-protocol lease: filled with `ms C<cas>`, given back with `md`. */
function metaLease<T>(
  client: MemcacheClient,
  key: string,
  token: MetaToken,
  seen: { stale?: T; tombstone?: boolean } = {},
): Lease<T> {
  const ends: LeaseEnds = {
    async fill(value, ttlSeconds) {
      const flags = [`T${toWireExptime(ttlSeconds)}`];
      if (token.cas !== undefined) flags.push(`C${token.cas}`);
      return (await client.metaSet(key, value, flags)).code === "HD";
    },
    async release(keepStaleSeconds) {
      if (token.kind === "meta-tombstone") {
        // A tombstone stays (removing it would let the old cluster's copy be read again):
        // marking it stale again hands the win to the next reader.
        await client.metaDelete(key, ["I"]);
      } else if (keepStaleSeconds !== undefined && seen.stale !== undefined) {
        await client.metaDelete(key, ["I", `T${toWireExptime(keepStaleSeconds)}`]);
      } else if (token.cas !== undefined) {
        await client.metaDelete(key, [`C${token.cas}`]);
      }
    },
  };
  return new Lease<T>(key, token, ends, seen);
}

export function metaLeases(client: MemcacheClient): Leases {
  const lease = <T>(key: string, token: MetaToken, seen: { stale?: T; tombstone?: boolean } = {}) =>
    metaLease<T>(client, key, token, seen);
  return {
    mode: "meta",
    async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
      const flags = ["v", "f", "c", "t", `N${Math.max(1, options.leaseTtlSeconds)}`];
      if (options.recacheSeconds > 0) flags.push(`R${options.recacheSeconds}`);
      const reply = await client.metaGet(key, flags);
      const cas = reply.flags.c;
      if (reply.code !== "VA" || reply.value === undefined) {
        return { status: "win", lease: plainLease(client, key, undefined) };
      }
      const won = "W" in reply.flags;
      const stale = "X" in reply.flags;
      // The vivified placeholder: no data, flags 0, not stale, and always with W or Z (a stored
      // empty Buffer looks the same but comes with neither).
      const placeholder =
        reply.value.length === 0 &&
        (reply.flags.f ?? "0") === "0" &&
        !stale &&
        (won || "Z" in reply.flags);
      if (placeholder) {
        return won
          ? { status: "win", lease: lease(key, { kind: "meta", cas }) }
          : { status: "wait" };
      }
      const value = client.decodeMeta<T>(reply, key);
      if (value === undefined) {
        if (Number(reply.flags.f) !== TOMBSTONE_FLAGS) {
          // Foreign or damaged bytes: no lease; the fill overwrites them if nobody else did.
          return { status: "win", lease: plainLease(client, key, cas) };
        }
        // A tombstone marked stale (see fallback.ts): one reader wins it, the rest wait.
        if (won) {
          const token = { kind: "meta-tombstone", cas } as const;
          return { status: "win", lease: lease<T>(key, token, { tombstone: true }) };
        }
        return "Z" in reply.flags
          ? { status: "wait" }
          : { status: "win", lease: plainLease(client, key, cas, true) };
      }
      if (won) return { status: "win", lease: lease(key, { kind: "meta", cas }, { stale: value }) };
      return { status: "hit", value, stale: stale || "Z" in reply.flags, fallback: false };
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

type LockToken = Extract<LeaseToken, { kind: "lock" | "lock-tombstone" }>;

/** An add-lock lease: filled with add (or cas over the tombstone seen), then the lock goes. */
function lockLease<T>(client: MemcacheClient, key: string, token: LockToken): Lease<T> {
  const ends: LeaseEnds = {
    async fill(value, ttlSeconds) {
      // add (or cas over the tombstone seen): a value written meanwhile, or a newer
      // invalidation, wins over the one this caller loaded.
      const stored =
        token.kind === "lock-tombstone"
          ? (await client.cas(key, value, token.cas, { ttlSeconds })) === "stored"
          : await client.add(key, value, { ttlSeconds });
      await releaseLock(client, key, token.lockId);
      return stored;
    },
    release: () => releaseLock(client, key, token.lockId),
  };
  return new Lease<T>(key, token, ends, { tombstone: token.kind === "lock-tombstone" });
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
        if (item.flags !== TOMBSTONE_FLAGS) {
          // Foreign or damaged bytes: no lease; the fill overwrites them if nobody else did.
          return { status: "win", lease: plainLease(client, key, item.cas) };
        }
      }
      const lockId = `${lockOwner}.${(lockSequence++).toString(36)}`;
      const won = await client.add(lockKeyFor(key), lockId, {
        ttlSeconds: Math.max(1, options.leaseTtlSeconds),
      });
      if (!won) return { status: "wait" };
      // The previous winner may have filled between our read and our lock: look once more.
      const again = await client.gets<T>(key);
      if (again?.value !== undefined) {
        await releaseLock(client, key, lockId);
        return { status: "hit", value: again.value, stale: false, fallback: false };
      }
      const token =
        again === undefined
          ? ({ kind: "lock", lockId } as const)
          : ({ kind: "lock-tombstone", lockId, cas: again.cas } as const);
      return { status: "win", lease: lockLease<T>(client, key, token) };
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
async function releaseLock(client: MemcacheClient, key: string, lockId: string): Promise<void> {
  const lockKey = lockKeyFor(key);
  if ((await client.get(lockKey)) === lockId) await client.delete(lockKey);
}

/** No stampede protection: every miss wins at once (the "off" mode). */
export function plainLeases(client: MemcacheClient): Leases {
  return {
    mode: "off",
    async readLease<T>(key: string): Promise<LeaseRead<T>> {
      const item = await client.gets<T>(key);
      if (item?.value !== undefined) {
        return { status: "hit", value: item.value, stale: false, fallback: false };
      }
      const tombstone = item?.flags === TOMBSTONE_FLAGS;
      return { status: "win", lease: plainLease(client, key, item?.cas, tombstone) };
    },
    async markStale() {
      return false;
    },
  };
}

/**
 * A lease that holds nothing: its fill is add (nothing was there) or cas over the item read
 * (`cas`), so a value or tombstone written after the read wins; release sends nothing.
 */
function plainLease<T>(
  client: MemcacheClient,
  key: string,
  cas: string | undefined,
  tombstone = false,
): Lease<T> {
  return new Lease<T>(
    key,
    { kind: "plain", cas },
    {
      fill: async (value, ttlSeconds) =>
        cas === undefined
          ? client.add(key, value, { ttlSeconds })
          : (await client.cas(key, value, cas, { ttlSeconds })) === "stored",
      release: async () => {},
    },
    { tombstone },
  );
}

/** Which lease implementation a store uses: auto = meta where the server has it, else lock. */
export type LeaseMode = "auto" | "meta" | "lock" | "off";

export const LEASE_MODES: readonly LeaseMode[] = ["auto", "meta", "lock", "off"];

/**
 * The lease implementation for `client`, resolved once. No mode needs a round trip of its own
 * (auto learns the server's meta support with its first read; see autoLeases).
 */
export function leaseResolver(client: MemcacheClient, mode: LeaseMode): () => Promise<Leases> {
  let resolved: Promise<Leases> | undefined;
  return () => {
    resolved ??= leasesFor(client, mode).catch((error: unknown) => {
      resolved = undefined;
      throw error;
    });
    return resolved;
  };
}

/** The lease implementation for `client` (auto: see autoLeases). */
export async function leasesFor(client: MemcacheClient, mode: LeaseMode): Promise<Leases> {
  if (mode === "off") return plainLeases(client);
  if (mode === "lock") return lockLeases(client);
  if (mode === "meta") return metaLeases(client);
  return autoLeases(client);
}

/**
 * Meta leases where the server has the meta protocol, lock leases elsewhere, decided by the
 * client's probe (`version` + `mn`) without a round trip of its own: the first read of a new
 * client sends the probe and a plain `gets` of the key in one write.
 *
 *   cold client   write 1: version, mn, gets key  ->  a hit: served (one round trip in all)
 *                                                 ->  a miss: the probe has answered too, so
 *                                                     the lease is taken the chosen way
 *
 * A plain `gets` cannot see a vivified meta placeholder (empty, flags 0) as such, nor an item
 * marked stale: an empty flags-0 value or an undecodable one goes the lease way, and a stale
 * item read this way is served as a hit (one reader, once per client; the next reader's
 * `mg` wins the refresh).
 */
export function autoLeases(client: MemcacheClient): Leases {
  let chosen: Leases | undefined;
  const choose = async (probe: Promise<boolean>) => {
    chosen ??= (await probe) ? metaLeases(client) : lockLeases(client);
    return chosen;
  };
  return {
    get mode() {
      return chosen?.mode ?? "auto";
    },
    async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
      if (chosen !== undefined) return chosen.readLease<T>(key, options);
      const probe = client.hasMeta(key); // queued first: leaves in the same write as the gets
      const plain = client.gets<T>(key);
      const [learned, item] = await Promise.allSettled([probe, plain]);
      if (item.status === "rejected") throw item.reason;
      const value = item.value?.value;
      // Empty bytes under flags 0: what `mg ... N` leaves while another client loads the key.
      if (value !== undefined && !(item.value!.flags === 0 && item.value!.data.length === 0)) {
        if (learned.status === "fulfilled") await choose(probe);
        return { status: "hit", value, stale: false, fallback: false };
      }
      if (learned.status === "rejected") throw learned.reason;
      return (await choose(probe)).readLease<T>(key, options);
    },
    async markStale(key, staleSeconds) {
      const leases = chosen ?? (await choose(client.hasMeta(key)));
      return leases.markStale(key, staleSeconds);
    },
  };
}
