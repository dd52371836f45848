// MemcacheClient's options, checked when the client is built (nothing connects here: sockets
// open on the first command): each bad option is a TypeError naming it, servers and
// configEndpoint are parsed once into NodeAddress values, and Auto Discovery is on only with
// configEndpoint — never guessed from a host name.

import { describe, expect, it } from "vitest";
import { clientDefaults, MemcacheClient } from "../../../lib/memcache/client.ts";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";
import { thrownBy } from "../../helpers/client.ts";

function refusal(options: Record<string, unknown>): string {
  const error = thrownBy(() => new MemcacheClient(options));
  expect(error).toBeInstanceOf(TypeError);
  return (error as Error).message;
}

describe("MemcacheClient options", () => {
  it.each([
    ["timeoutMs", Number("100ms")],
    ["timeoutMs", -1],
    ["timeoutMs", 0],
    ["timeoutMs", Number.POSITIVE_INFINITY],
    ["timeoutMs", "100"],
    ["connectTimeoutMs", Number.NaN],
    ["connectTimeoutMs", 2 ** 31],
    ["keepAliveDelayMs", -5],
    ["failuresBeforeDead", 0],
    ["failuresBeforeDead", 1.5],
    ["deadRetryMs", Number.NaN],
    ["staleSocketMs", Number.POSITIVE_INFINITY],
    ["maxLineBytes", 10],
    ["maxReplyValueBytes", 0],
    ["maxValueBytes", -1],
    ["maxValueBytes", 2 ** 40],
    ["refreshIntervalMs", 0],
    ["checksums", "yes"],
    ["tls", "on"],
    ["serde", { encode: () => undefined }],
    ["servers", 11211],
    ["configEndpoint", 11211],
    ["elastiCacheServerless", "yes"],
  ])("refuses %s: %s with a TypeError naming it", (name, value) => {
    const options =
      name === "configEndpoint"
        ? { configEndpoint: value }
        : { servers: "127.0.0.1:1", [name]: value };
    expect(refusal(options)).toMatch(
      new RegExp(`^lambda-memcache: MemcacheClient option "${name}" must be `),
    );
  });

  it("refuses a typo with a suggestion", () => {
    expect(refusal({ servers: "127.0.0.1:1", tmeoutMs: 50 })).toBe(
      'lambda-memcache: MemcacheClient option "tmeoutMs" is not an option; did you mean "timeoutMs"?',
    );
  });

  it("refuses options without servers or configEndpoint, and with both", () => {
    expect(refusal({ timeoutMs: 50 })).toMatch(
      /^lambda-memcache: MemcacheClient option "servers" is required: give servers/,
    );
    expect(refusal({ servers: "a:1", configEndpoint: "b:1" })).toMatch(
      /^lambda-memcache: MemcacheClient option "configEndpoint" cannot be given together with servers/,
    );
  });

  it("names the entry of servers that is not an address", () => {
    expect(refusal({ servers: ["a:1", "b:99999"] })).toBe(
      'lambda-memcache: MemcacheClient option "servers" has "b:99999" is not host:port (examples: "127.0.0.1:11211", "[::1]:11211", "cache.local")',
    );
  });

  it("takes the documented defaults", () => {
    expect(clientDefaults).toMatchObject({
      timeoutMs: 100,
      connectTimeoutMs: 200,
      failuresBeforeDead: 2,
      deadRetryMs: 2_000,
      staleSocketMs: 1_000,
      maxValueBytes: 1024 * 1024,
      maxReplyValueBytes: 128 * 1024 * 1024,
      refreshIntervalMs: 60_000,
      checksums: false,
      elastiCacheServerless: false,
    });
    const client = new MemcacheClient({ servers: "127.0.0.1:1" });
    expect(client.nodes[0]!.options.timeoutMs).toBe(100);
  });
});

describe("elastiCacheServerless", () => {
  it("requires TLS: ElastiCache Serverless takes TLS connections only", () => {
    expect(refusal({ servers: "cache.example:11211", elastiCacheServerless: true })).toMatch(
      /^lambda-memcache: MemcacheClient option "tls" must be true or node:tls options when elastiCacheServerless is true/,
    );
  });

  it("refuses configEndpoint: the service has no Auto Discovery", () => {
    expect(
      refusal({ configEndpoint: "cache.example:11211", elastiCacheServerless: true, tls: true }),
    ).toMatch(/^lambda-memcache: MemcacheClient option "configEndpoint" cannot be used with/);
  });

  it("refuses what the service refuses before opening a connection", async () => {
    const client = new MemcacheClient({
      servers: "cache.example:11211",
      elastiCacheServerless: true,
      tls: true,
    });
    for (const call of [
      () => client.stats("items"),
      () => client.flushAll(1),
      () => client.configGet("cluster"),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(MemcacheIllegalInputError);
    }
    expect(client.nodes[0]!.isOpen).toBe(false);
  });
});

describe("servers, parsed once", () => {
  it("takes strings and NodeAddress objects alike", () => {
    const client = new MemcacheClient({
      servers: ["a.example:11300", { host: "b.example", port: 11211, ip: "10.0.0.2" }, "[::1]"],
    });
    expect(client.nodes.map((n) => [n.endpoint, n.address])).toEqual([
      ["a.example:11300", "a.example"],
      ["b.example:11211", "10.0.0.2"],
      ["[::1]:11211", "::1"],
    ]);
    expect(client.discovery).toBeUndefined();
  });

  it("uses a host with .cfg. in its name as a plain node: discovery is only on with configEndpoint", () => {
    const endpoint = "my-cluster.abc123.cfg.use1.cache.amazonaws.com:11211";
    const plain = new MemcacheClient({ servers: endpoint });
    expect(plain.discovery).toBeUndefined();
    expect(plain.nodes.map((n) => n.endpoint)).toEqual([endpoint]);

    const discovering = new MemcacheClient({ configEndpoint: endpoint });
    expect(discovering.discovery).toBeDefined();
    expect(discovering.nodes).toEqual([]); // until Auto Discovery answers
  });
});
