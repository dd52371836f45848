// The package as a team installs it: `npm pack`, a fresh ESM TypeScript project (NodeNext,
// strict, skipLibCheck off) that installs the tarball, typechecks, runs the README's handler and
// a plain-client script against a real memcached and a real HTTP origin, and bundles the handler
// with esbuild. See tools/consumer.ts for the project itself.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect } from "vitest";
import type { MemcacheClient } from "../../lib/index.ts";
import {
  bundleConsumerHandler,
  type Consumer,
  compileConsumer,
  consumerProgramFiles,
  createConsumer,
  packTarball,
  repoRoot,
  run,
  type Tarball,
} from "../../tools/consumer.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { listenOnLoopback } from "../../tools/ports.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";

const setupTimeoutMs = 240_000;

/**
 * A Node.js 20 on PATH outside any node_modules/.bin (the machine's own, where it has one): the
 * lowest release line `engines` admits, run against the plain-client script.
 */
async function systemNode20(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir === "" || dir.includes("node_modules")) continue;
    const candidate = path.join(dir, "node");
    const version = await run(candidate, ["--version"]).catch(() => undefined);
    if (version?.code === 0) return version.stdout.startsWith("v20.") ? candidate : undefined;
  }
  return undefined;
}
const node20 = await systemNode20();

let packDir: string;
let tarball: Tarball;
let consumer: Consumer;
let origin: Server;
let originUrl: string;
let originReads = 0;

beforeAll(async () => {
  packDir = await mkdtemp(path.join(tmpdir(), "lambda-memcache-pack-"));
  tarball = await packTarball(packDir);
  consumer = await createConsumer(tarball);
  // The origin the README's handler fetches from: counts its reads, so a hit is visible.
  origin = createServer((request, response) => {
    originReads++;
    const id = decodeURIComponent(request.url?.split("/").pop() ?? "");
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ id, name: `product ${id}` }));
  });
  originUrl = `http://${(await listenOnLoopback(origin)).endpoint}`;
}, setupTimeoutMs);

/** The fixtures' memcached of this file, and a client of it. */
let mc: MemcachedProcess;
let reader: MemcacheClient;
it.beforeAll(({ memcached, client }) => {
  mc = memcached;
  reader = client;
});

afterAll(async () => {
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve(undefined)));
  await consumer?.remove();
  if (packDir !== undefined) await rm(packDir, { recursive: true, force: true });
});

/**
 * The consumer's environment: only what a Lambda would have, not this repository's; the cache
 * timeouts patient, as for every test that checks what happens rather than how fast.
 */
function lambdaEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    CACHE_NEW_ENDPOINT: mc.endpoint,
    CACHE_TIMEOUT_MS: String(patientTimeoutMs),
    CACHE_CONNECT_TIMEOUT_MS: String(patientTimeoutMs),
    ORIGIN_URL: originUrl,
  };
}

function jsonLines(stdout: string): unknown[] {
  return stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

describe("the tarball", () => {
  it("holds the build, the README, the licence and package.json, and nothing else", () => {
    const outside = tarball.files.filter(
      (file) =>
        !file.startsWith("dist/") && !["README.md", "LICENSE", "package.json"].includes(file),
    );
    expect(outside).toEqual([]);
    expect(tarball.files).toEqual(expect.arrayContaining(["README.md", "LICENSE", "package.json"]));
    // dist/ holds the build of lib/ only: JavaScript and declarations, no test, bench or source.
    const notBuild = tarball.files.filter(
      (file) => file.startsWith("dist/") && !/^dist\/[\w/]+(\.d\.ts|\.js)$/.test(file),
    );
    expect(notBuild).toEqual([]);
    expect(tarball.files.filter((file) => /test|bench/i.test(file))).toEqual([]);
  });

  it("contains every file its exports map points at, types first", async () => {
    const manifest = JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as {
      exports: Record<string, string | Record<string, string>>;
    };
    for (const [entry, target] of Object.entries(manifest.exports)) {
      if (typeof target === "string") {
        expect(tarball.files, entry).toContain(target.replace(/^\.\//, ""));
        continue;
      }
      expect(Object.keys(target)[0], entry).toBe("types");
      for (const file of Object.values(target)) {
        expect(tarball.files, entry).toContain(file.replace(/^\.\//, ""));
      }
    }
  });
});

describe("a fresh ESM TypeScript service that installs the tarball", () => {
  it("typechecks under NodeNext, strict, without skipLibCheck", async () => {
    const { code, stdout, stderr } = await compileConsumer(consumer);
    expect(`${stdout}${stderr}`.trim()).toBe("");
    expect(code).toBe(0);
  }, 60_000);

  it("needs no Middy types for the client and cache entries (@middy/core is an optional peer)", async () => {
    const inPackage = (files: string[], part: string) =>
      files.filter((file) => file.includes(`/node_modules/${part}`)).length;
    const plain = await consumerProgramFiles(consumer, "src/client.ts");
    expect(inPackage(plain, "lambda-memcache/dist/cache/index.d.ts")).toBe(1);
    expect(inPackage(plain, "@middy/")).toBe(0);
    // The control: the handler, which uses the middleware, does load them.
    const withMiddy = await consumerProgramFiles(consumer, "src/handler.ts");
    expect(inPackage(withMiddy, "@middy/core/")).toBeGreaterThan(0);
  }, 60_000);

  it("runs the README's Middy handler: MISS, then HIT without calling the origin", async () => {
    const readsBefore = originReads;
    const result = await run(process.execPath, ["out/invoke.js"], {
      cwd: consumer.dir,
      env: lambdaEnv(),
      timeoutMs: 20_000,
    });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0); // and it exited by itself: the cache keeps no process alive
    expect(jsonLines(result.stdout)).toEqual([
      { id: "42", statusCode: 200, xCache: "MISS", body: '{"id":"42","name":"product 42"}' },
      { id: "42", statusCode: 200, xCache: "HIT", body: '{"id":"42","name":"product 42"}' },
      { id: "7", statusCode: 200, xCache: "MISS", body: '{"id":"7","name":"product 7"}' },
    ]);
    expect(originReads - readsBefore).toBe(2);
  }, 30_000);

  /** Runs the compiled plain-client script with `node`; its one JSON report line. */
  async function runClientScript(node: string): Promise<Record<string, unknown>> {
    const result = await run(node, ["out/client.js"], {
      cwd: consumer.dir,
      env: lambdaEnv(),
      timeoutMs: 20_000,
    });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const [report] = jsonLines(result.stdout) as Array<Record<string, unknown>>;
    expect(report).toMatchObject({
      value: { from: "consumer" },
      loaded: { value: "from the loader" },
      refused: "MemcacheIllegalInputError",
      internalImport: "ERR_PACKAGE_PATH_NOT_EXPORTED",
    });
    return report!;
  }

  it("runs a plain-client script against memcached, and cannot import the package's internals", async () => {
    const report = await runClientScript(process.execPath);
    expect(report.loaded).toEqual({ value: "from the loader", status: "MISS" });
    // The script's subscriber saw its requests on the package's diagnostics_channel.
    expect(report.commands).toEqual(expect.arrayContaining(["set stored", "get hit"]));
    // What the script wrote is in the real memcached, read back by another client.
    expect(await reader.get(String(report.key))).toEqual({ from: "consumer" });
    expect(await reader.get("consumer:loaded")).toBe("from the loader");
  }, 30_000);

  it.runIf(node20 !== undefined)(
    "runs the plain-client script under the machine's Node 20 too (engines: ^20.15.0)",
    () => runClientScript(node20!),
    30_000,
  );

  it("bundles the handler with esbuild into at most 60 KB that runs the same", async () => {
    const bundle = await bundleConsumerHandler(consumer);
    console.log(
      `consumer handler bundle: ${bundle.bytes} bytes; largest inputs: ${bundle.inputs
        .slice(0, 4)
        .map((i) => `${i.input} ${i.bytes}`)
        .join(", ")}`,
    );
    expect(bundle.bytes).toBeLessThanOrEqual(60 * 1024);
    expect(bundle.inputs.some((i) => i.input.includes("@aws-sdk"))).toBe(false);

    await reader.flushAll();
    const result = await run(process.execPath, ["out/invoke.js", pathToFileURL(bundle.file).href], {
      cwd: consumer.dir,
      env: lambdaEnv(),
      timeoutMs: 20_000,
    });
    expect(result.stderr).toBe("");
    expect(jsonLines(result.stdout).map((line) => (line as { xCache: string }).xCache)).toEqual([
      "MISS",
      "HIT",
      "MISS",
    ]);
  }, 60_000);
});
