// Leases against stampedes: when many callers miss the same key at once, one "wins" and loads it
// from the origin; the others wait briefly for its value. Three implementations of one interface:
//
// - metaLeases (memcached >= 1.6.10): `mg <key> v f c t N<leaseTtl> [R<recache>]`. A miss
//   vivifies an empty placeholder and returns W (won) to exactly one caller, Z (someone else won)
//   to the rest. R hands one W to the first reader of an item whose TTL fell below R, while the
//   others keep being served (early refresh). `md <key> I T<n>` marks an item stale: readers get
//   the stale value (X), one of them with W to refresh it. Fills use `ms ... C<cas>`.
// - lockLeases (older servers, or forced): the same done by hand. A miss `add`s a placeholder
//   under the key itself (PLACEHOLDER_FLAGS, the lease TTL, a lock id as its bytes) and reads its
//   CAS with `gets`; the fill is a `cas` over it. Readers that find a placeholder wait. A key
//   holding a tombstone (see phases.ts) is leased with an `add` of `<key>#lock` instead, and filled
//   with a `cas` over the tombstone, so the tombstone stays in place while the load runs.
// - autoLeases (the default): meta where the server has it, else lock, decided by a probe that
//   rides in the same write as the first read (see autoLeases).
// - plainLeases ("off"): no waiting, every miss loads at once; its fills are made conditional the
//   same way (a placeholder of its own, or a cas over the one another caller left).
//
// The rule every fill keeps: it is a cas over exactly what the reader saw, or over the
// placeholder it wrote, so an invalidation that lands while the load runs (a delete, or a
// tombstone) makes the fill fail, and an older value never replaces a newer one. A reader that
// waits and then gives up (maxWaitMs) gets a lease of the same kind (LeaseRead "wait" carries it).
//
// A won lease is a Lease object: it owns its key and token and ends exactly once, by fill() or
// release(); whichever comes second does nothing (see Lease). If a winner never ends its lease
// (crashed, frozen), the placeholder or lock expires after leaseTtl and the next reader wins.

import { createHash } from "node:crypto";
import type { MemcacheClient } from "../memcache/client.ts";
import { MAX_KEY_BYTES } from "../memcache/keys.ts";
import { type MetaReply, toWireExptime } from "../memcache/protocol.ts";
import { FLAG_INTERNAL } from "../memcache/serde.ts";

export interface LeaseOptions {
  /** How long a winner may take before another reader may win (N token / lock TTL), in s. */
  leaseTtlSeconds: number;
  /** Early refresh: an item with fewer seconds left is refreshed by one reader. 0 = off. */
  recacheSeconds: number;
  /**
   * Whether a cached value is usable (e.g. has the shape the caller stores). One that is not is
   * treated like undecodable bytes: the reader wins a lease that overwrites it if nothing changed.
   * Default: every value is.
   */
  accept?: ((value: unknown) => boolean) | undefined;
}

export type LeaseRead<T> =
  /** A usable value (stale: marked stale or close to expiry while someone else refreshes it). */
  | { status: "hit"; value: T; stale: boolean; fallback: boolean }
  /** The caller won: load, then end the lease (fill it, or release it). */
  | { status: "win"; lease: Lease<T> }
  /**
   * Someone else is loading; ask again shortly. A caller that stops waiting loads and fills
   * through `giveUp`: conditional on what this read saw, so it loses against the other caller's
   * fill and against any invalidation made since.
   */
  | { status: "wait"; giveUp: Lease<T> };

/**
 * What a lease stands on, by implementation: how its fill is made conditional and how it is
 * given back. Built by the implementation that won it; never parsed from text.
 */
export type LeaseToken =
  /** Meta: the vivified placeholder or the stale item seen has this CAS; fill with `ms C<cas>`. */
  | { kind: "meta"; cas: string | undefined }
  /** Meta, a stale-marked tombstone (phases.ts): fill with `ms C<cas>`; release re-marks it. */
  | { kind: "meta-tombstone"; cas: string | undefined }
  /** Lock and off: this caller's placeholder under the key has this CAS; fill with cas. */
  | { kind: "placeholder"; lockId: string; cas: string }
  /** Lock over a tombstone: `<key>#lock` holds lockId; fill with cas over the tombstone's CAS. */
  | { kind: "lock-tombstone"; lockId: string; cas: string }
  /**
   * No lease of its own: fill with cas over the item seen (another caller's placeholder, a
   * tombstone, bytes to overwrite); undefined: nothing was seen to make it conditional on, and
   * the fill stores nothing.
   */
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

/** The implementation a store uses: meta protocol, a placeholder by hand ("lock"), or none ("off"). */
export interface Leases {
  /** "auto" until autoLeases knows which of meta and lock the server takes. */
  readonly mode: "meta" | "lock" | "off" | "auto";
  readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>>;
  /** Marks the item stale for `staleSeconds` instead of deleting it; false if unsupported/absent. */
  markStale(key: string, staleSeconds: number): Promise<boolean>;
}

/**
 * Flags word of a tombstone: the value an invalidation leaves in the new cluster during a cutover
 * (phases.ts). Readers take it as a miss that must not fall back to the old cluster; one of the
 * serde's internal flags, so plain gets read it as a miss too, and Python readers as plain bytes
 * (no pickle bit: pylibmc would raise on it).
 */
export const TOMBSTONE_FLAGS = FLAG_INTERNAL;

/** Flags word of a lock or off lease's placeholder: the key is being loaded (its bytes: the lock id). */
export const PLACEHOLDER_FLAGS = FLAG_INTERNAL | 0x0100;

/** Flags word of a placeholder given back without a value: nobody loads; the next reader claims it. */
export const RELEASED_FLAGS = FLAG_INTERNAL | 0x0200;

const RELEASED = Buffer.from("released");

let lockSequence = 0;
const lockOwner = `${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 8)}`;

/** A lock id no other lease of any process uses. */
function nextLockId(): string {
  return `${lockOwner}.${(lockSequence++).toString(36)}`;
}

type MetaToken = Extract<LeaseToken, { kind: "meta" | "meta-tombstone" }>;

/**
 * Whether an `mg` reply (asked with `v` and `f`) is a meta lease's vivified placeholder: another
 * reader's load in progress, not a value. No data, flags 0, not stale, and always with W or Z (a
 * stored empty Buffer looks the same but comes with neither).
 */
export function isVivifiedPlaceholder(reply: MetaReply): boolean {
  return (
    reply.value !== undefined &&
    reply.value.length === 0 &&
    (reply.flags.f ?? "0") === "0" &&
    !("X" in reply.flags) &&
    ("W" in reply.flags || "Z" in reply.flags)
  );
}

/** A meta-protocol lease: filled with `ms C<cas>`, given back with `md`. */
function metaLease<T>(
  client: MemcacheClient,
  key: string,
  token: MetaToken,
  seen: { stale?: T; tombstone?: boolean } = {},
): Lease<T> {
  const server = sameServer(client, key);
  const ends: LeaseEnds = {
    async fill(value, ttlSeconds) {
      const flags = [`T${toWireExptime(ttlSeconds)}`];
      if (token.cas !== undefined) flags.push(`C${token.cas}`);
      return server(async () => (await client.metaSet(key, value, flags)).code === "HD", false);
    },
    async release(keepStaleSeconds) {
      if (token.kind === "meta-tombstone") {
        // A tombstone stays (removing it would let the old cluster's copy be read again):
        // marking it stale again hands the win to the next reader.
        await client.metaDelete(key, ["I"]);
      } else if (keepStaleSeconds !== undefined && seen.stale !== undefined) {
        // Only over the stale item this lease won: an invalidation's tombstone written meanwhile
        // (a new CAS) must keep its own lifetime, which outlives the old cluster's copies.
        const keep = ["I", `T${toWireExptime(keepStaleSeconds)}`];
        if (token.cas === undefined) await client.metaDelete(key, keep);
        else await server(() => client.metaDelete(key, [...keep, `C${token.cas}`]), undefined);
      } else if (token.cas !== undefined) {
        await server(() => client.metaDelete(key, [`C${token.cas}`]), undefined);
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
        // N always answers VA; anything else leaves nothing to make a fill conditional on.
        return { status: "win", lease: plainLease(client, key, undefined) };
      }
      const won = "W" in reply.flags;
      const stale = "X" in reply.flags;
      if (isVivifiedPlaceholder(reply)) {
        return won
          ? { status: "win", lease: lease(key, { kind: "meta", cas }) }
          : { status: "wait", giveUp: plainLease(client, key, cas) };
      }
      const value = client.decodeMeta<T>(reply, key);
      if (value === undefined) {
        if (Number(reply.flags.f) !== TOMBSTONE_FLAGS) {
          // Foreign or damaged bytes: no lease; the fill overwrites them if nobody else did.
          return { status: "win", lease: plainLease(client, key, cas) };
        }
        // A tombstone marked stale (see phases.ts): one reader wins it, the rest wait.
        if (won) {
          const token = { kind: "meta-tombstone", cas } as const;
          return { status: "win", lease: lease<T>(key, token, { tombstone: true }) };
        }
        const over = plainLease<T>(client, key, cas, true);
        return "Z" in reply.flags
          ? { status: "wait", giveUp: over }
          : { status: "win", lease: over };
      }
      if (options.accept !== undefined && !options.accept(value)) {
        return { status: "win", lease: plainLease(client, key, cas) };
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

/**
 * A lease on this caller's placeholder: filled with a cas over it; given back by a cas that turns
 * it into a released placeholder (never a delete: whatever replaced it meanwhile — a tombstone, a
 * value — must stay).
 */
function placeholderLease<T>(
  client: MemcacheClient,
  key: string,
  token: Extract<LeaseToken, { kind: "placeholder" }>,
): Lease<T> {
  const server = sameServer(client, key);
  return new Lease<T>(key, token, {
    fill: (value, ttlSeconds) =>
      server(
        async () => (await client.cas(key, value, token.cas, { ttlSeconds })) === "stored",
        false,
      ),
    release: async () => {
      const released = { ttlSeconds: 1, flags: RELEASED_FLAGS };
      await server(() => client.cas(key, RELEASED, token.cas, released), undefined);
    },
  });
}

/** A lease over a tombstone: `<key>#lock`, a fill with cas over the tombstone, then the lock goes. */
function lockTombstoneLease<T>(
  client: MemcacheClient,
  key: string,
  token: Extract<LeaseToken, { kind: "lock-tombstone" }>,
): Lease<T> {
  const server = sameServer(client, key);
  const ends: LeaseEnds = {
    async fill(value, ttlSeconds) {
      // A newer invalidation (another tombstone) or a value written meanwhile wins.
      const stored = await server(
        async () => (await client.cas(key, value, token.cas, { ttlSeconds })) === "stored",
        false,
      );
      await releaseLock(client, key, token.lockId);
      return stored;
    },
    release: () => releaseLock(client, key, token.lockId),
  };
  return new Lease<T>(key, token, ends, { tombstone: true });
}

/**
 * Writes this caller's placeholder where nothing is (add) or over the item seen (cas), and reads
 * its CAS back. Undefined when another caller got there first, or something replaced the
 * placeholder at once (an invalidation): the caller looks again.
 */
async function claim<T>(
  client: MemcacheClient,
  key: string,
  seen: { cas: string; server: ReturnType<typeof sameServer> } | undefined,
  options: LeaseOptions,
): Promise<Lease<T> | undefined> {
  const lockId = nextLockId();
  const placeholder = Buffer.from(lockId);
  const setOptions = { ttlSeconds: Math.max(1, options.leaseTtlSeconds), flags: PLACEHOLDER_FLAGS };
  const written =
    seen === undefined
      ? await client.add(key, placeholder, setOptions)
      : await seen.server(
          async () => (await client.cas(key, placeholder, seen.cas, setOptions)) === "stored",
          false,
        );
  if (!written) return undefined;
  const mine = await client.gets(key);
  if (mine === undefined || mine.flags !== PLACEHOLDER_FLAGS || !mine.data.equals(placeholder)) {
    return undefined;
  }
  return placeholderLease<T>(client, key, { kind: "placeholder", lockId, cas: mine.cas });
}

/** How often a reader looks again when the key changes under its hands before it leases it. */
const CLAIM_ATTEMPTS = 3;

/**
 * Leases by hand, for servers without the meta protocol: "lock" waits for another caller's load,
 * "off" loads at once beside it. Both make every fill conditional (see the file comment).
 */
function keyLeases(client: MemcacheClient, mode: "lock" | "off"): Leases {
  return {
    mode,
    async readLease<T>(key: string, options: LeaseOptions): Promise<LeaseRead<T>> {
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        const item = await client.gets<T>(key);
        const seen =
          item === undefined ? undefined : { cas: item.cas, server: sameServer(client, key) };
        if (item?.flags === PLACEHOLDER_FLAGS) {
          const over = plainLease<T>(client, key, item.cas);
          return mode === "lock"
            ? { status: "wait", giveUp: over }
            : { status: "win", lease: over };
        }
        if (item?.flags === TOMBSTONE_FLAGS) {
          const read = await leaseOverTombstone<T>(client, key, item.cas, mode, options);
          if (read !== undefined) return read;
          continue;
        }
        if (item?.value !== undefined && (options.accept?.(item.value) ?? true)) {
          return { status: "hit", value: item.value, stale: false, fallback: false };
        }
        // Nothing there, a released placeholder, foreign or damaged bytes, or a value the caller
        // does not take: put this caller's placeholder there.
        const lease = await claim<T>(client, key, seen, options);
        if (lease !== undefined) return { status: "win", lease };
      }
      // The key kept changing under our hands: load, but store nothing.
      return { status: "win", lease: plainLease(client, key, undefined) };
    },
    async markStale() {
      return false;
    },
  };
}

/** The lease of a reader that found a tombstone; undefined when the key changed: look again. */
async function leaseOverTombstone<T>(
  client: MemcacheClient,
  key: string,
  tombstoneCas: string,
  mode: "lock" | "off",
  options: LeaseOptions,
): Promise<LeaseRead<T> | undefined> {
  const over = plainLease<T>(client, key, tombstoneCas, true);
  if (mode === "off") return { status: "win", lease: over };
  const lockId = nextLockId();
  const won = await client.add(lockKeyFor(key), lockId, {
    ttlSeconds: Math.max(1, options.leaseTtlSeconds),
  });
  if (!won) return { status: "wait", giveUp: over };
  // The previous winner may have filled between our read and our lock: look once more.
  const again = await client.gets(key);
  if (again?.flags === TOMBSTONE_FLAGS) {
    const token = { kind: "lock-tombstone", lockId, cas: again.cas } as const;
    return { status: "win", lease: lockTombstoneLease<T>(client, key, token) };
  }
  await releaseLock(client, key, lockId);
  return undefined;
}

export function lockLeases(client: MemcacheClient): Leases {
  return keyLeases(client, "lock");
}

/**
 * Deletes the lock only while it is still ours: a winner slower than the lock TTL must not
 * remove the next winner's lock. (get + delete is not atomic; the window is one round trip.)
 */
async function releaseLock(client: MemcacheClient, key: string, lockId: string): Promise<void> {
  const lockKey = lockKeyFor(key);
  if ((await client.get(lockKey)) === lockId) await client.delete(lockKey);
}

/** No stampede protection: every miss loads at once (the "off" mode); fills stay conditional. */
export function plainLeases(client: MemcacheClient): Leases {
  return keyLeases(client, "off");
}

/**
 * A lease that holds nothing of its own: its fill is a cas over the item read (`cas`), so a value,
 * tombstone or lease written after the read wins; without a CAS it stores nothing. Its release
 * sends nothing.
 */
function plainLease<T>(
  client: MemcacheClient,
  key: string,
  cas: string | undefined,
  tombstone = false,
): Lease<T> {
  const server = sameServer(client, key);
  return new Lease<T>(
    key,
    { kind: "plain", cas },
    {
      fill: async (value, ttlSeconds) =>
        cas !== undefined &&
        server(async () => (await client.cas(key, value, cas, { ttlSeconds })) === "stored", false),
      release: async () => {},
    },
    { tombstone },
  );
}

/**
 * Guards the commands that send a CAS token back. A token is only good on the server process
 * that issued it: a restarted memcached counts CAS values from 1 again, so an old token can match
 * an unrelated item (a tombstone written after the restart, say) and overwrite it. A socket never
 * outlives its server process, so a lease remembers the socket its token was read on — taken
 * when the lease is made, which every implementation does right after the read that returned the
 * token — and sends a conditional command only on that socket; after a reconnect the command is
 * dropped and `otherwise` is the answer (the fill stores nothing, the release sends nothing).
 */
function sameServer(client: MemcacheClient, key: string) {
  const socketId = client.socketIdFor(key);
  return <R>(command: () => Promise<R>, otherwise: R): Promise<R> =>
    socketId !== undefined && client.socketIdFor(key) === socketId
      ? command()
      : Promise.resolve(otherwise);
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
      // A value the caller does not accept goes the lease way too (its fill overwrites it).
      const empty = item.value?.flags === 0 && item.value.data.length === 0;
      if (value !== undefined && !empty && (options.accept?.(value) ?? true)) {
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
