// End-to-end helpers: the local stack as the tests start it, the reference app and the demo
// origin over real HTTP (fetch), a raw listing of the keys a memcached holds, and waiting for a
// condition instead of sleeping.

import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { connect as tlsConnect } from "node:tls";
import { expect } from "vitest";
import type { Product } from "../../infra/local/origin.ts";
import { type Stack, type StackOptions, startStack } from "../../infra/local/stack.ts";
import { patientTimeoutMs, test } from "./fixtures.ts";

export type { Product };

/**
 * The cache timeouts the functions get in end-to-end tests (CACHE_TIMEOUT_MS and
 * CACHE_CONNECT_TIMEOUT_MS; production uses 100 and 200 ms): the tests check what the app
 * answers, and on a loaded machine (other test files, other work on every core) a 100 ms cas
 * or get times out now and then without anything being wrong. Tests of how long a failure
 * costs express their bounds in this timeout.
 */
export const appCacheTimeoutMs = patientTimeoutMs;

/**
 * Starts the local stack for a test: free ports (unless the test gives some), output captured,
 * and the patient cache timeouts above. The caller stops it (a fixture's cleanup).
 */
export function startTestStack(opts: StackOptions): Promise<Stack> {
  return startStack({
    stdio: "pipe",
    ...opts,
    ports: { http: 0, lambda: 0, origin: 0, live: 0, ...opts.ports },
    env: {
      CACHE_TIMEOUT_MS: String(appCacheTimeoutMs),
      CACHE_CONNECT_TIMEOUT_MS: String(appCacheTimeoutMs),
      ...opts.env,
    },
  });
}

/**
 * The single-cluster phase on `endpoint`: a stack with that one cluster reads every id once
 * (`parallel` at a time; from the origin, cached there), then stops. Resolves with its answers.
 */
export async function warmThroughApp(
  endpoint: string,
  originUrl: string,
  ids: readonly string[],
  parallel: number,
): Promise<AppResponse<Product>[]> {
  const stack = await startTestStack({ newEndpoint: endpoint, oldEndpoint: "", originUrl });
  try {
    const app = appClient(stack.httpUrl);
    return await mapLimit(ids, parallel, (id) => app.getProduct(id));
  } finally {
    await stack.stop();
  }
}

export interface AppResponse<T = unknown> {
  status: number;
  /** The x-cache header (HIT, HIT-FALLBACK, MISS, BYPASS), null when absent. */
  cache: string | null;
  /** The x-cache-invalidated header of a PUT (complete, incomplete), null when absent. */
  invalidated: string | null;
  /** The JSON body, or the raw text when it is not JSON. */
  body: T;
  /** Milliseconds from sending the request to having read the whole body. */
  ms: number;
}

export interface Counter {
  name: string;
  /** A JSON number while it is a safe integer, its decimal text beyond 2^53 - 1. */
  value: number | string;
}

async function call<T>(url: string, init: RequestInit = {}): Promise<AppResponse<T>> {
  const started = performance.now();
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text, the assertion will show it
  }
  return {
    status: response.status,
    cache: response.headers.get("x-cache"),
    invalidated: response.headers.get("x-cache-invalidated"),
    body: body as T,
    ms: performance.now() - started,
  };
}

/** The reference app's endpoints; ids and names are URL-encoded here, so pass them decoded. */
export function appClient(baseUrl: string) {
  const url = (path: string) => `${baseUrl}${path}`;
  return {
    getProduct: (id: string) => call<Product>(url(`/products/${encodeURIComponent(id)}`)),
    putProduct: (id: string, fields: Record<string, unknown>) =>
      call<Product>(url(`/products/${encodeURIComponent(id)}`), {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(fields),
      }),
    getCounter: (name: string) => call<Counter>(url(`/counters/${encodeURIComponent(name)}`)),
    postCounter: (name: string) =>
      call<Counter>(url(`/counters/${encodeURIComponent(name)}`), { method: "POST" }),
    health: () => call<Health>(url("/health")),
  };
}

export type AppClient = ReturnType<typeof appClient>;

export interface Health {
  phase: "single" | "prepare" | "fallback" | "new";
  ok: boolean;
  clusters: Record<
    string,
    {
      servers: string[];
      nodes: Array<{ endpoint: string; ok: boolean; version?: string; error?: string }>;
    }
  >;
}

export interface OriginStats {
  reads: number;
  writes: number;
}

/** GET {originUrl}/_stats */
export async function originStats(originUrl: string): Promise<OriginStats> {
  return (await call<OriginStats>(`${originUrl}/_stats`)).body;
}

/** POST {originUrl}/_stats/reset */
export async function resetOriginStats(originUrl: string): Promise<void> {
  const { status } = await call(`${originUrl}/_stats/reset`, { method: "POST" });
  if (status !== 200) throw new Error(`resetting the origin's stats answered ${status}`);
}

/**
 * Every key memcached holds, from `lru_crawler metadump all` (one "key=<URL-encoded key> ..."
 * line per item, then END), decoded: a key with a raw space or CR/LF in it shows as such. Over
 * a raw socket (TLS with `tls`, trusting its CA), so that no client-side key check can hide
 * anything.
 */
export function memcachedKeys(endpoint: string, tls?: { ca: string }): Promise<string[]> {
  const [host, port] = endpoint.split(":") as [string, string];
  return new Promise((resolve, reject) => {
    const socket =
      tls === undefined
        ? net.connect({ host, port: Number(port) })
        : tlsConnect({ host, port: Number(port), ca: tls.ca });
    socket.setTimeout(5_000, () => socket.destroy(new Error(`metadump on ${endpoint} timed out`)));
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (/(^|\n)(END|ERROR[^\r\n]*|CLIENT_ERROR[^\r\n]*|BUSY[^\r\n]*)\r\n$/.test(text)) {
        socket.end();
        const lines = text.split(/\r?\n/).filter(Boolean);
        const last = lines.pop();
        if (last !== "END") reject(new Error(`metadump on ${endpoint} answered ${last}`));
        else resolve(lines.map((line) => decodeURIComponent(/^key=(\S+)/.exec(line)?.[1] ?? line)));
      }
    });
    socket.on("error", reject);
    socket.write("lru_crawler metadump all\r\n");
  });
}

/** Calls `probe` until it returns something other than undefined; fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 15_000, intervalMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await probe();
    if (result !== undefined) return result;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(intervalMs);
  }
}

/** Runs `task` for every item with at most `limit` in flight; results in input order. */
export async function mapLimit<I, O>(
  items: readonly I[],
  limit: number,
  task: (item: I) => Promise<O>,
): Promise<O[]> {
  const results = new Array<O>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** from..to inclusive. */
export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/**
 * "200" (any 2xx), or the status with the error the app gave: one label per outcome, for tallies.
 * serverless-offline answers a Lambda timeout with HTTP 200 and an errorType body: not a 200.
 */
export function outcome(response: AppResponse): string {
  const body = response.body as {
    detail?: unknown;
    error?: unknown;
    errorType?: unknown;
    errorMessage?: unknown;
  } | null;
  const failedLambda = typeof body === "object" && body !== null && "errorType" in body;
  if (response.status >= 200 && response.status < 300 && !failedLambda) {
    return String(response.status);
  }
  if (failedLambda)
    return `${response.status} ${String(body.errorType)}: ${String(body.errorMessage)}`;
  return `${response.status} ${String(body?.detail ?? body?.error ?? JSON.stringify(body))}`;
}

/** Counts how often each label occurs, so that a failed expectation shows the whole picture. */
export function tally(labels: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  return counts;
}

/**
 * Starts `count` worker threads of one function: serverless-offline gives each concurrent request
 * a worker of its own. Many cold starts at once on a small machine starve every thread (and
 * memcached) of CPU for longer than the 100 ms cache timeout, which is not what a test of the
 * app wants to measure: Lambda gives each environment its own CPU. Outcomes are ignored.
 */
export async function startWorkers(count: number, request: () => Promise<unknown>): Promise<void> {
  await Promise.allSettled(Array.from({ length: count }, request));
}

/**
 * The fixtures of a cutover end to end, for the whole file, on top of the memcached and origin
 * fixtures: `warming`, the single-cluster phase's answers while it warmed old with `warmIds` (a
 * stack on old alone, stopped afterwards); `stack`, the cutover (new, empty, first; old behind
 * it) started after that, with `extra` stack options; and `app`, its HTTP client.
 */
export function cutoverTest(
  warmIds: readonly string[],
  parallel: number,
  extra: Partial<StackOptions> = {},
) {
  return test
    .extend("warming", { scope: "file" }, ({ oldMemcached, origin }) =>
      warmThroughApp(oldMemcached.endpoint, origin.url, warmIds, parallel),
    )
    .extend(
      "stack",
      { scope: "file" },
      async ({ newMemcached, oldMemcached, origin, warming }, { onCleanup }) => {
        expect(warming).toHaveLength(warmIds.length); // the warm-up comes first
        const stack = await startTestStack({
          ...extra,
          newEndpoint: newMemcached.endpoint,
          oldEndpoint: oldMemcached.endpoint,
          originUrl: origin.url,
        });
        onCleanup(() => stack.stop());
        return stack;
      },
    )
    .extend("app", { scope: "file" }, async ({ stack }) => appClient(stack.httpUrl));
}
