// Import time of a module in fresh Node processes, against an empty module measured in the same
// run (interleaved, so a slow spell of the machine hits both alike). Shared by bench:middleware
// (the products function's bundle) and bench:package (the consumer's handler).

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { run } from "../tools/consumer.ts";
import { median, round } from "../tools/stats.ts";

export interface ImportTimes {
  /** Median time of `await import(file)` inside a fresh process, in ms. */
  importMs: number;
  /** The same for an empty module: the floor of any import. */
  importBaselineMs: number;
  /** Whole process, spawn to exit (includes Node's own start-up), median, in ms. */
  processMs: number;
  processBaselineMs: number;
  importMsByRun: number[];
  runs: number;
}

/** One fresh Node process that imports `file`: the import's own time and the whole run's. */
async function timeImport(file: string, env: NodeJS.ProcessEnv): Promise<[number, number]> {
  const code =
    "const t0 = performance.now();" +
    `await import(${JSON.stringify(pathToFileURL(file).href)});` +
    "const t1 = performance.now();" +
    "process.stdout.write(String(t1 - t0));" +
    "process.exit(0);";
  const started = performance.now();
  const {
    stdout,
    stderr,
    code: exitCode,
  } = await run(process.execPath, ["--input-type=module", "-e", code], {
    env,
    cwd: path.dirname(file),
    timeoutMs: 30_000,
  });
  const wallMs = performance.now() - started;
  const ms = Number(stdout.trim());
  if (exitCode !== 0 || !Number.isFinite(ms)) {
    throw new Error(`importing ${file} failed (exit ${exitCode}): ${stderr.trim().slice(0, 400)}`);
  }
  return [ms, wallMs];
}

/**
 * Imports `file` in `runs` fresh processes (with `env` only), each after one that imports an
 * empty module written to `scratchDir`.
 */
export async function measureImport(
  file: string,
  options: { runs: number; env: NodeJS.ProcessEnv; scratchDir: string },
): Promise<ImportTimes> {
  const emptyFile = path.join(options.scratchDir, "empty.mjs");
  await writeFile(emptyFile, "export {};\n");
  const subject: Array<[number, number]> = [];
  const baseline: Array<[number, number]> = [];
  for (let i = 0; i < options.runs; i++) {
    baseline.push(await timeImport(emptyFile, options.env));
    subject.push(await timeImport(file, options.env));
  }
  return {
    importMs: round(median(subject.map(([ms]) => ms)), 2),
    importBaselineMs: round(median(baseline.map(([ms]) => ms)), 2),
    processMs: round(median(subject.map(([, wall]) => wall)), 1),
    processBaselineMs: round(median(baseline.map(([, wall]) => wall)), 1),
    importMsByRun: subject.map(([ms]) => round(ms, 2)),
    runs: options.runs,
  };
}
