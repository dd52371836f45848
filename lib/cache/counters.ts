// Counters that never lose an update. Two tools:
//  - casUpdate: any read-modify-write as a CAS loop (gets -> cas), retried with jitter, bounded;
//    casIncrement is the counter built on it.
//  - increment: memcached's atomic incr/decr, seeding a missing counter with add (one seeder wins).
// Unlike cache-aside, counter errors do surface: a count that silently failed would be wrong.
//
// The counter rule: a counter is whatever memcached keeps as decimal text, whatever its flags —
// that is what incr/decr work on, and how every client stores one (pymemcache's default client:
// flags 0; its serde: 2; pylibmc: 4; ours: 2; PHP: 1). readCounter, casIncrement and increment
// all read it so, exactly (a bigint past 2^53), and refuse (MemcacheCounterValueError) a value that is
// there but is not decimal text, rather than taking it for 0. A pickle is never decimal text
// (every pickle ends with the STOP opcode "."), so reading one as a counter is not unpickling it.

import type { CasItem, MemcacheClient } from "../memcache/client.ts";
import {
  MemcacheCasConflictError,
  MemcacheClientError,
  MemcacheConnectionClosedError,
  MemcacheCounterValueError,
  MemcacheTimeoutError,
} from "../memcache/errors.ts";
import {
  booleanRule,
  checkOptions,
  countRule,
  msRule,
  type OptionRules,
  secondsRule,
} from "../memcache/options.ts";
import { parseDecimal } from "../memcache/serde.ts";

/** The client surface counters use (a MemcacheClient, or the cutover fallback's counter view). */
export type CounterClient = Pick<MemcacheClient, "gets" | "cas" | "add" | "incr" | "decr">;

/** A counter's value: a number while it is a safe integer, a bigint beyond (exact either way). */
export type CounterValue = number | bigint;

export interface CasUpdateOptions {
  /** Attempts before giving up with MemcacheCasConflictError. Default 50. */
  maxAttempts: number;
  /** Upper bound of the random pause between attempts, in ms (doubles each retry, capped). Default 2. */
  jitterMs: number;
  /** TTL of the stored value, in seconds (0 = no expiry). Default 0. */
  ttlSeconds: number;
  /**
   * What to do when the key holds bytes that do not decode (corrupt, or another client's
   * format; for casIncrement: anything but decimal text): false (default) refuses with
   * MemcacheCounterValueError and leaves them; true treats them as absent and overwrites them (a
   * deliberate repair).
   */
  repairUndecodable: boolean;
}

export const casUpdateDefaults: CasUpdateOptions = {
  maxAttempts: 50,
  jitterMs: 2,
  ttlSeconds: 0,
  repairUndecodable: false,
};

const casUpdateRules: OptionRules<CasUpdateOptions> = {
  maxAttempts: countRule(1, 1_000_000),
  jitterMs: msRule(0),
  ttlSeconds: secondsRule(0),
  repairUndecodable: booleanRule,
};

export interface IncrementOptions {
  /** TTL of a counter created by this call, in seconds (0 = no expiry). Default 0. */
  ttlSeconds: number;
}

export const incrementDefaults: IncrementOptions = { ttlSeconds: 0 };

const incrementRules: OptionRules<IncrementOptions> = { ttlSeconds: secondsRule(0) };

/** The counter in a stored item: its decimal text under any flags, else undefined. */
export function counterValue(item: Pick<CasItem, "data">): CounterValue | undefined {
  return parseDecimal(item.data);
}

/**
 * Applies `update` to the current value of `key` atomically and resolves with the stored value.
 * `update` receives undefined when the key is absent (then the new value is created with add).
 *
 * Race handling, two writers A and B on the same key:
 *   A gets (v, cas 7)   B gets (v, cas 7)   A cas(7) -> stored (cas now 8)   B cas(7) -> exists
 *   B waits a random moment, gets (v', cas 8), cas(8) -> stored. Both updates are in.
 * A key created concurrently: both add, one gets NOT_STORED and retries with gets/cas.
 */
export function casUpdate<T>(
  client: CounterClient,
  key: string,
  update: (current: T | undefined) => T,
  options: Partial<CasUpdateOptions> = {},
): Promise<T> {
  return casLoop("casUpdate", client, key, (item) => item.value as T | undefined, update, options);
}

/**
 * Adds `delta` (any integer, may be negative) to the counter at `key` with the CAS loop and
 * resolves with the new value; a missing counter starts at 0. Reads the counter rule's decimal
 * text under any flags and writes an integer (flags 2), exact past 2^53. Unlike incr, it can go
 * below 0 and past 2^64 (but incr refuses such values afterwards).
 */
export function casIncrement(
  client: CounterClient,
  key: string,
  delta: CounterValue = 1,
  options: Partial<CasUpdateOptions> = {},
): Promise<CounterValue> {
  const step = toBigInt(delta, "casIncrement delta");
  return casLoop(
    "casIncrement",
    client,
    key,
    counterValue,
    (current) => toCounterValue(BigInt(current ?? 0) + step),
    options,
  );
}

async function casLoop<T>(
  component: string,
  client: CounterClient,
  key: string,
  read: (item: CasItem) => T | undefined,
  update: (current: T | undefined) => T,
  options: Partial<CasUpdateOptions>,
): Promise<T> {
  const { maxAttempts, jitterMs, ttlSeconds, repairUndecodable } = checkOptions(
    component,
    options,
    casUpdateRules,
    casUpdateDefaults,
  );
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const item = await readOnce(client, key);
    if (item === undefined) {
      const next = update(undefined);
      if (await client.add(key, next, { ttlSeconds })) return next;
    } else {
      const current = read(item);
      if (current === undefined && !repairUndecodable) throw undecodable(key, item);
      const next = update(current);
      if ((await client.cas(key, next, item.cas, { ttlSeconds })) === "stored") return next;
    }
    await pause(jitterMs * 2 ** Math.min(attempt - 1, 5));
  }
  throw new MemcacheCasConflictError(
    `cas update of "${key}" gave up after ${maxAttempts} attempts (maxAttempts) under contention`,
  );
}

/**
 * Adds `delta` (may be negative) with incr/decr; a missing counter is created with add, and if
 * another caller created it first, the incr is simply retried. Resolves with the new value.
 * memcached counters are unsigned 64-bit: decr stops at 0, incr wraps at 2^64, and a value that
 * is not unsigned decimal text (e.g. -5) is refused with MemcacheCounterValueError.
 */
export async function increment(
  client: CounterClient,
  key: string,
  delta: CounterValue = 1,
  options: Partial<IncrementOptions> = {},
): Promise<CounterValue> {
  const { ttlSeconds } = checkOptions("increment", options, incrementRules, incrementDefaults);
  const step = toBigInt(delta, "increment delta");
  const amount = toCounterValue(step < 0n ? -step : step);
  for (let attempt = 0; attempt < 3; attempt++) {
    let value: CounterValue | undefined;
    try {
      value = step >= 0n ? await client.incr(key, amount) : await client.decr(key, amount);
    } catch (error) {
      if (!isNonNumericError(error)) throw error;
      throw new MemcacheCounterValueError(
        `"${key}" holds a value incr/decr cannot count (not unsigned decimal text); not updated — casIncrement counts negative values, repairUndecodable overwrites others`,
        { cause: error },
      );
    }
    if (value !== undefined) return value;
    const seed = step > 0n ? amount : 0;
    if (await client.add(key, seed, { ttlSeconds })) return seed;
  }
  throw new MemcacheCasConflictError(
    `increment of "${key}" failed: the counter kept disappearing (evicted?)`,
  );
}

/** Whether `error` is memcached refusing incr/decr on a value that is not unsigned decimal text. */
export function isNonNumericError(error: unknown): boolean {
  // memcached: "CLIENT_ERROR cannot increment or decrement non-numeric value".
  return error instanceof MemcacheClientError && /non-numeric/.test(error.message);
}

/**
 * The counter's value, 0 when it was never counted (the key is absent). A key holding something
 * other than decimal text is not a counter: MemcacheCounterValueError, as casIncrement would refuse it.
 */
export async function readCounter(
  client: Pick<CounterClient, "gets">,
  key: string,
): Promise<CounterValue> {
  const item = await client.gets(key);
  if (item === undefined) return 0;
  const value = counterValue(item);
  if (value === undefined) throw undecodable(key, item);
  return value;
}

function undecodable(key: string, item: CasItem): MemcacheCounterValueError {
  return new MemcacheCounterValueError(
    `"${key}" holds a value that is not a counter or does not decode (flags ${item.flags}, ${item.data.length} bytes); not updated — pass repairUndecodable: true (or set it) to overwrite it`,
  );
}

function toBigInt(value: CounterValue, what: string): bigint {
  if (typeof value === "bigint") return value;
  if (!Number.isSafeInteger(value)) {
    throw new TypeError(
      `lambda-memcache: ${what} must be a safe integer or a bigint, got ${value}`,
    );
  }
  return BigInt(value);
}

/** A number while safe, else the bigint: the same shape the serde and incr give. */
function toCounterValue(value: bigint): CounterValue {
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : value;
}

/**
 * gets, tried a second time after a timeout or a dropped connection: a read is safe to repeat.
 * (The cas that follows is not: if it times out, its outcome is unknown and the error surfaces.)
 */
async function readOnce(client: CounterClient, key: string): Promise<CasItem | undefined> {
  try {
    return await client.gets(key);
  } catch (error) {
    if (!(error instanceof MemcacheTimeoutError || error instanceof MemcacheConnectionClosedError))
      throw error;
    return client.gets(key);
  }
}

function pause(maxMs: number): Promise<void> {
  const ms = Math.random() * maxMs;
  return new Promise((resolve) => setTimeout(resolve, ms));
}
