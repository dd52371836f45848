// What the benchmarks share at their end: writing the results file, and turning main's outcome
// into the process's exit code.

import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

/** Writes `results` as JSON to `file` (making its folder) and says where. */
export async function writeResults(file: URL, results: unknown): Promise<void> {
  await mkdir(new URL(".", file), { recursive: true });
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwrote ${fileURLToPath(file)}`);
}

/** An error as one line: its name and message. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Runs `main`: what it resolves with is the exit code; a throw prints `describe(error)`, exit 1. */
export function runMain(
  main: () => Promise<number>,
  describe: (error: unknown) => unknown = describeError,
): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(describe(error));
      process.exitCode = 1;
    },
  );
}
