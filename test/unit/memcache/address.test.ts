// Node addresses (lib/memcache/address.ts): parsed once from whatever the caller wrote, checked
// when given as objects, formatted back in the form parseAddress reads.

import { describe, expect, it } from "vitest";
import {
  checkAddress,
  formatAddress,
  parseAddress,
  sameAddress,
  toAddress,
  toAddressList,
} from "../../../lib/memcache/address.ts";
import { MemcacheIllegalInputError } from "../../../lib/memcache/errors.ts";
import { thrownBy } from "../../helpers/client.ts";

describe("parseAddress", () => {
  it.each([
    ["10.0.0.5:11300", { host: "10.0.0.5", port: 11300 }],
    ["cache.local", { host: "cache.local", port: 11211 }],
    [" cache.local:1 ", { host: "cache.local", port: 1 }],
    ["[::1]:11212", { host: "::1", port: 11212 }],
    ["[fe80::1]", { host: "fe80::1", port: 11211 }],
    [
      "my-cluster.abc123.cfg.use1.cache.amazonaws.com:11211",
      {
        host: "my-cluster.abc123.cfg.use1.cache.amazonaws.com",
        port: 11211,
      },
    ],
  ])("parses %j", (text, address) => {
    expect(parseAddress(text)).toEqual(address);
  });

  it.each([
    "",
    "cache.local:0",
    "cache.local:65536",
    "cache.local:abc",
    "cache.local:11211:x",
    "::1:11211",
    "[::zz]:11211",
    "[10.0.0.1]:11211",
    "a b:1",
  ])("refuses %j with MemcacheIllegalInputError quoting it", (text) => {
    const error = thrownBy(() => parseAddress(text));
    expect(error).toBeInstanceOf(MemcacheIllegalInputError);
    expect((error as Error).message).toContain(`"${text.trim()}"`);
  });
});

describe("formatAddress", () => {
  it("writes host:port, brackets around IPv6, and reads back the same", () => {
    for (const text of ["10.0.0.5:11211", "cache.local:11300", "[::1]:11211"]) {
      expect(formatAddress(parseAddress(text))).toBe(text);
    }
  });
});

describe("toAddressList", () => {
  it("takes a comma-separated string or an array of strings and objects", () => {
    expect(toAddressList("a:1, b")).toEqual([
      { host: "a", port: 1 },
      { host: "b", port: 11211 },
    ]);
    expect(toAddressList(["a:1", { host: "b", port: 2, ip: "10.0.0.2" }])).toEqual([
      { host: "a", port: 1 },
      { host: "b", port: 2, ip: "10.0.0.2" },
    ]);
  });

  it("refuses an empty entry instead of skipping it", () => {
    expect(() => toAddressList("a:1,,b:2")).toThrow(MemcacheIllegalInputError);
  });
});

describe("checkAddress / toAddress", () => {
  it.each([
    ["no host", { host: "", port: 1 }],
    ["a port out of range", { host: "a", port: 70000 }],
    ["a fractional port", { host: "a", port: 1.5 }],
    ["an ip that is not one", { host: "a", port: 1, ip: "not-an-ip" }],
    ["an unknown field", { host: "a", port: 1, adress: "10.0.0.1" }],
  ])("refuses an object with %s", (_label, address) => {
    expect(() => checkAddress(address as never)).toThrow(MemcacheIllegalInputError);
  });

  it("refuses what is neither text nor an object", () => {
    expect(() => toAddress(11211 as never)).toThrow(MemcacheIllegalInputError);
  });
});

describe("sameAddress", () => {
  it("compares host names without letter case, and ports", () => {
    expect(sameAddress(parseAddress("Cache.Local"), parseAddress("cache.local:11211"))).toBe(true);
    expect(sameAddress(parseAddress("cache.local:1"), parseAddress("cache.local:2"))).toBe(false);
  });
});
