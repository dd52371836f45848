// Invalidations that are complete, or say they are not. An invalidation has one part per cluster
// a reader could find the key in (a delete, or a tombstone in the new cluster during a cutover);
// the parts run at once, each retried a few times within the request, and if any part still
// fails the whole invalidation throws MemcacheIncompleteInvalidationError naming the clusters —
// never reported as done (CacheAside.invalidate turns it into `false`, the reference app's PUT
// into `x-cache-invalidated: incomplete` and a metric).
//
// A retried delete is safe: a delete that ran although its reply was lost leaves the key absent,
// and the retry's NOT_FOUND counts as done. A retried tombstone is a second set of the same bytes.

import type { MemcacheClient } from "../memcache/client.ts";
import {
  MemcacheError,
  MemcacheIllegalInputError,
  MemcacheIncompleteInvalidationError,
} from "../memcache/errors.ts";
import { type Leases, TOMBSTONE_FLAGS } from "./leases.ts";

/** One cluster's part of an invalidation. */
export interface InvalidationPart {
  /** "cache" (one cluster), "new" or "old": named in the error when this part fails. */
  cluster: string;
  run(): Promise<unknown>;
}

/** Attempts per part before an invalidation is reported incomplete (the default of every store). */
export const DEFAULT_INVALIDATE_ATTEMPTS = 3;

/** Runs every part at once, each retried; throws MemcacheIncompleteInvalidationError if any failed. */
export async function invalidateEverywhere(
  key: string,
  parts: readonly InvalidationPart[],
  attempts: number,
): Promise<void> {
  const outcomes = await Promise.all(
    parts.map(async (part) => {
      try {
        await retried(part.run, attempts);
        return undefined;
      } catch (error) {
        return { cluster: part.cluster, error };
      }
    }),
  );
  const failed = outcomes.filter((outcome) => outcome !== undefined);
  if (failed.length === 0) return;
  const clusters = failed.map((outcome) => outcome.cluster);
  throw new MemcacheIncompleteInvalidationError(
    `invalidation of "${key}" incomplete after ${attempts} attempts: ${clusters.join(" and ")} did not acknowledge it (${(failed[0]!.error as Error).message}); readers may get the value from before it until it expires there`,
    { clusters, cause: failed[0]!.error },
  );
}

/** A delete of `key` in `client`'s cluster. */
export function deletePart(client: MemcacheClient, key: string, cluster: string): InvalidationPart {
  return { cluster, run: () => client.delete(key) };
}

const TOMBSTONE = Buffer.from("invalidated");

/**
 * A tombstone for `key` in the new cluster, living `seconds` (0: no expiry). Readers take it as a
 * miss that must not fall back to the old cluster, and a fill or copy that read before it loses
 * against it (see phases.ts). With meta leases it is also marked stale (md I), so of the readers
 * that come next exactly one wins the reload and the rest wait; that mark is best effort (without
 * it every reader loads, and each fill still loses against a newer tombstone).
 */
export function tombstonePart(
  client: MemcacheClient,
  key: string,
  seconds: number,
  leases: () => Promise<Leases>,
): InvalidationPart {
  return {
    cluster: "new",
    async run() {
      await client.set(key, TOMBSTONE, { ttlSeconds: seconds, flags: TOMBSTONE_FLAGS });
      try {
        await (await leases()).markStale(key, seconds); // false without I/O for lock and off
      } catch {
        // The tombstone is in place; only the stampede protection of its reload is lost.
      }
    },
  };
}

async function retried(run: () => Promise<unknown>, attempts: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await run();
      return;
    } catch (error) {
      const retryable =
        error instanceof MemcacheError && !(error instanceof MemcacheIllegalInputError);
      // At once: a reset or a lost reply is retried on a fresh connection, and a pause would
      // only spend the request's time (a node that stays down is refused at once anyway).
      if (attempt >= attempts || !retryable) throw error;
    }
  }
}

/** Seconds a tombstone outlives the longest TTL written, for clock steps of one second. */
export const TOMBSTONE_MARGIN_SECONDS = 10;

/**
 * How long a tombstone must live so that it outlives every copy the old cluster can still hold:
 * longer than the longest TTL any version of the app writes values with (0: values never expire,
 * so neither may the tombstone).
 */
export function tombstoneSecondsFor(longestTtlSeconds: number): number {
  return longestTtlSeconds === 0 ? 0 : longestTtlSeconds + TOMBSTONE_MARGIN_SECONDS;
}
