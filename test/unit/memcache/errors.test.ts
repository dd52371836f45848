// The error classes (lib/memcache/errors.ts): all in one module, named Memcache<Something>Error,
// `name` equal to the class name also after a minifying bundle (esbuild renames classes), and a
// cache timeout told apart from the DOMException "TimeoutError" of AbortSignal.timeout().

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import * as errors from "../../../lib/memcache/errors.ts";

const classes = Object.entries(errors) as Array<[string, typeof errors.MemcacheError]>;

describe("the error classes", () => {
  it("are all named Memcache<Something>Error and derive from MemcacheError", () => {
    expect(classes.length).toBeGreaterThanOrEqual(13);
    for (const [exported, ErrorClass] of classes) {
      expect(exported).toMatch(/^Memcache[A-Za-z]*Error$/);
      expect(ErrorClass.name).toBe(exported);
      const error = new ErrorClass("message", { cause: "why" });
      expect(error).toBeInstanceOf(errors.MemcacheError);
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe(exported);
      expect(error.message).toBe("message");
      expect(error.cause).toBe("why");
      expect(String(error)).toBe(`${exported}: message`);
      expect(error.stack?.split("\n")[0]).toBe(`${exported}: message`);
    }
  });

  it("keep their names in a minified bundle", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "errors-bundle-"));
    try {
      const entry = path.join(dir, "entry.ts");
      const errorsPath = path.resolve("lib/memcache/errors.ts");
      // Only names of instances escape: the classes themselves stay internal, as in a function.
      await writeFile(
        entry,
        `import * as e from ${JSON.stringify(errorsPath)};\nexport const names = Object.values(e).map((C) => new C("m").name);\n`,
      );
      const outfile = path.join(dir, "bundle.mjs");
      await build({ entryPoints: [entry], bundle: true, minify: true, format: "esm", outfile });
      const { names } = (await import(pathToFileURL(outfile).href)) as { names: string[] };
      expect(names.sort()).toEqual(classes.map(([name]) => name).sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a cache timeout and an AbortSignal timeout", () => {
  it("are told apart by name and by class", async () => {
    const signal = AbortSignal.timeout(1);
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    const aborted = signal.reason as Error;
    const cache = new errors.MemcacheTimeoutError("memcached did not answer within 100 ms");

    expect(aborted.name).toBe("TimeoutError"); // DOMException, e.g. fetch to the origin
    expect(cache.name).toBe("MemcacheTimeoutError");
    expect(aborted).not.toBeInstanceOf(errors.MemcacheError);
    expect(cache).not.toBeInstanceOf(DOMException);
  });
});
