// The import direction of the whole tree, checked over every .ts file: the library stands alone
// (functions -> lib/middleware -> lib/cache -> lib/memcache), the shared tooling in tools/ needs
// only lib/, nothing reaches up into test/ or bench/ from outside them, and infra/ reads of the
// functions only their metric vocabulary (functions/shared/emf.ts: the dashboard and the live
// view count what the functions emit).

import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
/** Not the project's sources: dependencies, build output, and every dot-folder (.git, .tmp, ...). */
const skippedDirs = new Set(["node_modules", "dist", "coverage"]);

/**
 * What each part of the tree may import (besides node: built-ins and npm packages), most specific
 * part first. A part is a folder (with its subfolders, unless they are listed themselves), or "."
 * for files at the root.
 */
const allowed: ReadonlyArray<readonly [part: string, mayImport: readonly string[]]> = [
  ["lib/memcache", ["lib/memcache"]],
  ["lib/cache", ["lib/cache", "lib/memcache"]],
  ["lib/middleware", ["lib/middleware", "lib/cache", "lib/memcache"]],
  ["lib", ["lib"]],
  ["tools", ["tools", "lib"]],
  ["functions/shared/emf.ts", ["lib"]],
  ["functions", ["functions", "functions/shared/emf.ts", "lib"]],
  ["infra", ["infra", "tools", "lib", "functions/shared/emf.ts"]],
  ["scripts", ["scripts", "tools", "lib"]],
  ["bench", ["bench", "tools", "lib", "infra", "functions"]],
  ["test", ["test", "tools", "lib", "infra", "functions", "scripts"]],
  [".", ["tools", "lib"]],
];

interface Import {
  /** The importing file, relative to the root ("tools/fault-proxy.ts"). */
  file: string;
  /** The module specifier as written ("./stats.ts"). */
  specifier: string;
}

/** The part of the tree `file` (relative to the root) belongs to: the most specific one listed. */
function partOf(file: string): string {
  for (const [part] of allowed) {
    if (part !== "." && (file === part || file.startsWith(`${part}/`))) return part;
  }
  return ".";
}

/** Every import that breaks the direction, as "file -> target" lines. */
function violations(imports: readonly Import[]): string[] {
  const found: string[] = [];
  for (const { file, specifier } of imports) {
    if (!specifier.startsWith(".")) continue; // node: built-in or npm package
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    const from = partOf(file);
    const to = partOf(target);
    const mayImport = allowed.find(([part]) => part === from)![1];
    const ok = mayImport.some((part) => to === part || to.startsWith(`${part}/`));
    if (target.startsWith("..") || !ok) found.push(`${file} -> ${target}`);
  }
  return found;
}

/** Module specifiers of static imports, re-exports and dynamic import() calls in `source`. */
function specifiersIn(source: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;
  return [...source.matchAll(pattern)].map((match) => match[1]!);
}

function sourceFiles(dir = ""): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const relative = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (!skippedDirs.has(entry.name) && !entry.name.startsWith(".")) {
        files.push(...sourceFiles(relative));
      }
    } else if (/\.[cm]?ts$/.test(entry.name)) {
      files.push(relative);
    }
  }
  return files;
}

function importsOfTree(): Import[] {
  return sourceFiles().flatMap((file) =>
    specifiersIn(readFileSync(path.join(root, file), "utf8")).map((specifier) => ({
      file,
      specifier,
    })),
  );
}

describe("the import direction of the tree", () => {
  it("holds for every .ts file: lib stands alone, tools needs only lib, nothing imports test/ or bench/ from outside", () => {
    const imports = importsOfTree();
    // The scan itself must see the tree: imports that are known to exist are among those found.
    expect(imports).toContainEqual({ file: "tools/fault-proxy.ts", specifier: "./stats.ts" });
    expect(imports.length).toBeGreaterThan(200);
    expect(violations(imports)).toEqual([]);
  });

  it("reports an import from tools/ into test/, from scripts/ into bench/ and out of the root", () => {
    expect(
      violations([
        { file: "tools/fault-proxy.ts", specifier: "../test/helpers/app.ts" },
        { file: "scripts/fuzz.ts", specifier: "../bench/stats.ts" },
        { file: "infra/local/stack.ts", specifier: "../../test/helpers/client.ts" },
        { file: "lib/memcache/client.ts", specifier: "../cache/store.ts" },
        { file: "tools/x.ts", specifier: "../../elsewhere/y.ts" },
        { file: "bench/client.ts", specifier: "../tools/stats.ts" },
        { file: "test/e2e/app.test.ts", specifier: "../../infra/local/stack.ts" },
        { file: "infra/dashboard.ts", specifier: "../functions/shared/emf.ts" },
        { file: "infra/local/stack.ts", specifier: "../../functions/shared/cache.ts" },
        { file: "functions/shared/emf.ts", specifier: "./config.ts" },
      ]),
    ).toEqual([
      "tools/fault-proxy.ts -> test/helpers/app.ts",
      "scripts/fuzz.ts -> bench/stats.ts",
      "infra/local/stack.ts -> test/helpers/client.ts",
      "lib/memcache/client.ts -> lib/cache/store.ts",
      "tools/x.ts -> ../elsewhere/y.ts",
      "infra/local/stack.ts -> functions/shared/cache.ts",
      "functions/shared/emf.ts -> functions/shared/config.ts",
    ]);
  });

  it("finds static imports, type imports, re-exports and dynamic imports", () => {
    const source = [
      'import a from "./a.ts";',
      'import type { B } from "../b.ts";',
      'export * from "./c.ts";',
      "import {",
      "  d,",
      '} from "./d.ts";',
      'const e = await import("./e.ts");',
      'import "./f.ts";',
    ].join("\n");
    expect(specifiersIn(source)).toEqual([
      "./a.ts",
      "../b.ts",
      "./c.ts",
      "./d.ts",
      "./e.ts",
      "./f.ts",
    ]);
  });
});
