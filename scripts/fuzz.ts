// `npm run fuzz [cases] [seed]`: the ReplyParser fuzzer at full size (default 200,000 cases, a
// fresh seed each run unless one is given, printed so any failure can be replayed). Prints the
// result as JSON; exits 1 on any crash, hang, unbounded buffer or event mismatch. Progress goes to
// stderr every 2 s (a full run takes a minute or more).

import { runParserFuzz } from "../tools/fuzz.ts";

const cases = Number(process.argv[2] ?? 200_000);
const seed = Number(process.argv[3] ?? Math.floor(Math.random() * 2 ** 32));
if (!Number.isSafeInteger(cases) || cases < 1 || !Number.isSafeInteger(seed) || seed < 0) {
  console.error("usage: npm run fuzz -- [cases (default 200000)] [seed (default random)]");
  process.exit(2);
}

console.log(`fuzzing ReplyParser: ${cases} cases, seed ${seed}`);
const result = runParserFuzz(cases, seed, {
  onProgress: (done, soFar) => {
    const failing =
      soFar.crashes +
      soFar.hangs +
      soFar.bufferViolations +
      soFar.roundTripMismatches +
      soFar.chunkingMismatches;
    const left = (soFar.durationMs / done) * (cases - done);
    console.error(
      `fuzz: ${done.toLocaleString("en")}/${cases.toLocaleString("en")} cases (${Math.floor((100 * done) / cases)} %), ${(soFar.durationMs / 1000).toFixed(0)} s, about ${(left / 1000).toFixed(0)} s left, ${failing} failing`,
    );
  },
});
console.log(JSON.stringify({ seed, ...result }, null, 2));

const failed =
  result.crashes +
  result.hangs +
  result.bufferViolations +
  result.roundTripMismatches +
  result.chunkingMismatches;
if (failed > 0) {
  console.error(`FAILED: ${failed} failing cases; replay with: npm run fuzz -- ${cases} ${seed}`);
  process.exit(1);
}
console.log(
  `ok: ${cases} cases in ${(result.durationMs / 1000).toFixed(1)} s, no crash, no hang, buffer <= ${result.maxBufferedBytes} bytes (limit ${result.bufferLimit})`,
);
