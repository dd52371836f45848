// HttpCache.keyFor: the key of a cacheable request is built from its parts (method, path, query
// pairs, vary header values) as JSON before safeKey, so two requests that differ in any of them
// never share a cache entry, in REST (v1) and HTTP API (v2) events alike — including the
// requests that shared one when the parts were joined as text.

import type { APIGatewayProxyEvent, APIGatewayProxyEventV2 } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { CacheAside } from "../../../lib/cache/cacheAside.ts";
import { HttpCache, type HttpEvent } from "../../../lib/cache/httpCache.ts";
import { clientStore } from "../../../lib/cache/store.ts";
import { MemcacheClient } from "../../../lib/memcache/client.ts";

// Nothing connects: keyFor never sends a command.
const cache = new CacheAside(clientStore(new MemcacheClient({ servers: "127.0.0.1:1" })));

/** A REST (v1) GET with decoded query values, as API Gateway hands them to the function. */
function v1(
  path: string,
  query: Record<string, string[]> = {},
  headers: Record<string, string[]> = {},
  method = "GET",
): HttpEvent {
  const last = (values: Record<string, string[]>) =>
    Object.fromEntries(Object.entries(values).map(([name, list]) => [name, list.at(-1)!]));
  return {
    httpMethod: method,
    path,
    queryStringParameters: Object.keys(query).length === 0 ? null : last(query),
    multiValueQueryStringParameters: Object.keys(query).length === 0 ? null : query,
    headers: last(headers),
    multiValueHeaders: headers,
  } as unknown as APIGatewayProxyEvent;
}

/** An HTTP API (v2) GET: the raw query string as sent. */
function v2(
  rawPath: string,
  rawQueryString = "",
  headers: Record<string, string> = {},
  method = "GET",
): HttpEvent {
  return {
    rawPath,
    rawQueryString,
    headers,
    requestContext: { http: { method } },
  } as unknown as APIGatewayProxyEventV2;
}

const keyOf = (event: HttpEvent, varyHeaders: string[] = []) =>
  new HttpCache({ cache, varyHeaders }).keyFor(event);

describe("HttpCache keys that cannot collide", () => {
  it("keeps a value holding & and = apart from two parameters (REST, decoded values)", () => {
    // GET /search?q=a%26zone%3Dadmin   and   GET /search?q=a&zone=admin
    const one = keyOf(v1("/search", { q: ["a&zone=admin"] }));
    const two = keyOf(v1("/search", { q: ["a"], zone: ["admin"] }));
    expect(one).not.toBe(two);
  });

  it("keeps a path holding ? apart from a query (REST: path /a?b=1 vs path /a with b=1?)", () => {
    expect(keyOf(v1("/a?b=1"))).not.toBe(keyOf(v1("/a", { b: ["1?"] })));
    expect(keyOf(v1("/a?b=1"))).not.toBe(keyOf(v1("/a", { b: ["1"] })));
  });

  it("keeps an encoded & or = apart from a separator (HTTP API, raw query string)", () => {
    expect(keyOf(v2("/search", "q=a%26zone%3Dadmin"))).not.toBe(
      keyOf(v2("/search", "q=a&zone=admin")),
    );
    expect(keyOf(v2("/a%3Fb=1"))).not.toBe(keyOf(v2("/a", "b=1")));
  });

  it("keeps a vary header value holding a newline apart from two headers", () => {
    const vary = ["x-a", "x-b"];
    const forged = v1("/p", {}, { "x-a": ["1\nx-b: 2"] });
    const honest = v1("/p", {}, { "x-a": ["1"], "x-b": ["2"] });
    expect(keyOf(forged, vary)).not.toBe(keyOf(honest, vary));
    expect(keyOf(v2("/p", "", { "x-a": "1\nx-b: 2" }), vary)).not.toBe(
      keyOf(v2("/p", "", { "x-a": "1", "x-b": "2" }), vary),
    );
  });

  it("tells an absent value from an empty one: a parameter, a header", () => {
    expect(keyOf(v2("/p", "a"))).not.toBe(keyOf(v2("/p", "a=")));
    expect(keyOf(v2("/p", "", {}), ["x-a"])).not.toBe(keyOf(v2("/p", "", { "x-a": "" }), ["x-a"]));
  });

  it("tells every value of a repeated REST header apart (not only the last)", () => {
    const vary = ["accept-language"];
    expect(keyOf(v1("/p", {}, { "Accept-Language": ["de", "en"] }), vary)).not.toBe(
      keyOf(v1("/p", {}, { "Accept-Language": ["fr", "en"] }), vary),
    );
  });

  it("tells methods, paths, names, values and the order of a repeated name's values apart", () => {
    const keys = [
      keyOf(v2("/p", "a=1")),
      keyOf(v2("/p", "a=1", {}, "HEAD")),
      keyOf(v2("/q", "a=1")),
      keyOf(v2("/p", "b=1")),
      keyOf(v2("/p", "a=2")),
      keyOf(v2("/p", "a=1&a=2")),
      keyOf(v2("/p", "a=2&a=1")),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    expect(keyOf(v1("/p", { a: ["1", "2"] }))).not.toBe(keyOf(v1("/p", { a: ["2", "1"] })));
  });

  it("gives the same request the same key, whatever the order of different names", () => {
    expect(keyOf(v2("/p", "a=1&b=2"))).toBe(keyOf(v2("/p", "b=2&a=1")));
    expect(keyOf(v1("/p", { a: ["1"], b: ["2"] }))).toBe(keyOf(v1("/p", { b: ["2"], a: ["1"] })));
    expect(keyOf(v2("/p", "a=1"))).toMatch(/^http:#[A-Za-z0-9_-]{43}$/); // hashed: no raw text
  });
});
