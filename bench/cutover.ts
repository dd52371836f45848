// Cutover benchmark (`npm run bench:cutover`): how many origin reads moving to an empty new
// cluster costs, with the fallback and with a plain switch, in the same run. Written to
// bench/results/cutover.json:
//
//   originReadsFallback    one pass over the warmed keys with CacheAside over
//                          FallbackStore(new, old): old's values are served and copied into new
//   secondPassOriginReads  a second pass with the fallback: everything now comes from new
//   originReadsNaive       new flushed, one pass with CacheAside over clientStore(new): the cold
//                          cache a plain endpoint switch would start with
//
// Old is warmed once through cache-aside over the demo origin (infra/local/origin.ts), whose
// GET /_stats counts the reads. Exit code 1 when a pass serves a wrong value (or a part cannot
// run); a missed target is reported as MISSED and still exits 0.

import { type Origin, type OriginStats, startOrigin } from "../infra/local/origin.ts";
import { CacheAside, type CacheStatus } from "../lib/cache/cacheAside.ts";
import { FallbackStore } from "../lib/cache/fallback.ts";
import { clientStore } from "../lib/cache/store.ts";
import { MemcacheClient } from "../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { formatTable, verdict } from "../tools/stats.ts";
import { runMain, writeResults } from "./run.ts";

const settings = {
  /** Product ids 1..keys are warmed in old and read in each pass. */
  keys: 1_000,
  /** Latency of the demo origin, in ms. */
  originDelayMs: 2,
  /** getOrLoad calls in flight at once during a pass. */
  concurrency: 16,
  /** TTL of cached products, in s. */
  ttlSeconds: 3_600,
  /** Client timeouts, in ms: generous, so a busy machine does not turn a hit into a BYPASS. */
  timeoutMs: 2_000,
};

const targets = {
  originReadsFallback: 0,
  secondPassOriginReads: 0,
  originReadsNaive: settings.keys,
};

const resultsFile = new URL("./results/cutover.json", import.meta.url);

interface Product {
  id: string;
  [field: string]: unknown;
}

/** A served value that is not the product asked for. */
class WrongValueError extends Error {
  override name = "WrongValueError";
}

interface Pass {
  name: string;
  originReads: number;
  ms: number;
  statuses: Record<CacheStatus, number>;
}

const cacheKey = (id: number) => `cutover:product:${id}`;

/** The origin loader: GET /products/:id, as the reference app's products function does. */
function originLoader(origin: Origin, id: number): () => Promise<Product> {
  return async () => {
    const response = await fetch(`${origin.url}/products/${id}`);
    if (!response.ok) throw new Error(`origin answered ${response.status} for product ${id}`);
    return (await response.json()) as Product;
  };
}

async function originStats(origin: Origin): Promise<OriginStats> {
  return (await (await fetch(`${origin.url}/_stats`)).json()) as OriginStats;
}

async function resetOriginStats(origin: Origin): Promise<void> {
  await (await fetch(`${origin.url}/_stats/reset`, { method: "POST" })).arrayBuffer();
}

/** Reads every product once through `cache`, `concurrency` at a time, checking each value. */
async function pass(name: string, cache: CacheAside, origin: Origin): Promise<Pass> {
  const statuses: Record<CacheStatus, number> = { HIT: 0, "HIT-FALLBACK": 0, MISS: 0, BYPASS: 0 };
  const before = (await originStats(origin)).reads;
  const started = performance.now();
  let next = 1;
  const worker = async () => {
    while (next <= settings.keys) {
      const id = next++;
      const { value, status } = await cache.getOrLoad(cacheKey(id), originLoader(origin, id), {
        ttlSeconds: settings.ttlSeconds,
      });
      if (value?.id !== String(id)) {
        throw new WrongValueError(
          `${name}: product ${id} was served as ${JSON.stringify(value).slice(0, 80)} (${status})`,
        );
      }
      statuses[status]++;
    }
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  const ms = Math.round(performance.now() - started);
  return { name, originReads: (await originStats(origin)).reads - before, ms, statuses };
}

/** The passes as table rows, header first. */
function passRows(passes: readonly Pass[]): string[][] {
  const header = ["pass", "origin reads", "HIT", "HIT-FALLBACK", "MISS", "BYPASS", "ms"];
  const rows = passes.map((p) => [
    p.name,
    String(p.originReads),
    String(p.statuses.HIT),
    String(p.statuses["HIT-FALLBACK"]),
    String(p.statuses.MISS),
    String(p.statuses.BYPASS),
    String(p.ms),
  ]);
  return [header, ...rows];
}

async function main(): Promise<number> {
  let oldServer: MemcachedProcess | undefined;
  let newServer: MemcachedProcess | undefined;
  let origin: Origin | undefined;
  const clients: MemcacheClient[] = [];
  try {
    [oldServer, newServer, origin] = await Promise.all([
      startMemcached(),
      startMemcached(),
      startOrigin({ port: 0, delayMs: settings.originDelayMs }),
    ]);
    const options = { timeoutMs: settings.timeoutMs, connectTimeoutMs: settings.timeoutMs };
    const oldClient = new MemcacheClient({ servers: oldServer.endpoint, ...options });
    const newClient = new MemcacheClient({ servers: newServer.endpoint, ...options });
    clients.push(oldClient, newClient);
    const [memcachedVersion] = Object.values(await oldClient.version());

    // Before the cutover: the app runs on old alone and has warmed it.
    const warm = await pass("warm old", new CacheAside(clientStore(oldClient)), origin);
    const inOld = await oldClient.getMany(
      Array.from({ length: settings.keys }, (_, i) => cacheKey(i + 1)),
    );
    if (inOld.size !== settings.keys) {
      throw new WrongValueError(`old holds ${inOld.size} of ${settings.keys} warmed products`);
    }
    await resetOriginStats(origin);

    // The cutover with the fallback: new is empty, old stays readable.
    const fallback = new CacheAside(new FallbackStore(newClient, oldClient));
    const fallbackFirst = await pass("fallback", fallback, origin);
    const fallbackSecond = await pass("fallback, 2nd pass", fallback, origin);

    // The same move as a plain switch: new empty again, old out of the picture.
    await newClient.flushAll();
    const naive = await pass("plain switch", new CacheAside(clientStore(newClient)), origin);

    const figures = {
      originReadsFallback: fallbackFirst.originReads,
      secondPassOriginReads: fallbackSecond.originReads,
      originReadsNaive: naive.originReads,
    };
    const met = {
      originReadsFallback: figures.originReadsFallback === targets.originReadsFallback,
      secondPassOriginReads: figures.secondPassOriginReads === targets.secondPassOriginReads,
      originReadsNaive: figures.originReadsNaive === targets.originReadsNaive,
    };

    console.log(
      `memcached ${memcachedVersion}, node ${process.version}; ${settings.keys} products, ` +
        `origin delay ${settings.originDelayMs} ms, ${settings.concurrency} reads in flight\n`,
    );
    console.log(formatTable(passRows([warm, fallbackFirst, fallbackSecond, naive])));
    console.log("");
    for (const [name, value] of Object.entries(figures)) {
      const key = name as keyof typeof figures;
      console.log(
        `${name.padEnd(22)} ${String(value).padStart(5)}  (target ${targets[key]})  ${verdict(met[key])}`,
      );
    }

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      keys: settings.keys,
      originDelayMs: settings.originDelayMs,
      concurrency: settings.concurrency,
      ...figures,
      fallbackHits: fallbackFirst.statuses["HIT-FALLBACK"],
      secondPassHits: fallbackSecond.statuses.HIT,
      timingsMs: {
        warmOld: warm.ms,
        fallbackPass: fallbackFirst.ms,
        fallbackSecondPass: fallbackSecond.ms,
        naivePass: naive.ms,
      },
      statuses: {
        fallbackPass: fallbackFirst.statuses,
        fallbackSecondPass: fallbackSecond.statuses,
        naivePass: naive.statuses,
      },
      targets,
      pass: met,
    };
    await writeResults(resultsFile, results);
    return 0;
  } finally {
    for (const client of clients) client.close();
    await Promise.all([origin?.close(), oldServer?.stop(), newServer?.stop()]);
  }
}

runMain(main, (error) => (error instanceof WrongValueError ? `WRONG: ${error.message}` : error));
