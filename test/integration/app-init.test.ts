// The reference app's functions parse their environment at cold start: a bad value stops the
// function at init (the module import throws, as the Lambda runtime reports an init error),
// with a message naming the variable — instead of running with timeouts or caching silently
// off. Each case imports a handler module in a fresh Node process, as a cold start does.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);

/** Imports `module` in a fresh process with `env`; resolves with its exit code and stderr. */
async function coldStart(
  module: string,
  env: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  const script = `await import(${JSON.stringify(new URL(`../../${module}`, import.meta.url).href)});`;
  try {
    const { stderr } = await run(process.execPath, ["--input-type=module", "-e", script], {
      env: { PATH: process.env.PATH ?? "", CACHE_METRICS: "off", ...env },
      timeout: 20_000,
    });
    return { code: 0, stderr };
  } catch (error) {
    const failed = error as { code?: number; stderr?: string };
    return { code: failed.code ?? -1, stderr: failed.stderr ?? "" };
  }
}

const good = { CACHE_NEW_ENDPOINT: "127.0.0.1:1", CACHE_OLD_ENDPOINT: "" };

describe("a function's cold start", () => {
  it("succeeds with a good environment (no cache is contacted at init)", async () => {
    const { code, stderr } = await coldStart("functions/products.ts", {
      ...good,
      CACHE_TIMEOUT_MS: "100",
      PRODUCT_TTL_SECONDS: "300",
    });
    expect(stderr).not.toMatch(/lambda-memcache:/);
    expect(code).toBe(0);
  });

  it.each([
    ["functions/products.ts", "CACHE_TIMEOUT_MS", "100ms"],
    ["functions/products.ts", "CACHE_CONNECT_TIMEOUT_MS", "-1"],
    ["functions/products.ts", "PRODUCT_TTL_SECONDS", "5m"],
    ["functions/products.ts", "ORIGIN_TIMEOUT_MS", "5s"],
    ["functions/products.ts", "ORIGIN_URL", "origin.example.com"],
    ["functions/counters.ts", "CACHE_METRICS", "false"],
    ["functions/counters.ts", "CACHE_NEW_DISCOVERY", "yes"],
    ["functions/counters.ts", "CACHE_NEW_TLS", "on"],
    ["functions/products.ts", "CACHE_NEW_KIND", "elasticache"],
    ["functions/health.ts", "CACHE_TLS_CA_FILE", "/no/such/ca.pem"],
    ["functions/health.ts", "CACHE_NEW_ENDPOINT", "cache.local:99999"],
  ])("%s stops at init on %s=%s, naming the variable", async (module, name, value) => {
    const { code, stderr } = await coldStart(module, { ...good, [name]: value });
    expect(code).not.toBe(0);
    expect(stderr).toContain(`TypeError: lambda-memcache: environment variable ${name} `);
    expect(stderr).toContain(JSON.stringify(value));
  });
});

describe("a function's cold start in a cutover phase", () => {
  it.each([
    ["prepare", "", 'is "prepare", which reads the old cluster, but CACHE_OLD_ENDPOINT is not set'],
    [
      "fallback",
      "",
      'is "fallback", which reads the old cluster, but CACHE_OLD_ENDPOINT is not set',
    ],
    [
      "cutover",
      "127.0.0.1:2",
      'must be one of "single", "prepare", "fallback", "new", got "cutover"',
    ],
  ])(
    "stops at init on CACHE_CUTOVER_PHASE=%s with CACHE_OLD_ENDPOINT=%j",
    async (phase, old, complaint) => {
      for (const module of [
        "functions/products.ts",
        "functions/counters.ts",
        "functions/health.ts",
      ]) {
        const { code, stderr } = await coldStart(module, {
          ...good,
          CACHE_OLD_ENDPOINT: old,
          CACHE_CUTOVER_PHASE: phase,
        });
        expect(code, module).not.toBe(0);
        expect(stderr, module).toContain(
          `TypeError: lambda-memcache: environment variable CACHE_CUTOVER_PHASE ${complaint}`,
        );
      }
    },
  );

  it("stops at init on a CACHE_TOMBSTONE_SECONDS shorter than PRODUCT_TTL_SECONDS", async () => {
    const { code, stderr } = await coldStart("functions/products.ts", {
      ...good,
      CACHE_OLD_ENDPOINT: "127.0.0.1:2",
      CACHE_CUTOVER_PHASE: "new",
      PRODUCT_TTL_SECONDS: "600",
      CACHE_TOMBSTONE_SECONDS: "300",
    });
    expect(code).not.toBe(0);
    expect(stderr).toContain(
      "TypeError: lambda-memcache: environment variable CACHE_TOMBSTONE_SECONDS is 300, not longer than the longest TTL the app writes (600)",
    );
  });

  it.each(["prepare", "fallback", "new"])(
    "succeeds in phase %s with both endpoints",
    async (phase) => {
      const { code, stderr } = await coldStart("functions/products.ts", {
        ...good,
        CACHE_OLD_ENDPOINT: "127.0.0.1:2",
        CACHE_CUTOVER_PHASE: phase,
      });
      expect(stderr).not.toMatch(/lambda-memcache:/);
      expect(code).toBe(0);
    },
  );
});

describe("the tombstones of a function that caches nothing", () => {
  it("PRODUCT_TTL_SECONDS=0 still gives invalidations' tombstones a lifetime (a neighbour may cache)", async () => {
    const printed = async (ttl: string) => {
      const module = new URL("../../functions/shared/cache.ts", import.meta.url).href;
      const script = `const m = await import(${JSON.stringify(module)}); console.log(m.phaseCache.tombstoneSeconds);`;
      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
        env: {
          PATH: process.env.PATH ?? "",
          CACHE_METRICS: "off",
          CACHE_NEW_ENDPOINT: "127.0.0.1:1",
          CACHE_OLD_ENDPOINT: "127.0.0.1:2",
          CACHE_CUTOVER_PHASE: "fallback",
          PRODUCT_TTL_SECONDS: ttl,
        },
        timeout: 20_000,
      });
      return Number(stdout.trim());
    };
    expect(await printed("0")).toBe(await printed("300")); // not 0, "never expires"
    expect(await printed("0")).toBeGreaterThan(300);
  });
});
