// `npm run mutate`: mutation testing with StrykerJS and its vitest runner (stryker.config.json
// says what is mutated and which test files run), then the score per file and overall into
// bench/results/mutation.json, with the surviving mutants listed. Heavy (tens of minutes on two
// cores): not part of `npm test`; on a shared machine run it under the heavy lock.
//
// Score = (killed + timed out) / (killed + timed out + survived + no coverage), Stryker's
// "mutation score"; mutants that do not compile or crash the runner are left out, as Stryker does.

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { formatTable, round } from "../tools/stats.ts";

const root = path.resolve(import.meta.dirname, "..");
const config = JSON.parse(readFileSync(path.join(root, "stryker.config.json"), "utf8")) as {
  mutate: string[];
  testFiles: string[];
  concurrency: number;
  jsonReporter: { fileName: string };
};

/** The parts of Stryker's JSON report (mutation-testing-report-schema) read here. */
interface Report {
  files: Record<
    string,
    {
      mutants: Array<{
        id: string;
        mutatorName: string;
        replacement?: string;
        status: string;
        location: { start: { line: number; column: number } };
      }>;
    }
  >;
}

interface Counts {
  killed: number;
  timeout: number;
  survived: number;
  noCoverage: number;
  /** CompileError, RuntimeError, Ignored, Pending: not in the score. */
  other: number;
  score: number;
}

// `--summary-only [--duration-s=N]`: summarize the last run's report without running Stryker.
const args = process.argv.slice(2);
let durationS: number | null = null;
if (args.includes("--summary-only")) {
  const given = args.find((a) => a.startsWith("--duration-s="));
  durationS = given === undefined ? null : Number(given.slice("--duration-s=".length));
} else {
  const started = performance.now();
  const stryker = path.join(root, "node_modules", ".bin", "stryker");
  const run = spawnSync(stryker, ["run", ...args], { cwd: root, stdio: "inherit" });
  durationS = round((performance.now() - started) / 1000, 0);
  if (run.status !== 0) {
    console.error(`stryker run failed (exit ${run.status ?? run.signal}); no results written`);
    process.exit(1);
  }
}

const report = JSON.parse(
  readFileSync(path.join(root, config.jsonReporter.fileName), "utf8"),
) as Report;

function count(statuses: readonly string[]): Counts {
  const n = (status: string) => statuses.filter((s) => s === status).length;
  const killed = n("Killed");
  const timeout = n("Timeout");
  const survived = n("Survived");
  const noCoverage = n("NoCoverage");
  const scored = killed + timeout + survived + noCoverage;
  return {
    killed,
    timeout,
    survived,
    noCoverage,
    other: statuses.length - scored,
    score: scored === 0 ? 0 : round((100 * (killed + timeout)) / scored, 1),
  };
}

const files: Record<string, Counts> = {};
const survivors: string[] = [];
const all: string[] = [];
for (const [file, { mutants }] of Object.entries(report.files)) {
  const name = path.relative(root, path.resolve(root, file));
  files[name] = count(mutants.map((m) => m.status));
  all.push(...mutants.map((m) => m.status));
  for (const m of mutants) {
    if (m.status !== "Survived" && m.status !== "NoCoverage") continue;
    const at = `${name}:${m.location.start.line}:${m.location.start.column}`;
    survivors.push(`${at} ${m.status} ${m.mutatorName}: ${JSON.stringify(m.replacement ?? "")}`);
  }
}
const total = count(all);

const result = {
  date: new Date().toISOString(),
  node: process.version,
  durationS,
  concurrency: config.concurrency,
  mutate: config.mutate,
  testFiles: config.testFiles,
  total,
  files,
  survivors: survivors.sort(),
};
const out = path.join(root, "bench", "results", "mutation.json");
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);

console.log(
  formatTable([
    ["file", "score %", "killed", "timeout", "survived", "no coverage"],
    ...[...Object.entries(files), ["all", total] as const].map(([file, c]) => [
      file,
      String(c.score),
      String(c.killed),
      String(c.timeout),
      String(c.survived),
      String(c.noCoverage),
    ]),
  ]),
);
console.log(`${durationS ?? "?"} s; written to ${path.relative(root, out)}`);
