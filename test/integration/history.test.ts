// The history checker (test/helpers/history/): seeded, replayable histories of two app versions in
// neighbouring cutover phases, with faults, against two real memcached processes, each checked
// against the rule of the cutover. A failing seed prints its shortest failing history.
//
//   npm test                                   the fixed seeds below
//   HISTORY_SEED=1234 npm exec -- vitest run test/integration/history.test.ts    replays one seed
//   npm run test:history                       the fixed seeds and HISTORY_RUNS more (default 300)

import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.ts";
import {
  describeProgram,
  formatHistory,
  generate,
  type HistoryRun,
  runHistory,
  shrink,
} from "../helpers/history/history.ts";

/** Every pair of phases with every lease mode, four times (seed % 3: the pair; seed / 3 % 3: leases). */
const FIXED_SEEDS = Array.from({ length: 36 }, (_, i) => i + 1);

function seeds(): number[] {
  const one = process.env.HISTORY_SEED;
  if (one !== undefined && one !== "") return [Number(one)];
  const runs = Number(process.env.HISTORY_RUNS ?? 0);
  const first = Number(process.env.HISTORY_FIRST_SEED ?? Date.now() % 1_000_000_000);
  return [...FIXED_SEEDS, ...Array.from({ length: runs }, (_, i) => first + i)];
}

// The two clusters ("new" and "old") are the file's memcached fixtures; a history may kill or
// restart them, and the next one starts from both running again (runHistory checks).

describe("the history checker itself", () => {
  it("replays a seed command for command, with the same results", async ({
    newMemcached,
    oldMemcached,
  }) => {
    const servers = { newMemcached, oldMemcached };
    const [first, second] = [
      await runHistory(generate(7), servers),
      await runHistory(generate(7), servers),
    ];
    const shape = (run: HistoryRun) => ({
      commands: run.trace.map((entry) => `${entry.step} #${entry.op} ${entry.label}`),
      results: run.records.map(
        (r) => `#${r.id} ${r.start}-${r.end} ${r.value} ${r.detail} ${r.error}`,
      ),
    });
    expect(first.trace.length).toBeGreaterThan(20);
    expect(shape(second)).toEqual(shape(first));
  });
});

describe("histories of two versions in neighbouring phases keep the rule", () => {
  it.for(seeds())("seed %i", { timeout: 180_000 }, async (seed, { newMemcached, oldMemcached }) => {
    const servers = { newMemcached, oldMemcached };
    const program = generate(seed);
    const run = await runHistory(program, servers);
    if (run.violations.length > 0 && process.env.HISTORY_SHRINK !== "0") {
      const { run: shortest, attempts } = await shrink(run, servers);
      console.error(
        [
          `HISTORY FAILED: ${describeProgram(program)}`,
          `${run.records.length} operations; shortest failing history found in ${attempts} replays:`,
          "",
          formatHistory(shortest),
          "",
          `replay: HISTORY_SEED=${seed} npm exec -- vitest run test/integration/history.test.ts`,
        ].join("\n"),
      );
    }
    expect(run.violations.map((v) => v.message)).toEqual([]);
  });
});
