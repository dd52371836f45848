// cacheConfigFromEnv: the cutover phase (CACHE_CUTOVER_PHASE, checked against the endpoints it
// needs), the lease mode, the tombstone lifetime, each cluster's nodes or
// configuration endpoint from CACHE_NEW_* / CACHE_OLD_*, the client timeouts, and the TypeErrors
// for missing or malformed values, each naming the variable to fix. Also the strict single-value
// parsers an application uses for its own variables.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  booleanFromEnv,
  type CacheConfig,
  cacheConfigFromEnv,
  choiceFromEnv,
  type Env,
  integerFromEnv,
  urlFromEnv,
} from "../../../lib/cache/config.ts";

/** The error `parse(env)` throws; fails the test when it does not throw. */
function envErrorOf(env: Env, parse: (env: Env) => unknown = cacheConfigFromEnv): Error {
  try {
    parse(env);
  } catch (error) {
    return error as Error;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

/** The cluster's servers as host:port text (undefined for a configuration endpoint). */
function servers(cluster: CacheConfig["newCluster"] | undefined): string[] | undefined {
  if (cluster === undefined || !("servers" in cluster)) return undefined;
  return cluster.servers.map((a) =>
    a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`,
  );
}

describe("cacheConfigFromEnv", () => {
  it("runs a single phase when only the new endpoint is set, with the default timeouts", () => {
    expect(cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: "10.0.0.5:11211" })).toEqual({
      phase: "single",
      newCluster: { servers: [{ host: "10.0.0.5", port: 11211 }] },
      oldCluster: undefined,
      newConnection: { tls: false, elastiCacheServerless: false },
      oldConnection: undefined,
      timeoutMs: 100,
      connectTimeoutMs: 200,
      leaseMode: "auto",
      tombstoneSeconds: undefined,
    });
  });

  it("runs the fallback phase when both endpoints are set and no phase is given", () => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "new.cache.local:11211",
      CACHE_OLD_ENDPOINT: "old.cache.local:11212",
    });
    expect(config.phase).toBe("fallback");
    expect(servers(config.newCluster)).toEqual(["new.cache.local:11211"]);
    expect(servers(config.oldCluster)).toEqual(["old.cache.local:11212"]);
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
    expect(config.oldCluster).toBeUndefined();
  });

  it("reads from process.env when no environment is passed", () => {
    const saved = { new: process.env.CACHE_NEW_ENDPOINT, old: process.env.CACHE_OLD_ENDPOINT };
    try {
      process.env.CACHE_NEW_ENDPOINT = "127.0.0.1:21211";
      delete process.env.CACHE_OLD_ENDPOINT;
      const config = cacheConfigFromEnv();
      expect(config.phase).toBe("single");
      expect(servers(config.newCluster)).toEqual(["127.0.0.1:21211"]);
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
    expect(servers(config.newCluster)).toEqual([
      "10.0.0.1:11211",
      "10.0.0.2:11211",
      "10.0.0.3:11300",
    ]);
    expect(servers(config.oldCluster)).toEqual(["10.0.1.1:11211", "10.0.1.2:11211"]);
  });

  it("accepts a bracketed IPv6 address", () => {
    expect(servers(cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: "[::1]:11211" }).newCluster)).toEqual([
      "[::1]:11211",
    ]);
  });

  it("adds the default port 11211 when a server has none", () => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "cache.local,[::1]",
      CACHE_OLD_ENDPOINT: "my-cluster.abc123.cfg.use1.cache.amazonaws.com",
    });
    expect(servers(config.newCluster)).toEqual(["cache.local:11211", "[::1]:11211"]);
    expect(servers(config.oldCluster)).toEqual([
      "my-cluster.abc123.cfg.use1.cache.amazonaws.com:11211",
    ]);
  });

  describe("Auto Discovery, switched on explicitly", () => {
    it("uses a `.cfg.` endpoint as a plain node unless CACHE_NEW_DISCOVERY=true", () => {
      const endpoint = "my-cluster.abc123.cfg.use1.cache.amazonaws.com:11211";
      expect(cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: endpoint }).newCluster).toEqual({
        servers: [{ host: "my-cluster.abc123.cfg.use1.cache.amazonaws.com", port: 11211 }],
      });
      expect(
        cacheConfigFromEnv({ CACHE_NEW_ENDPOINT: endpoint, CACHE_NEW_DISCOVERY: "true" })
          .newCluster,
      ).toEqual({
        configEndpoint: { host: "my-cluster.abc123.cfg.use1.cache.amazonaws.com", port: 11211 },
      });
    });

    it("sets discovery per cluster", () => {
      const config = cacheConfigFromEnv({
        CACHE_NEW_ENDPOINT: "new.example:11211",
        CACHE_NEW_DISCOVERY: "false",
        CACHE_OLD_ENDPOINT: "old.example:11211",
        CACHE_OLD_DISCOVERY: "true",
      });
      expect(config.newCluster).toEqual({ servers: [{ host: "new.example", port: 11211 }] });
      expect(config.oldCluster).toEqual({ configEndpoint: { host: "old.example", port: 11211 } });
    });

    it("ignores CACHE_OLD_DISCOVERY=true while no old endpoint is set", () => {
      const config = cacheConfigFromEnv({
        CACHE_NEW_ENDPOINT: "new.example:11211",
        CACHE_OLD_ENDPOINT: "",
        CACHE_OLD_DISCOVERY: "true",
      });
      expect(config.oldCluster).toBeUndefined();
    });

    it("refuses a list of servers as a configuration endpoint, naming the variable", () => {
      const error = envErrorOf({
        CACHE_NEW_ENDPOINT: "a.example:11211,b.example:11211",
        CACHE_NEW_DISCOVERY: "true",
      });
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toMatch(
        /^lambda-memcache: environment variable CACHE_NEW_ENDPOINT lists 2 servers, but CACHE_NEW_DISCOVERY=true/,
      );
    });

    it.each(["yes", "1", "TRUE", "on"])("refuses CACHE_NEW_DISCOVERY=%s", (value) => {
      const error = envErrorOf({
        CACHE_NEW_ENDPOINT: "a.example:11211",
        CACHE_NEW_DISCOVERY: value,
      });
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toContain("CACHE_NEW_DISCOVERY");
      expect(error.message).toContain(JSON.stringify(value));
    });
  });

  describe("the cutover phase (CACHE_CUTOVER_PHASE)", () => {
    const both = {
      CACHE_NEW_ENDPOINT: "new.example:11211",
      CACHE_OLD_ENDPOINT: "old.example:11211",
    };

    it.each(["prepare", "fallback", "new", " new "])("takes %j with both endpoints", (phase) => {
      expect(cacheConfigFromEnv({ ...both, CACHE_CUTOVER_PHASE: phase }).phase).toBe(phase.trim());
    });

    it('takes "new" and "single" with the new endpoint only', () => {
      for (const phase of ["new", "single"]) {
        const config = cacheConfigFromEnv({
          CACHE_NEW_ENDPOINT: "a.example",
          CACHE_CUTOVER_PHASE: phase,
        });
        expect([config.phase, config.oldCluster]).toEqual([phase, undefined]);
      }
    });

    it.each(["prepare", "fallback"])(
      'stops at init when "%s" has no old endpoint, naming what to set',
      (phase) => {
        const error = envErrorOf({ CACHE_NEW_ENDPOINT: "a.example", CACHE_CUTOVER_PHASE: phase });
        expect(error).toBeInstanceOf(TypeError);
        expect(error.message).toBe(
          `lambda-memcache: environment variable CACHE_CUTOVER_PHASE is "${phase}", which reads the old cluster, but CACHE_OLD_ENDPOINT is not set: give the old cluster, or run phase "new" (or "single")`,
        );
      },
    );

    it('stops at init when "single" is given with an old endpoint too', () => {
      const error = envErrorOf({ ...both, CACHE_CUTOVER_PHASE: "single" });
      expect(error.message).toMatch(
        /^lambda-memcache: environment variable CACHE_CUTOVER_PHASE is "single", which uses one cluster, but CACHE_OLD_ENDPOINT is set too/,
      );
    });

    it.each(["cutover", "Prepare", "fallback,new", "old"])(
      "refuses the unknown phase %j",
      (phase) => {
        const error = envErrorOf({ ...both, CACHE_CUTOVER_PHASE: phase });
        expect(error).toBeInstanceOf(TypeError);
        expect(error.message).toBe(
          `lambda-memcache: environment variable CACHE_CUTOVER_PHASE must be one of "single", "prepare", "fallback", "new", got ${JSON.stringify(phase)}`,
        );
      },
    );

    it("reads CACHE_LEASE_MODE and CACHE_TOMBSTONE_SECONDS, and refuses bad ones", () => {
      const config = cacheConfigFromEnv({
        ...both,
        CACHE_LEASE_MODE: "lock",
        CACHE_TOMBSTONE_SECONDS: "3600",
      });
      expect([config.leaseMode, config.tombstoneSeconds]).toEqual(["lock", 3600]);
      expect(envErrorOf({ ...both, CACHE_LEASE_MODE: "locks" }).message).toContain(
        'CACHE_LEASE_MODE must be one of "auto", "meta", "lock", "off", got "locks"',
      );
      expect(envErrorOf({ ...both, CACHE_TOMBSTONE_SECONDS: "1h" }).message).toContain(
        'CACHE_TOMBSTONE_SECONDS must be a whole number from 0 to 2147483647, got "1h"',
      );
    });
  });

  describe("client timeouts", () => {
    it("reads CACHE_TIMEOUT_MS and CACHE_CONNECT_TIMEOUT_MS", () => {
      const config = cacheConfigFromEnv({
        CACHE_NEW_ENDPOINT: "a.example",
        CACHE_TIMEOUT_MS: "50",
        CACHE_CONNECT_TIMEOUT_MS: " 300 ",
      });
      expect([config.timeoutMs, config.connectTimeoutMs]).toEqual([50, 300]);
    });

    it.each([
      ["CACHE_TIMEOUT_MS", "100ms"],
      ["CACHE_TIMEOUT_MS", "NaN"],
      ["CACHE_TIMEOUT_MS", "-1"],
      ["CACHE_TIMEOUT_MS", "0"],
      ["CACHE_TIMEOUT_MS", "1e3"],
      ["CACHE_TIMEOUT_MS", "1.5"],
      ["CACHE_TIMEOUT_MS", "Infinity"],
      ["CACHE_TIMEOUT_MS", "99999999999"],
      ["CACHE_CONNECT_TIMEOUT_MS", "0.2s"],
    ])("refuses %s=%s with a TypeError naming the variable", (name, value) => {
      const error = envErrorOf({ CACHE_NEW_ENDPOINT: "a.example", [name]: value });
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toBe(
        `lambda-memcache: environment variable ${name} must be a whole number from 1 to 2147483647, got ${JSON.stringify(value)}`,
      );
    });
  });

  it.each([
    ["unset", undefined],
    ["empty", ""],
    ["none", "none"],
  ])("throws a TypeError naming CACHE_NEW_ENDPOINT when it is %s", (_label, value) => {
    const error = envErrorOf({ CACHE_NEW_ENDPOINT: value, CACHE_OLD_ENDPOINT: "10.0.0.9:11211" });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(/^lambda-memcache: environment variable CACHE_NEW_ENDPOINT/);
  });

  describe.each(["CACHE_NEW_ENDPOINT", "CACHE_OLD_ENDPOINT"])("a malformed %s", (variable) => {
    it.each([
      ["host:port:x", "cache.local:11211:x"],
      ["a port over 65535", "cache.local:99999"],
      ["port 0", "cache.local:0"],
      ["a space inside the host", "a b:1"],
      ["an unbracketed IPv6 address", "::1:11211"],
      ["a bracketed non-address", "[::zz]:11211"],
      ["a non-numeric port", "cache.local:abc"],
      ["an empty entry in a list", "10.0.0.1:11211,,10.0.0.2:11211"],
    ])("throws a TypeError naming the variable for %s", (_label, value) => {
      const env =
        variable === "CACHE_NEW_ENDPOINT"
          ? { CACHE_NEW_ENDPOINT: value }
          : { CACHE_NEW_ENDPOINT: "10.0.0.1:11211", CACHE_OLD_ENDPOINT: value };
      const error = envErrorOf(env);
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toMatch(
        new RegExp(`^lambda-memcache: environment variable ${variable} `),
      );
    });
  });

  it("names the offending entry of a list in the error", () => {
    const error = envErrorOf({ CACHE_NEW_ENDPOINT: "10.0.0.1:11211,cache.local:99999" });
    expect(error.message).toContain("cache.local:99999");
  });

  it.each([
    ["written the same way", "10.0.0.1:11211", "10.0.0.1:11211"],
    ["with and without the default port", "10.0.0.1:11211,10.0.0.2:11211", "10.0.0.2"],
    ["IPv6 with and without the default port", "[::1]:11211", "[::1]"],
    ["in different letter case", "Cache.Local:11211", "cache.local:11211"],
  ])("throws when both clusters share a server %s", (_label, next, old) => {
    const error = envErrorOf({ CACHE_NEW_ENDPOINT: next, CACHE_OLD_ENDPOINT: old });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(
      /^lambda-memcache: environment variable CACHE_OLD_ENDPOINT shares .* with CACHE_NEW_ENDPOINT/,
    );
  });

  it("throws when the old cluster's configuration endpoint is one of new's servers", () => {
    const error = envErrorOf({
      CACHE_NEW_ENDPOINT: "a.example:11211",
      CACHE_OLD_ENDPOINT: "a.example:11211",
      CACHE_OLD_DISCOVERY: "true",
    });
    expect(error.message).toContain("shares a.example:11211");
  });
});

describe("TLS and the kind of each cluster", () => {
  const both = { CACHE_NEW_ENDPOINT: "new.local:11211", CACHE_OLD_ENDPOINT: "old.local:11211" };
  let caDir: string;
  beforeAll(() => {
    caDir = mkdtempSync(path.join(os.tmpdir(), "config-ca-"));
    writeFileSync(
      path.join(caDir, "ca.pem"),
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    writeFileSync(path.join(caDir, "not-a-cert.txt"), "hello");
  });
  afterAll(() => rmSync(caDir, { recursive: true, force: true }));

  it.each([
    ["false", "false", false, false],
    ["true", "false", true, false],
    ["false", "true", false, true],
    ["true", "true", true, true],
    ["", "", false, false],
  ])("CACHE_NEW_TLS=%j, CACHE_OLD_TLS=%j: new %s, old %s", (newTls, oldTls, newOn, oldOn) => {
    const config = cacheConfigFromEnv({ ...both, CACHE_NEW_TLS: newTls, CACHE_OLD_TLS: oldTls });
    expect(config.newConnection).toEqual({ tls: newOn, elastiCacheServerless: false });
    expect(config.oldConnection).toEqual({ tls: oldOn, elastiCacheServerless: false });
  });

  it("makes a serverless new cache speak TLS, with no Auto Discovery", () => {
    const config = cacheConfigFromEnv({ ...both, CACHE_NEW_KIND: "serverless" });
    expect(config.newConnection).toEqual({ tls: true, elastiCacheServerless: true });
    expect(config.oldConnection).toEqual({ tls: false, elastiCacheServerless: false });
  });

  it("ignores the old cluster's TLS and kind outside a cutover", () => {
    const config = cacheConfigFromEnv({
      CACHE_NEW_ENDPOINT: "new.local:11211",
      CACHE_OLD_TLS: "true",
      CACHE_OLD_KIND: "serverless",
    });
    expect(config.oldConnection).toBeUndefined();
  });

  it("trusts the CAs of CACHE_TLS_CA_FILE on every TLS cluster, read once", () => {
    const caFile = path.join(caDir, "ca.pem");
    const config = cacheConfigFromEnv({
      ...both,
      CACHE_NEW_TLS: "true",
      CACHE_TLS_CA_FILE: caFile,
    });
    expect(config.newConnection.tls).toEqual({ ca: readFileSync(caFile, "utf8") });
    expect(config.oldConnection?.tls).toBe(false);
  });

  it.each([
    [{ CACHE_NEW_TLS: "yes" }, "CACHE_NEW_TLS", /must be one of "true", "false", got "yes"/],
    [{ CACHE_OLD_TLS: "1" }, "CACHE_OLD_TLS", /must be one of "true", "false", got "1"/],
    [{ CACHE_NEW_KIND: "Serverless" }, "CACHE_NEW_KIND", /must be one of "nodes", "serverless"/],
    [
      { CACHE_NEW_KIND: "serverless", CACHE_NEW_TLS: "false" },
      "CACHE_NEW_TLS",
      /ElastiCache Serverless takes TLS connections only/,
    ],
    [
      { CACHE_NEW_KIND: "serverless", CACHE_NEW_DISCOVERY: "true" },
      "CACHE_NEW_DISCOVERY",
      /has no Auto Discovery/,
    ],
    [
      { CACHE_OLD_KIND: "serverless", CACHE_OLD_TLS: "false" },
      "CACHE_OLD_TLS",
      /TLS connections only/,
    ],
    [
      { CACHE_TLS_CA_FILE: "/no/such/ca.pem", CACHE_NEW_TLS: "true" },
      "CACHE_TLS_CA_FILE",
      /cannot be read \(ENOENT\)/,
    ],
    [{ CACHE_TLS_CA_FILE: "ca.pem" }, "CACHE_TLS_CA_FILE", /no cluster speaks TLS/],
  ] as const)("refuses %j, naming %s", (extra, name, complaint) => {
    const env: Record<string, string> = { ...both, ...extra };
    if (env.CACHE_TLS_CA_FILE === "ca.pem") env.CACHE_TLS_CA_FILE = path.join(caDir, "ca.pem");
    const error = envErrorOf(env);
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(new RegExp(`^lambda-memcache: environment variable ${name} `));
    expect(error.message).toMatch(complaint);
  });

  it("refuses a CA file with no PEM certificate in it", () => {
    const error = envErrorOf({
      ...both,
      CACHE_NEW_TLS: "true",
      CACHE_TLS_CA_FILE: path.join(caDir, "not-a-cert.txt"),
    });
    expect(error.message).toMatch(/CACHE_TLS_CA_FILE names a file with no PEM certificate/);
  });
});

describe("strict single-value parsers", () => {
  const range = { fallback: 300, min: 0, max: 86_400 };

  it("integerFromEnv takes digits only, within range, and the fallback when unset or empty", () => {
    expect(integerFromEnv({ PRODUCT_TTL_SECONDS: "60" }, "PRODUCT_TTL_SECONDS", range)).toBe(60);
    expect(integerFromEnv({ PRODUCT_TTL_SECONDS: "0" }, "PRODUCT_TTL_SECONDS", range)).toBe(0);
    expect(integerFromEnv({}, "PRODUCT_TTL_SECONDS", range)).toBe(300);
    expect(integerFromEnv({ PRODUCT_TTL_SECONDS: "" }, "PRODUCT_TTL_SECONDS", range)).toBe(300);
    for (const bad of ["5m", "-1", "86401", "0x10", "1_000", "6O"]) {
      const error = envErrorOf({ PRODUCT_TTL_SECONDS: bad }, (env) =>
        integerFromEnv(env, "PRODUCT_TTL_SECONDS", range),
      );
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toBe(
        `lambda-memcache: environment variable PRODUCT_TTL_SECONDS must be a whole number from 0 to 86400, got ${JSON.stringify(bad)}`,
      );
    }
  });

  it("booleanFromEnv takes true or false only", () => {
    expect(booleanFromEnv({ FLAG: "true" }, "FLAG", false)).toBe(true);
    expect(booleanFromEnv({ FLAG: "false" }, "FLAG", true)).toBe(false);
    expect(booleanFromEnv({}, "FLAG", true)).toBe(true);
    expect(envErrorOf({ FLAG: "True" }, (env) => booleanFromEnv(env, "FLAG", false)).message).toBe(
      'lambda-memcache: environment variable FLAG must be one of "true", "false", got "True"',
    );
  });

  it("choiceFromEnv takes one of the choices only", () => {
    expect(choiceFromEnv({ MODE: "off" }, "MODE", ["on", "off"], "on")).toBe("off");
    expect(
      envErrorOf({ MODE: "0" }, (env) => choiceFromEnv(env, "MODE", ["on", "off"], "on")),
    ).toBeInstanceOf(TypeError);
  });

  it("urlFromEnv takes an http(s) URL only", () => {
    expect(urlFromEnv({ URL_VAR: "https://api.example.com/v1" }, "URL_VAR", "http://x").href).toBe(
      "https://api.example.com/v1",
    );
    expect(urlFromEnv({}, "URL_VAR", "http://127.0.0.1:4000").port).toBe("4000");
    for (const bad of ["api.example.com", "ftp://api.example.com", "http://"]) {
      const error = envErrorOf({ URL_VAR: bad }, (env) => urlFromEnv(env, "URL_VAR", "http://x"));
      expect(error.message).toMatch(
        /^lambda-memcache: environment variable URL_VAR must be an http/,
      );
    }
  });
});
