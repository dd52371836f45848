// Counters during a cutover, exact while neighbouring phases count the same counter at once: a
// version in "prepare" counts in old (prepareCounters), one in "fallback" or "new" in new
// (movingCounters). A counter moves from old to new once, through a mark left in old:
//
//   mover (new side):   gets old -> n (cas 7)
//                       cas old "moved:<flags>:n" over 7   (then a prepare incr there fails)
//                       add new n                           (one of concurrent movers wins)
//   prepare increment:  incr old -> CLIENT_ERROR non-numeric, or cas over 7 -> EXISTS
//                       gets old -> the mark: add new n (the mover may have stopped between its
//                       two steps), then count in new
//
// An increment in old between the mover's gets and its cas changes the CAS: the mover's cas
// fails and it reads again, so the mark always holds old's last value. incr refuses the mark (it
// is not decimal text), and every CAS loop in old loses against it, so nothing is counted in old
// once it is there. A counter first created during the cutover is created in new, after an `add`
// of an empty mark in old (so a prepare version does not start a second one there); a prepare
// version that finds the empty mark creates it in new too.
//
// What holds when a caller stops half-way (a crash, a timeout): after the mark and before the
// add in new, the mark holds old's value and the next caller of either side completes the add;
// an update sent with a cas whose reply was lost may or may not be counted (as with any counter).
// What does not: the mark is data in a cache. If old loses it (eviction, flush, restart) while a
// prepare version still runs, that version starts the counter over in old; if new loses the
// counter after the move, the next mover takes old's mark again, without the counts made in new
// since. Old errors surface here (counters are data): a counter that must move while old fails
// is an error, never a count from a wrong base.
//
// TTLs (windowed counters: rate limits, quotas). A moved counter keeps the TTL it had left: the
// mover reads it with the value (`mg` with t, where old speaks meta) and writes the mark with it,
// and every count the views write into new under a mark lives one second longer than that mark
// (outliving): memcached counts TTLs in whole seconds on clocks that tick apart, so with equal
// TTLs new's count could go first, and the next mover would find the mark and bring back the
// count it holds (resurrect an expired window). So a mark always expires first; the price is
// that a count lives up to 2 s longer in new than it would have in old, and that in those
// seconds a prepare version, finding old empty, starts the next window in old while fallback
// versions still count the ending one in new, until it expires and they move old's count.
// CAS writes (casUpdate, casIncrement) set the TTL they are given on every write, in new too
// (plus the second). Without meta (old before memcached 1.6.10) the TTL left cannot be read: a
// counter moved by incr (increment) moves without expiry, and so does its mark; casIncrement's
// writes still set theirs.
//
// Reads write nothing unless a mover stopped half-way: a counter old still holds reads as old's
// value on both sides. CAS tokens carry where the item came from ("n<cas>" new, "o<cas>:..." old,
// with the bytes a move needs), so the loop's cas goes back to the same cluster.
// Counters follow the counter rule (counters.ts): decimal text under any flags; a move copies
// old's bytes and flags verbatim, so a counter a Python service kept in old continues in new.

import type { CasItem, CasResult, MemcacheClient, SetOptions } from "../memcache/client.ts";
import {
  MemcacheCasConflictError,
  MemcacheClientError,
  MemcacheCounterValueError,
} from "../memcache/errors.ts";
import { ttlLeft } from "../memcache/protocol.ts";
import { FLAG_INTERNAL, parseDecimal } from "../memcache/serde.ts";
import { type CounterClient, isNonNumericError } from "./counters.ts";

/** Flags word of a mark: the counter moved to new; its bytes are `moved:<flags>:<old bytes>`. */
export const MOVED_FLAGS = FLAG_INTERNAL | 0x0400;

const MARK_PREFIX = "moved:";

/**
 * What old holds for a counter, with the TTL it has left in seconds (0: no expiry; undefined:
 * unknown, old has no meta protocol).
 */
type OldCounter =
  | { kind: "absent" }
  /** A live value (decimal text for a counter; anything for casUpdate). */
  | { kind: "value"; item: CasItem; ttlSeconds: number | undefined }
  /** Moved to new; `data` and `flags` are old's last value (empty: it had none). */
  | { kind: "moved"; data: Buffer; flags: number; ttlSeconds: number | undefined };

/**
 * The TTL of a count written into new under a mark that lives `markTtlSeconds`: one second more,
 * so the mark always expires first (see the file comment); 0 stays "no expiry".
 */
export function outliving(markTtlSeconds: number): number {
  return markTtlSeconds === 0 ? 0 : markTtlSeconds + 1;
}

/** `options` with its TTL made to outlive a mark written with it. */
function outlivingMark(options: SetOptions | undefined): SetOptions {
  return { ...options, ttlSeconds: outliving(options?.ttlSeconds ?? 0) };
}

/** The mark for old's value `data` with `flags`. */
export function markFor(data: Buffer, flags: number): Buffer {
  return Buffer.concat([Buffer.from(`${MARK_PREFIX}${flags}:`), data]);
}

function parseMark(item: CasItem): { data: Buffer; flags: number } | undefined {
  if (item.flags !== MOVED_FLAGS) return undefined;
  const text = item.data.toString("latin1");
  const match = /^moved:([0-9]{1,10}):/.exec(text);
  if (match === null) return undefined;
  return { data: Buffer.from(item.data.subarray(match[0].length)), flags: Number(match[1]) };
}

async function readOld(oldClient: MemcacheClient, key: string): Promise<OldCounter> {
  const read = await getsWithTtl(oldClient, key);
  if (read === undefined) return { kind: "absent" };
  const { item, ttlSeconds } = read;
  const mark = parseMark(item);
  return mark === undefined
    ? { kind: "value", item, ttlSeconds }
    : { kind: "moved", ...mark, ttlSeconds };
}

/** gets, and where the server speaks meta, the TTL left too (one `mg` with v f t c). */
async function getsWithTtl(
  client: MemcacheClient,
  key: string,
): Promise<{ item: CasItem; ttlSeconds: number | undefined } | undefined> {
  if (!(await client.hasMeta(key))) {
    const item = await client.gets(key);
    return item === undefined ? undefined : { item, ttlSeconds: undefined };
  }
  const reply = await client.metaGet(key, ["v", "f", "t", "c"]);
  if (reply.value === undefined) return undefined;
  const item: CasItem = {
    value: client.decodeMeta(reply, key),
    cas: reply.flags.c ?? "",
    flags: Number(reply.flags.f ?? "0"),
    data: reply.value,
  };
  return { item, ttlSeconds: ttlLeft(reply.flags.t) };
}

/**
 * Puts a moved counter's value into new, outliving its mark (add: the first wins; nothing to do
 * for an empty mark). A mark whose TTL could not be read (no meta) gives a count without expiry.
 */
async function completeMove(
  newClient: MemcacheClient,
  key: string,
  moved: Extract<OldCounter, { kind: "moved" }>,
): Promise<void> {
  if (moved.data.length === 0) return;
  const ttlSeconds = outliving(moved.ttlSeconds ?? 0);
  await newClient.add(key, moved.data, { flags: moved.flags, ttlSeconds });
}

/**
 * Creates the counter in new when old holds its mark (moved, or born in new), after completing
 * the move; false when old holds a value (the caller reads it again).
 */
async function createInNew(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
  key: string,
  value: unknown,
  options: SetOptions | undefined,
): Promise<boolean> {
  const old = await readOld(oldClient, key);
  if (old.kind !== "moved") return false;
  await completeMove(newClient, key, old);
  return newClient.add(key, value, outlivingMark(options));
}

/**
 * The counter as old has it: its item (an "o" token), nothing, or — once moved — new's item (the
 * move completed first, in case the mover stopped half-way).
 */
async function getsFromOld<T>(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
  key: string,
): Promise<CasItem<T> | undefined> {
  const old = await readOld(oldClient, key);
  if (old.kind === "absent") return undefined;
  if (old.kind === "value") return fromOld(old.item) as CasItem<T>;
  await completeMove(newClient, key, old);
  const item = await newClient.gets<T>(key);
  return item === undefined ? undefined : (fromNew(item) as CasItem<T>);
}

// CAS tokens of the views: the cluster, the token, and for old the bytes a move needs.
const fromNew = (item: CasItem): CasItem => ({ ...item, cas: `n${item.cas}` });
const fromOld = (item: CasItem): CasItem => ({
  ...item,
  cas: `o${item.cas}:${item.flags}:${item.data.toString("base64")}`,
});

type Token =
  | { cluster: "new"; cas: string }
  | { cluster: "old"; cas: string; flags: number; data: Buffer };

function parseToken(token: string): Token {
  if (token.startsWith("n")) return { cluster: "new", cas: token.slice(1) };
  const match = /^o([0-9]+):([0-9]+):(.*)$/s.exec(token);
  if (match === null) {
    throw new MemcacheClientError(`not a CAS token of a cutover counter view: "${token}"`);
  }
  return {
    cluster: "old",
    cas: match[1]!,
    flags: Number(match[2]),
    data: Buffer.from(match[3]!, "base64"),
  };
}

/** How often a mover reads old again when prepare versions keep counting under its hands. */
const MOVE_ATTEMPTS = 50;

/**
 * Counters for the phases that count in new ("fallback", and "new" while the old cluster is
 * still configured): a counter old holds moves to new on its first write (see the file comment).
 */
export function movingCounters(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
): CounterClient {
  /** Moves the counter old holds into new; false when old has no value to move. */
  const move = async (key: string): Promise<boolean> => {
    for (let attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
      const old = await readOld(oldClient, key);
      if (old.kind === "absent") return false;
      if (old.kind === "moved") {
        await completeMove(newClient, key, old);
        return old.data.length > 0;
      }
      const { item, ttlSeconds = 0 } = old;
      if (parseDecimal(item.data) === undefined) {
        throw new MemcacheCounterValueError(
          `"${key}" holds a value in the old cluster that is not a counter (flags ${item.flags}, ${item.data.length} bytes); not moved, not updated`,
        );
      }
      // The mark keeps the TTL old's value had left; the count in new outlives it.
      const data = Buffer.from(item.data); // item.data may share the socket's read buffer
      const marking = { flags: MOVED_FLAGS, ttlSeconds };
      if ((await oldClient.cas(key, markFor(data, item.flags), item.cas, marking)) === "stored") {
        const moving = { flags: item.flags, ttlSeconds: outliving(ttlSeconds) };
        await newClient.add(key, data, moving);
        return true;
      }
      // A prepare version counted in between: read its value and try again.
    }
    throw new MemcacheCasConflictError(
      `moving counter "${key}" to the new cluster gave up after ${MOVE_ATTEMPTS} attempts: old keeps changing`,
    );
  };

  const arithmetic =
    (command: "incr" | "decr") =>
    async (key: string, delta?: number | bigint): Promise<number | bigint | undefined> => {
      const value = await newClient[command](key, delta);
      if (value !== undefined) return value;
      if (!(await move(key))) return undefined; // in neither: the caller creates it (add)
      return newClient[command](key, delta);
    };

  return {
    async gets<T>(key: string): Promise<CasItem<T> | undefined> {
      const item = await newClient.gets<T>(key);
      if (item !== undefined) return fromNew(item) as CasItem<T>;
      return getsFromOld<T>(newClient, oldClient, key);
    },
    async cas(
      key: string,
      value: unknown,
      token: string,
      options?: SetOptions,
    ): Promise<CasResult> {
      const parsed = parseToken(token);
      const inNew = outlivingMark(options);
      if (parsed.cluster === "new") return newClient.cas(key, value, parsed.cas, inNew);
      // The first write of a counter old holds: mark it moved (over the CAS read, so a prepare
      // increment since then makes this fail and the loop read again; with the TTL this write
      // sets, which the value in new outlives), then write in new.
      const mark = markFor(parsed.data, parsed.flags);
      const marking = { flags: MOVED_FLAGS, ttlSeconds: options?.ttlSeconds ?? 0 };
      const marked = await oldClient.cas(key, mark, parsed.cas, marking);
      if (marked !== "stored") return "exists";
      // false: another caller moved old's value into new first; this update goes in again there.
      return (await newClient.add(key, value, inNew)) ? "stored" : "exists";
    },
    async add(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
      // Born during the cutover: in new, after an empty mark in old (a prepare version finding
      // it creates the counter in new too, instead of a second one in old).
      const marked = await oldClient.add(key, markFor(Buffer.alloc(0), 0), {
        ttlSeconds: options?.ttlSeconds ?? 0,
        flags: MOVED_FLAGS,
      });
      if (marked) return newClient.add(key, value, outlivingMark(options));
      return createInNew(newClient, oldClient, key, value, options);
    },
    incr: arithmetic("incr"),
    decr: arithmetic("decr"),
  };
}

/**
 * Counters for the "prepare" phase: in old, until a version on the new side moves them (see the
 * file comment); then in new, like that version.
 */
export function prepareCounters(
  newClient: MemcacheClient,
  oldClient: MemcacheClient,
): CounterClient {
  const arithmetic =
    (command: "incr" | "decr") =>
    async (key: string, delta?: number | bigint): Promise<number | bigint | undefined> => {
      try {
        return await oldClient[command](key, delta); // undefined when absent: the caller adds
      } catch (error) {
        if (!isNonNumericError(error)) throw error;
        const old = await readOld(oldClient, key);
        if (old.kind !== "moved") throw error; // not a counter: the caller refuses it
        await completeMove(newClient, key, old);
        return newClient[command](key, delta);
      }
    };

  return {
    gets: <T>(key: string) => getsFromOld<T>(newClient, oldClient, key),
    cas(key: string, value: unknown, token: string, options?: SetOptions): Promise<CasResult> {
      const parsed = parseToken(token);
      if (parsed.cluster === "old") return oldClient.cas(key, value, parsed.cas, options);
      return newClient.cas(key, value, parsed.cas, outlivingMark(options));
    },
    async add(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
      if (await oldClient.add(key, value, options)) return true;
      // Old has something: a value (the caller reads it again), or the mark of a counter born
      // in new or moved there — then it is created in new, if it is not there already.
      return createInNew(newClient, oldClient, key, value, options);
    },
    incr: arithmetic("incr"),
    decr: arithmetic("decr"),
  };
}
