// The cache layer's defaults as the README states them ("Cache-aside, stampedes and the
// middleware"): a changed default is a changed promise, so it fails here until the README
// says the new one.

import { describe, expect, it } from "vitest";
import { cacheAsideDefaults } from "../../../lib/cache/cacheAside.ts";
import { httpCacheDefaults } from "../../../lib/cache/httpCache.ts";
import { clientStoreDefaults } from "../../../lib/cache/store.ts";

describe("documented defaults", () => {
  it("CacheAside: waits at most 2,000 ms, leases for 3 s, serves stale for 30 s, no early refresh", () => {
    expect(cacheAsideDefaults).toMatchObject({
      maxWaitMs: 2_000,
      leaseTtlSeconds: 3,
      staleSeconds: 30,
      recacheSeconds: 0,
      serveStaleOnError: true,
    });
  });

  it("HttpCache: stops waiting 1,000 ms before the Lambda's end, reports in x-cache", () => {
    expect(httpCacheDefaults).toMatchObject({ deadlineMarginMs: 1_000, headerName: "x-cache" });
  });

  it("clientStore: stampede protection on, the lease kind chosen by the server (auto), an invalidation tried 3 times", () => {
    expect(clientStoreDefaults).toEqual({ leaseMode: "auto", invalidateAttempts: 3 });
  });
});
