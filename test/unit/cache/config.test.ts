// cacheConfigFromEnv: the phase (single cluster or cutover) and the server lists from
// CACHE_NEW_ENDPOINT / CACHE_OLD_ENDPOINT, and the errors for missing or malformed values,
// each naming the variable to fix.

import { describe, expect, it } from "vitest";
import { cacheConfigFromEnv } from "../../../lib/cache/config.ts";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";

/** The error cacheConfigFromEnv throws for `env`; fails the test when it does not throw. */
function configError(env: Record<string, string | undefined>): Error {
  try {
    cacheConfigFromEnv(env);
  } catch (error) {
    return error as Error;
  }
  throw new Error(`expected cacheConfigFromEnv(${JSON.stringify(env)}) to throw`);
}

describe("cacheConfigFromEnv", () => {
  it("runs a single phase when only the new endpoint is set", () => {
    expect(cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: "10.0.0.5:11211" })).toEqual({
      phase: "single",
      newServers: ["10.0.0.5:11211"],
      oldServers: [],
    });
  });

  it("runs the cutover phase when both endpoints are set", () => {
    expect(
      cacheConfigFromEnv({
        CACHE_NEW_ENDPOINT: "new.cache.local:11211",
        CACHE_OLD_ENDPOINT: "old.cache.local:11212",
      }),
    ).toEqual({
      phase: "cutover",
      newServers: ["new.cache.local:11211"],
      oldServers: ["old.cache.local:11212"],
    });
  });

  it.each([
    ["none", "none"],
    ["empty", ""],
    ["blank", "   "],
  ])('treats an old endpoint of "%s" as not set (single phase)', (_label, old) => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "127.0.0.1:11211",
      CACHE_OLD_ENDPOINT: old,
    });
    expect(config.phase).toBe("single");
    expect(config.oldServers).toEqual([]);
  });

  it("reads from process.env when no environment is passed", () => {
    const saved = { new: process.env.CACHE_NEW_ENDPOINT, old: process.env.CACHE_OLD_ENDPOINT };
    try {
      process.env.CACHE_NEW_ENDPOINT = "127.0.0.1:21211";
      delete process.env.CACHE_OLD_ENDPOINT;
      expect(cacheConfigFromEnv()).toEqual({
        phase: "single",
        newServers: ["127.0.0.1:21211"],
        oldServers: [],
      });
    } finally {
      for (const [name, value] of [
        ["CACHE_NEW_ENDPOINT", saved.new],
        ["CACHE_OLD_ENDPOINT", saved.old],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("splits comma-separated servers, trimming the spaces around them", () => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "10.0.0.1:11211, 10.0.0.2:11211 ,10.0.0.3:11300",
      CACHE_OLD_ENDPOINT: "10.0.1.1:11211,10.0.1.2:11211",
    });
    expect(config.newServers).toEqual(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11300"]);
    expect(config.oldServers).toEqual(["10.0.1.1:11211", "10.0.1.2:11211"]);
  });

  it("accepts a bracketed IPv6 address and keeps the brackets", () => {
    expect(cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: "[::1]:11211" }).newServers).toEqual([
      "[::1]:11211",
    ]);
  });

  it("adds the default port 11211 when a server has none", () => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "cache.local,[::1]",
      CACHE_OLD_ENDPOINT: "my-cluster.abc123.cfg.use1.cache.amazonaws.com",
    });
    expect(config.newServers).toEqual(["cache.local:11211", "[::1]:11211"]);
    expect(config.oldServers).toEqual(["my-cluster.abc123.cfg.use1.cache.amazonaws.com:11211"]);
  });

  it.each([
    ["unset", undefined],
    ["empty", ""],
    ["none", "none"],
  ])(
    "throws MemcacheIllegalInputError naming CACHE_NEW_ENDPOINT when it is %s",
    (_label, value) => {
      const error = configError({
        CACHE_NEW_ENDPOINT: value,
        CACHE_OLD_ENDPOINT: "10.0.0.9:11211",
      });
      expect(error).toBeInstanceOf(MemcacheIllegalInputError);
      expect(error.message).toContain("CACHE_NEW_ENDPOINT");
    },
  );

  describe.each(["CACHE_NEW_ENDPOINT", "CACHE_OLD_ENDPOINT"])("a malformed %s", (variable) => {
    it.each([
      ["host:port:x", "cache.local:11211:x"],
      ["a port over 65535", "cache.local:99999"],
      ["port 0", "cache.local:0"],
      ["a space inside the host", "a b:1"],
      ["an unbracketed IPv6 address", "::1:11211"],
      ["a non-numeric port", "cache.local:abc"],
      ["an empty entry in a list", "10.0.0.1:11211,,10.0.0.2:11211"],
    ])("throws MemcacheIllegalInputError naming the variable for %s", (_label, value) => {
      const env =
        variable === "CACHE_NEW_ENDPOINT"
          ? { CACHE_NEW_ENDPOINT: value }
          : { CACHE_NEW_ENDPOINT: "10.0.0.1:11211", CACHE_OLD_ENDPOINT: value };
      const error = configError(env);
      expect(error).toBeInstanceOf(MemcacheIllegalInputError);
      expect(error.message).toContain(variable);
    });
  });

  it("names the offending entry of a list in the error", () => {
    const error = configError({ CACHE_NEW_ENDPOINT: "10.0.0.1:11211,cache.local:99999" });
    expect(error.message).toContain("cache.local:99999");
  });

  it.each([
    ["written the same way", "10.0.0.1:11211", "10.0.0.1:11211"],
    ["with and without the default port", "10.0.0.1:11211,10.0.0.2:11211", "10.0.0.2"],
    ["IPv6 with and without the default port", "[::1]:11211", "[::1]"],
  ])(
    "throws MemcacheIllegalInputError when both clusters share a server %s",
    (_label, next, old) => {
      const error = configError({ CACHE_NEW_ENDPOINT: next, CACHE_OLD_ENDPOINT: old });
      expect(error).toBeInstanceOf(MemcacheIllegalInputError);
      expect(error.message).toMatch(/CACHE_OLD_ENDPOINT and CACHE_NEW_ENDPOINT share/);
    },
  );

  it("throws when both clusters share a host name written in different letter case", () => {
    const error = configError({
      CACHE_NEW_ENDPOINT: "Cache.Local:11211",
      CACHE_OLD_ENDPOINT: "cache.local:11211",
    });
    expect(error).toBeInstanceOf(MemcacheIllegalInputError);
  });
});
