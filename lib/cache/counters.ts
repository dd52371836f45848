// Counters that never lose an update. Two tools:
//  - casUpdate: any read-modify-write as a CAS loop (gets -> cas), retried with jitter, bounded.
//  - increment: memcached's atomic incr/decr, seeding a missing counter with add (one seeder wins).
// Unlike cache-aside, counter errors do surface: a count that silently failed would be wrong.

import type { CasItem, MemcacheClient } from "../memcache/client.ts";
import { ConnectionClosedError, MemcacheError, TimeoutError } from "../memcache/errors.ts";

/** The client surface counters use (a MemcacheClient, or the cutover fallback's counter view). */
export type CounterClient = Pick<MemcacheClient, "get" | "gets" | "cas" | "add" | "incr" | "decr">;

export interface CasUpdateOptions {
  /** Attempts before giving up with CasConflictError. Default 50. */
  maxAttempts: number;
  /** Upper bound of the random pause between attempts, in ms (doubles each retry, capped). Default 2. */
  jitterMs: number;
  /** TTL of the stored value, in seconds (0 = no expiry). Default 0. */
  ttlSeconds: number;
  /**
   * What to do when the key holds bytes that do not decode (corrupt, or another client's
   * format): false (default) refuses with CounterValueError and leaves them; true treats them as
   * absent and overwrites them (a deliberate repair).
   */
  repairUndecodable: boolean;
}

export const casUpdateDefaults: CasUpdateOptions = {
  maxAttempts: 50,
  jitterMs: 2,
  ttlSeconds: 0,
  repairUndecodable: false,
};

/** The CAS loop gave up: too many concurrent writers for maxAttempts. Nothing was lost. */
export class CasConflictError extends MemcacheError {}

/**
 * The stored value could not be decoded, so it was not updated: guessing (treating it as absent)
 * could drop a count that a damaged reply merely hid.
 */
export class CounterValueError extends MemcacheError {}

/**
 * Applies `update` to the current value of `key` atomically and resolves with the stored value.
 * `update` receives undefined when the key is absent (then the new value is created with add).
 *
 * Race handling, two writers A and B on the same key:
 *   A gets (v, cas 7)   B gets (v, cas 7)   A cas(7) -> stored (cas now 8)   B cas(7) -> exists
 *   B waits a random moment, gets (v', cas 8), cas(8) -> stored. Both updates are in.
 * A key created concurrently: both add, one gets NOT_STORED and retries with gets/cas.
 */
export async function casUpdate<T>(
  client: CounterClient,
  key: string,
  update: (current: T | undefined) => T,
  options: Partial<CasUpdateOptions> = {},
): Promise<T> {
  const { maxAttempts, jitterMs, ttlSeconds, repairUndecodable } = {
    ...casUpdateDefaults,
    ...options,
  };
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const current = await readOnce<T>(client, key);
    if (current === undefined) {
      const next = update(undefined);
      if (await client.add(key, next, { ttlSeconds })) return next;
    } else {
      if (current.value === undefined && !repairUndecodable) {
        throw new CounterValueError(
          `"${key}" holds a value that does not decode (flags ${current.flags}); not updated — pass repairUndecodable: true (or set it) to overwrite it`,
        );
      }
      const next = update(current.value);
      if ((await client.cas(key, next, current.cas, { ttlSeconds })) === "stored") return next;
    }
    await pause(jitterMs * 2 ** Math.min(attempt - 1, 5));
  }
  throw new CasConflictError(
    `cas update of "${key}" gave up after ${maxAttempts} attempts (maxAttempts) under contention`,
  );
}

/**
 * Adds `delta` (may be negative) with incr/decr; a missing counter is created with add, and if
 * another caller created it first, the incr is simply retried. Resolves with the new value.
 * memcached counters are unsigned: decr stops at 0.
 */
export async function increment(
  client: CounterClient,
  key: string,
  delta = 1,
  options: { ttlSeconds?: number } = {},
): Promise<number> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const value = delta >= 0 ? await client.incr(key, delta) : await client.decr(key, -delta);
    if (value !== undefined) return Number(value);
    const seed = Math.max(0, delta);
    if (await client.add(key, seed, { ttlSeconds: options.ttlSeconds ?? 0 })) return seed;
  }
  throw new CasConflictError(
    `increment of "${key}" failed: the counter kept disappearing (evicted?)`,
  );
}

/** The counter's value, 0 when it was never counted. */
export async function readCounter(
  client: Pick<CounterClient, "get">,
  key: string,
): Promise<number> {
  const value = await client.get(key);
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  // Only plain decimal text counts (another client's counter); anything else was never a count.
  if (typeof value === "string" && /^[0-9]{1,20}$/.test(value.trim())) return Number(value);
  return 0;
}

/**
 * gets, tried a second time after a timeout or a dropped connection: a read is safe to repeat.
 * (The cas that follows is not: if it times out, its outcome is unknown and the error surfaces.)
 */
async function readOnce<T>(client: CounterClient, key: string): Promise<CasItem<T> | undefined> {
  try {
    return await client.gets<T>(key);
  } catch (error) {
    if (!(error instanceof TimeoutError || error instanceof ConnectionClosedError)) throw error;
    return client.gets<T>(key);
  }
}

function pause(maxMs: number): Promise<void> {
  const ms = Math.random() * maxMs;
  return new Promise((resolve) => setTimeout(resolve, ms));
}
