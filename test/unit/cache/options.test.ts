// Options of every cache-layer component, checked where they enter: a bad value or an unknown
// key is a TypeError naming the component and the option, before anything reaches memcached.
// The clients point at a closed port: nothing connects unless a command is sent.

import middy from "@middy/core";
import { describe, expect, it } from "vitest";
import { CacheAside } from "../../../lib/cache/cacheAside.ts";
import { cacheConfigFromEnv } from "../../../lib/cache/config.ts";
import { casIncrement, casUpdate, increment } from "../../../lib/cache/counters.ts";
import { FallbackStore } from "../../../lib/cache/fallback.ts";
import { HttpCache, withHttpCache } from "../../../lib/cache/httpCache.ts";
import { cacheForPhase } from "../../../lib/cache/phases.ts";
import { clientStore } from "../../../lib/cache/store.ts";
import { MemcacheClient } from "../../../lib/memcache/client.ts";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";
import { httpCacheMiddleware } from "../../../lib/middleware/httpCache.ts";

const client = new MemcacheClient({ servers: "127.0.0.1:1" });
const other = new MemcacheClient({ servers: "127.0.0.1:2" });
const cache = new CacheAside(clientStore(client));
const config = cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: "127.0.0.1:1" });
const phaseCache = (o: Record<string, unknown>) =>
  cacheForPhase(config, { longestTtlSeconds: 300, ...o }).close();

/** The TypeError message `build` throws (synchronously or as a rejection). */
async function refusal(build: () => unknown): Promise<string> {
  let error: unknown;
  try {
    await build();
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(TypeError);
  expect(client.nodes[0]!.isOpen).toBe(false); // nothing was sent
  return (error as Error).message;
}

const never = async () => "loaded";

describe.each<[string, (options: Record<string, unknown>) => unknown]>([
  ["CacheAside", (o) => new CacheAside(clientStore(client), o)],
  ["clientStore", (o) => clientStore(client, o)],
  ["FallbackStore", (o) => new FallbackStore(client, other, o)],
  ["HttpCache", (o) => new HttpCache({ cache, ...o })],
  ["casUpdate", (o) => casUpdate(client, "k", () => 1, o)],
  ["casIncrement", (o) => casIncrement(client, "k", 1, o)],
  ["increment", (o) => increment(client, "k", 1, o)],
  ["getOrLoad", (o) => cache.getOrLoad("k", never, o)],
  ["acquire", (o) => cache.acquire("k", o)],
  ["invalidate", (o) => cache.invalidate("k", o)],
  ["cacheForPhase", phaseCache],
])("%s", (component, build) => {
  it("refuses an unknown option", async () => {
    expect(await refusal(() => build({ tmeoutMs: 1 }))).toMatch(
      new RegExp(`^lambda-memcache: ${component} option "tmeoutMs" is not an option`),
    );
  });
});

describe.each<[string, string, unknown, (o: Record<string, unknown>) => unknown]>([
  ["CacheAside", "ttlSeconds", Number("5m"), (o) => new CacheAside(clientStore(client), o)],
  ["CacheAside", "ttlSeconds", -1, (o) => new CacheAside(clientStore(client), o)],
  ["CacheAside", "leaseTtlSeconds", 0, (o) => new CacheAside(clientStore(client), o)],
  ["CacheAside", "recacheSeconds", 1.5, (o) => new CacheAside(clientStore(client), o)],
  [
    "CacheAside",
    "maxWaitMs",
    Number.POSITIVE_INFINITY,
    (o) => new CacheAside(clientStore(client), o),
  ],
  ["CacheAside", "staleSeconds", 0, (o) => new CacheAside(clientStore(client), o)],
  ["CacheAside", "serveStaleOnError", "false", (o) => new CacheAside(clientStore(client), o)],
  ["CacheAside", "onEvent", "console.log", (o) => new CacheAside(clientStore(client), o)],
  ["clientStore", "leaseMode", "on", (o) => clientStore(client, o)],
  ["clientStore", "leaseMode", true, (o) => clientStore(client, o)],
  ["FallbackStore", "copyTtlSeconds", Number.NaN, (o) => new FallbackStore(client, other, o)],
  ["FallbackStore", "tombstoneSeconds", -1, (o) => new FallbackStore(client, other, o)],
  ["FallbackStore", "leaseMode", "meta-lock", (o) => new FallbackStore(client, other, o)],
  ["FallbackStore", "onOldError", 1, (o) => new FallbackStore(client, other, o)],
  ["FallbackStore", "invalidateAttempts", 0, (o) => new FallbackStore(client, other, o)],
  ["clientStore", "invalidateAttempts", 1.5, (o) => clientStore(client, o)],
  ["HttpCache", "cache", {}, (o) => new HttpCache(o)],
  ["HttpCache", "ttlSeconds", Number("60s"), (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "keyPrefix", "has space:", (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "varyHeaders", ["Accept-Language"], (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "varyHeaders", "accept", (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "headerName", "", (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "deadlineMarginMs", -1, (o) => new HttpCache({ cache, ...o })],
  ["HttpCache", "getKey", "id", (o) => new HttpCache({ cache, ...o })],
  ["casUpdate", "maxAttempts", 0, (o) => casUpdate(client, "k", () => 1, o)],
  ["casUpdate", "jitterMs", Number.NaN, (o) => casUpdate(client, "k", () => 1, o)],
  ["casUpdate", "ttlSeconds", -1, (o) => casUpdate(client, "k", () => 1, o)],
  ["casUpdate", "repairUndecodable", 1, (o) => casUpdate(client, "k", () => 1, o)],
  ["casIncrement", "maxAttempts", Number.NaN, (o) => casIncrement(client, "k", 1, o)],
  ["increment", "ttlSeconds", 0.5, (o) => increment(client, "k", 1, o)],
  ["getOrLoad", "ttlSeconds", Number("5m"), (o) => cache.getOrLoad("k", never, o)],
  ["getOrLoad", "shouldCache", true, (o) => cache.getOrLoad("k", never, o)],
  ["acquire", "deadline", Number.NaN, (o) => cache.acquire("k", o)],
  ["invalidate", "stale", "yes", (o) => cache.invalidate("k", o)],
  ["cacheForPhase", "longestTtlSeconds", -1, phaseCache],
  ["cacheForPhase", "longestTtlSeconds", Number("300s"), phaseCache],
  ["cacheForPhase", "onOldError", "log", phaseCache],
])("%s option %s", (component, name, value, build) => {
  it(`refuses ${JSON.stringify(String(value))} with a TypeError naming it`, async () => {
    expect(await refusal(() => build({ [name]: value }))).toMatch(
      new RegExp(`^lambda-memcache: ${component} option "${name}" must be `),
    );
  });
});

describe("cacheForPhase", () => {
  it("requires longestTtlSeconds: the tombstones' lifetime is derived from it", async () => {
    expect(await refusal(() => cacheForPhase(config, {} as never))).toBe(
      'lambda-memcache: cacheForPhase option "longestTtlSeconds" is required',
    );
  });

  it("derives the tombstones' lifetime from the longest TTL, or takes CACHE_TOMBSTONE_SECONDS", () => {
    const both = { CACHE_NEW_ENDPOINT: "127.0.0.1:1", CACHE_OLD_ENDPOINT: "127.0.0.1:2" };
    const lifetime = (env: Record<string, string>, longestTtlSeconds: number) => {
      const built = cacheForPhase(cacheConfigFromEnv({ ...both, ...env }), { longestTtlSeconds });
      built.close();
      return built.tombstoneSeconds;
    };
    expect(lifetime({}, 300)).toBe(310);
    expect(lifetime({}, 0)).toBe(0); // values that never expire: tombstones that never do
    expect(lifetime({ CACHE_TOMBSTONE_SECONDS: "86400" }, 300)).toBe(86_400);
    expect(lifetime({ CACHE_TOMBSTONE_SECONDS: "0" }, 300)).toBe(0);
  });

  it.each([
    ["300", 300],
    ["60", 300],
    ["3600", 0],
  ])(
    "stops at init on CACHE_TOMBSTONE_SECONDS=%s with values living %i s (0: forever)",
    (text, ttl) => {
      const env = {
        CACHE_NEW_ENDPOINT: "127.0.0.1:1",
        CACHE_OLD_ENDPOINT: "127.0.0.1:2",
        CACHE_TOMBSTONE_SECONDS: text,
      };
      expect(() => cacheForPhase(cacheConfigFromEnv(env), { longestTtlSeconds: ttl })).toThrow(
        /^lambda-memcache: environment variable CACHE_TOMBSTONE_SECONDS is \d+, not longer than the longest TTL the app writes/,
      );
    },
  );
});

describe("HttpCache", () => {
  it("requires cache, also through the Middy middleware and the plain wrapper", async () => {
    const message = 'lambda-memcache: HttpCache option "cache" is required';
    expect(await refusal(() => new HttpCache({}))).toBe(message);
    expect(await refusal(() => httpCacheMiddleware({}))).toBe(message);
    expect(await refusal(() => withHttpCache(async () => ({ statusCode: 200 }), {}))).toBe(message);
  });

  it("refuses a typo through the Middy middleware when the handler is built, not per request", () => {
    expect(() =>
      middy(async () => ({ statusCode: 200 })).use(
        httpCacheMiddleware({ cache, ttlSecond: 60 } as never),
      ),
    ).toThrow(
      'lambda-memcache: HttpCache option "ttlSecond" is not an option; did you mean "ttlSeconds"?',
    );
  });
});

describe("per-command options of the client", () => {
  it("refuses an unknown set option (a TTL that would silently not apply) without sending", async () => {
    const error = await client.set("k", "v", { ttl: 60 } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemcacheIllegalInputError);
    expect((error as Error).message).toBe(
      'set option "ttl" is not an option; did you mean "ttlSeconds"?',
    );
    expect(client.nodes[0]!.isOpen).toBe(false);
  });
});
