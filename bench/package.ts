// Package benchmark (`npm run bench:package`): what a team that installs the package gets.
// Written to bench/results/package.json:
//
//   tarballBytes, tarballFiles  what `npm pack` produces (after `npm run build`)
//   consumerBundleBytes         the consumer's handler (the README's "Use it in your service"
//                               block, installed from the tarball) bundled by esbuild: minified
//                               ESM, the AWS SDK external
//   consumerImportMs            `await import()` of that handler in a fresh Node process, compiled
//                               by tsc and resolving lambda-memcache and @middy/core from
//                               node_modules (median of fresh processes), beside the same for an
//                               empty module (bareNodeImportMs) and for the bundle, and each
//                               process's spawn-to-exit time, all in the same run
//
// The consumer project is built exactly as the consumer test builds it (tools/consumer.ts).
// Exit code 1 when a part cannot run; a missed target is reported as MISSED and still exits 0.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  bundleConsumerHandler,
  type Consumer,
  compileConsumer,
  createConsumer,
  packTarball,
} from "../tools/consumer.ts";
import { formatTable, round, verdict } from "../tools/stats.ts";
import { measureImport } from "./imports.ts";
import { runMain, writeResults } from "./run.ts";

const settings = {
  /** Fresh processes per import measurement. */
  importRuns: 9,
};

const targets = {
  /** 60 KiB. */
  consumerBundleBytes: 60 * 1024,
  /** Files under test/ or bench/ (or named like a test) in the tarball. */
  testOrBenchFiles: 0,
};

const resultsFile = new URL("./results/package.json", import.meta.url);

async function main(): Promise<number> {
  const started = performance.now();
  const scratch = await mkdtemp(path.join(tmpdir(), "bench-package-"));
  let consumer: Consumer | undefined;
  try {
    const tarball = await packTarball(scratch);
    const testOrBench = tarball.files.filter((file) => /test|bench/i.test(file));

    consumer = await createConsumer(tarball);
    const compiled = await compileConsumer(consumer);
    if (compiled.code !== 0) {
      throw new Error(`the consumer does not typecheck:\n${compiled.stdout}${compiled.stderr}`);
    }
    const bundle = await bundleConsumerHandler(consumer);
    const awsSdkInBundle = bundle.inputs.some((input) => input.input.includes("@aws-sdk"));

    // Importing connects nothing (sockets open on first use), so no memcached is needed here.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      CACHE_NEW_ENDPOINT: "127.0.0.1:11211",
      ORIGIN_URL: "http://127.0.0.1:4000",
    };
    const options = { runs: settings.importRuns, env, scratchDir: scratch };
    const installed = await measureImport(path.join(consumer.dir, "out", "handler.js"), options);
    const bundled = await measureImport(bundle.file, options);

    const pass = {
      consumerBundleBytes: bundle.bytes <= targets.consumerBundleBytes,
      testOrBenchFiles: testOrBench.length === targets.testOrBenchFiles,
      awsSdkInBundle: !awsSdkInBundle,
    };
    const results = {
      date: new Date().toISOString(),
      node: process.version,
      tarballBytes: tarball.bytes,
      tarballFiles: tarball.files.length,
      consumerBundleBytes: bundle.bytes,
      consumerImportMs: installed.importMs,
      bareNodeImportMs: installed.importBaselineMs,
      consumerBundleImportMs: bundled.importMs,
      consumerProcessMs: installed.processMs,
      bareNodeProcessMs: installed.processBaselineMs,
      consumerBundleProcessMs: bundled.processMs,
      testOrBenchFiles: testOrBench,
      awsSdkInBundle,
      bundleTopInputs: bundle.inputs.slice(0, 8),
      tarballContents: tarball.files,
      import: { installed, bundled },
      targets,
      pass,
      benchMs: Math.round(performance.now() - started),
    };

    console.log(`\nnode ${process.version}\n`);
    console.log(
      formatTable([
        ["metric", "value", "target", "verdict"],
        ["tarballBytes", String(tarball.bytes), "", ""],
        ["tarballFiles", String(tarball.files.length), "", ""],
        ["  test or bench files", String(testOrBench.length), "0", verdict(pass.testOrBenchFiles)],
        [
          "consumerBundleBytes (README handler, minified)",
          String(bundle.bytes),
          `<= ${targets.consumerBundleBytes}`,
          verdict(pass.consumerBundleBytes),
        ],
        ["  AWS SDK in bundle", String(awsSdkInBundle), "false", verdict(pass.awsSdkInBundle)],
        [
          `consumerImportMs (median of ${settings.importRuns}, from node_modules)`,
          installed.importMs.toFixed(2),
          "",
          "",
        ],
        ["  bareNodeImportMs (empty module)", installed.importBaselineMs.toFixed(2), "", ""],
        ["  consumerBundleImportMs", bundled.importMs.toFixed(2), "", ""],
        [
          "  process spawn-to-exit ms (handler / bundle / empty)",
          `${installed.processMs} / ${bundled.processMs} / ${installed.processBaselineMs}`,
          "",
          "",
        ],
        [
          "  import over bare node (ms)",
          String(round(installed.importMs - installed.importBaselineMs, 2)),
          "",
          "",
        ],
      ]),
    );

    await writeResults(resultsFile, results);
    return 0;
  } finally {
    await consumer?.remove();
    await rm(scratch, { recursive: true, force: true });
  }
}

runMain(main);
