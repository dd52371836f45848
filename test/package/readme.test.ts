// Every TypeScript block in README.md compiles: each is written to a module of its own and
// typechecked with this repository's compiler options, the package names resolved to the
// source entries (`lambda-memcache` -> lib/index.ts, ...) through `paths`. A block may only
// import the package's entries and real third-party packages, never a path into lib/.

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, run } from "../../tools/consumer.ts";
import { type CodeBlock, importSpecifiers, readmeBlocks } from "../../tools/readme.ts";

const packageEntries = {
  "lambda-memcache": "lib/index.ts",
  "lambda-memcache/cache": "lib/cache/index.ts",
  "lambda-memcache/middleware": "lib/middleware/index.ts",
};

let blocks: CodeBlock[];
let dir: string;

beforeAll(async () => {
  blocks = await readmeBlocks();
  await mkdir(path.join(repoRoot, ".tmp"), { recursive: true });
  // Inside the repository, so @middy/core, aws-lambda and the rest resolve from its node_modules.
  dir = await mkdtemp(path.join(repoRoot, ".tmp", "readme-blocks-"));
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function fileFor(block: CodeBlock): string {
  return `readme-line-${block.line}.ts`;
}

describe("the TypeScript blocks of README.md", () => {
  it("include the complete handler of 'Use it in your service', in under 20 lines", () => {
    const handler = blocks.find((block) => block.heading === "Use it in your service");
    expect(handler).toBeDefined();
    expect(handler!.code).toContain("export const handler");
    expect(handler!.code.trimEnd().split("\n").length).toBeLessThan(20);
  });

  it("import the package by its entries, never a path into lib/", () => {
    const wrong = blocks.flatMap((block) =>
      importSpecifiers(block.code)
        .filter(
          (specifier) =>
            specifier.startsWith(".") ||
            specifier.startsWith("/") ||
            (specifier.startsWith("lambda-memcache") && !(specifier in packageEntries)),
        )
        .map((specifier) => `README.md:${block.line} imports ${specifier}`),
    );
    expect(wrong).toEqual([]);
  });

  it("all typecheck (strict, this repository's options)", async () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const relative = (file: string) => path.relative(dir, path.join(repoRoot, file));
    const tsconfig = {
      extends: relative("tsconfig.json"),
      compilerOptions: {
        noEmit: true,
        paths: Object.fromEntries(
          Object.entries(packageEntries).map(([name, file]) => [name, [relative(file)]]),
        ),
      },
      include: ["*.ts"],
    };
    await writeFile(path.join(dir, "tsconfig.json"), JSON.stringify(tsconfig, null, 2));
    for (const block of blocks) {
      // `export {}` keeps each block a module of its own, even one without imports.
      await writeFile(path.join(dir, fileFor(block)), `${block.code}\nexport {};\n`);
    }

    const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
    const { code, stdout, stderr } = await run(process.execPath, [tsc, "-p", dir], { cwd: dir });

    // Point each error at its README line: readme-line-<fence>.ts(<line>,<col>).
    const errors = `${stdout}${stderr}`.replace(
      /readme-line-(\d+)\.ts\((\d+),(\d+)\)/g,
      (_, fence: string, line: string, column: string) =>
        `README.md:${Number(fence) + Number(line)}:${column}`,
    );
    expect(errors.trim()).toBe("");
    expect(code).toBe(0);
  }, 60_000);
});
