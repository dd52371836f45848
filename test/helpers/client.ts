// Small helpers for tests that drive MemcacheClient: the one node's stats as numbers, and how
// long an operation took to settle and how it settled.

import type { MemcacheClient } from "../../lib/memcache/client.ts";

/** `stats [group]` of the client's only node, values as text. */
export async function nodeStats(
  client: MemcacheClient,
  group?: string,
): Promise<Record<string, string>> {
  const byNode = await client.stats(group);
  const [stats] = Object.values(byNode);
  if (stats === undefined) throw new Error("the client has no node");
  return stats;
}

/** Named counters of the client's only node, as numbers (a missing counter is an error). */
export async function counters<const K extends string>(
  client: MemcacheClient,
  names: readonly K[],
): Promise<Record<K, number>> {
  const stats = await nodeStats(client);
  const out = {} as Record<K, number>;
  for (const name of names) {
    const text = stats[name];
    if (text === undefined) throw new Error(`stats has no "${name}"`);
    out[name] = Number(text);
  }
  return out;
}

export interface Timed<T> {
  /** Milliseconds from the call to settling. */
  ms: number;
  result: PromiseSettledResult<T>;
}

/** Runs `operation` and reports how long it took to settle and how it settled. */
export async function timed<T>(operation: () => Promise<T>): Promise<Timed<T>> {
  const start = performance.now();
  const [result] = await Promise.allSettled([operation()]);
  return { ms: performance.now() - start, result: result! };
}

/** The rejection reason of a settled result; fails the test when it was fulfilled. */
export function rejection<T>(result: PromiseSettledResult<T>): unknown {
  if (result.status === "fulfilled") {
    throw new Error(`expected a rejection, got ${String(result.value)}`);
  }
  return result.reason;
}

/** The error and its causes, as one text: what a user would read in a log. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let e = error; e instanceof Error; e = e.cause) {
    parts.push(`${e.message} ${(e as NodeJS.ErrnoException).code ?? ""}`);
  }
  return parts.join(" <- ");
}

/** The error `fn` throws; fails the test when it does not throw. */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to throw");
}
