// The declared public API: three entries (lib/index.ts, lib/cache/index.ts,
// lib/middleware/index.ts), each exporting exactly the names below. The reference app in
// functions/ imports lib only through them, so it proves they are enough for a real service.
// A new export is a decision: add it here on purpose.

import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import * as cacheEntry from "../../lib/cache/index.ts";
import * as rootEntry from "../../lib/index.ts";
import * as middlewareEntry from "../../lib/middleware/index.ts";
import { repoRoot } from "../../tools/consumer.ts";

const entries = ["lib/index.ts", "lib/cache/index.ts", "lib/middleware/index.ts"];

/** Module specifiers in `source`: static imports and re-exports, bare imports, import(). */
function specifiers(source: string): string[] {
  const patterns = [
    /\b(?:import|export)\s[^"';]*?\sfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((m) => m[1]!));
}

/** The lib files `file` (a path under the repo) imports other than through an entry. */
function deepLibImports(file: string, source: string): string[] {
  return specifiers(source)
    .filter((specifier) => specifier.startsWith("."))
    .map((specifier) =>
      path.relative(repoRoot, path.resolve(repoRoot, path.dirname(file), specifier)),
    )
    .filter((target) => target.startsWith(`lib${path.sep}`) && !entries.includes(target));
}

async function sourceFiles(dir: string): Promise<string[]> {
  const found = await readdir(path.join(repoRoot, dir), { recursive: true, withFileTypes: true });
  return found
    .filter((entry) => entry.isFile() && /\.(ts|mts|js|mjs)$/.test(entry.name))
    .map((entry) => path.relative(repoRoot, path.join(entry.parentPath, entry.name)));
}

describe("functions/ uses lib only through the package entries", () => {
  it("has no file that imports another lib path", async () => {
    const files = await sourceFiles("functions");
    expect(files.length).toBeGreaterThan(0);
    const offenders: string[] = [];
    for (const file of files) {
      const source = await readFile(path.join(repoRoot, file), "utf8");
      for (const target of deepLibImports(file, source)) offenders.push(`${file} -> ${target}`);
    }
    expect(offenders).toEqual([]);
  });

  it("catches deep imports in every form (the check itself)", () => {
    const source = [
      'import { MemcacheClient } from "../lib/memcache/client.ts";',
      'import type { CacheEvent } from "../../lib/cache/cacheAside.ts";',
      'export { safeKey } from "../lib/memcache/keys.ts";',
      'const lazy = await import("../lib/middleware/httpCache.ts");',
      'import "../lib/cache/store.ts";',
      'import {\n  CacheAside,\n  clientStore,\n} from "../lib/cache/index.ts";',
      'import { safeKey } from "../lib/index.ts";',
      'import middy from "@middy/core";',
    ].join("\n");
    expect(deepLibImports("functions/x.ts", source)).toEqual([
      path.join("lib", "memcache", "client.ts"),
      path.join("lib", "memcache", "keys.ts"),
      path.join("lib", "cache", "store.ts"),
      path.join("lib", "middleware", "httpCache.ts"),
    ]);
    expect(deepLibImports("functions/shared/x.ts", source)).toEqual([
      path.join("lib", "cache", "cacheAside.ts"),
    ]);
  });
});

describe("the entries export exactly the public API", () => {
  it("lambda-memcache: the client, addresses, diagnostics, every error, keys and serde", () => {
    expect(Object.keys(rootEntry).sort()).toEqual([
      "COMMAND_CHANNEL",
      "FLAG_BYTES",
      "FLAG_CHECKSUM",
      "FLAG_INTEGER",
      "FLAG_JSON",
      "FLAG_LONG",
      "FLAG_PICKLE",
      "FLAG_STRING",
      "FLAG_ZLIB",
      "MAX_KEY_BYTES",
      "MemcacheCasConflictError",
      "MemcacheClient",
      "MemcacheClientError",
      "MemcacheConnectionClosedError",
      "MemcacheCounterValueError",
      "MemcacheDiscoveryError",
      "MemcacheError",
      "MemcacheIllegalInputError",
      "MemcacheIncompleteInvalidationError",
      "MemcacheNoNodesError",
      "MemcacheNodeDeadError",
      "MemcacheProtocolError",
      "MemcacheServerError",
      "MemcacheTimeoutError",
      "MemcacheUnknownCommandError",
      "assertValidKey",
      "defaultSerde",
      "formatAddress",
      "otelAttributes",
      "parseAddress",
      "safeKey",
      "withChecksum",
    ]);
  });

  it("lambda-memcache/cache: cache-aside, stores, counters, cutover, config and env parsers, HTTP cache, metrics", () => {
    expect(Object.keys(cacheEntry).sort()).toEqual([
      "CUTOVER_PHASES",
      "CacheAside",
      "FallbackStore",
      "HttpCache",
      "MOVED_FLAGS",
      "PLACEHOLDER_FLAGS",
      "TOMBSTONE_FLAGS",
      "booleanFromEnv",
      "cacheConfigFromEnv",
      "cacheEventMetrics",
      "cacheForPhase",
      "casIncrement",
      "casUpdate",
      "choiceFromEnv",
      "clientStore",
      "clusterAddresses",
      "defaultIsCacheableRequest",
      "defaultIsCacheableResponse",
      "envError",
      "increment",
      "integerFromEnv",
      "movingCounters",
      "msFromEnv",
      "prepareCounters",
      "readCounter",
      "secondsFromEnv",
      "tombstoneSecondsFor",
      "urlFromEnv",
      "withHttpCache",
    ]);
  });

  it("lambda-memcache/middleware: the Middy middleware", () => {
    expect(Object.keys(middlewareEntry).sort()).toEqual(["httpCacheMiddleware"]);
  });

  it("maps each package.json export to the build of an entry file", async () => {
    const manifest = JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as {
      exports: Record<string, string | { types: string; default: string }>;
    };
    const built = Object.entries(manifest.exports)
      .filter(([name]) => name !== "./package.json")
      .map(([name, target]) => {
        if (typeof target === "string") throw new Error(`${name}: no types condition`);
        const source = target.default.replace(/^\.\/dist\//, "lib/").replace(/\.js$/, ".ts");
        expect(target.types, name).toBe(target.default.replace(/\.js$/, ".d.ts"));
        return [name, source];
      });
    expect(built).toEqual([
      [".", "lib/index.ts"],
      ["./cache", "lib/cache/index.ts"],
      ["./middleware", "lib/middleware/index.ts"],
    ]);
  });
});
