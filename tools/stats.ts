// Statistics and report helpers shared by the benchmarks and the fault proxy's traffic driver: median, nearest-rank percentile,
// rounding, the paired per-round ratio, the rotated subject order of interleaved rounds, the
// verdict word for a target and the plain-text table they print.

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile (`p` in 0..1) of `samples`, sorted here on a copy; NaN for none. */
export function percentile(samples: readonly number[] | Float64Array, p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** `n` rounded to `digits` decimals. */
export function round(n: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(n * scale) / scale;
}

/**
 * Median over rounds of ours / theirs within the same round, to 3 decimals. Whole rounds run up
 * to 3x faster or slower on a VM (vCPU wake-ups), so the ratio of two separately taken medians
 * can pick rounds from different spells; the per-round ratio compares subjects that ran side by
 * side.
 */
export function pairedRatio(ours: readonly number[], theirs: readonly number[]): number {
  return round(median(ours.map((ops, r) => ops / theirs[r]!)), 3);
}

/** The items in round `round`'s order: rotated so each one runs first, second, ... in turn. */
export function rotated<T>(items: readonly T[], round: number): T[] {
  return items.map((_, i) => items[(i + round) % items.length]!);
}

/** The verdict column: "ok" or "MISSED" for a target, "n/a" where it could not be measured. */
export function verdict(ok: boolean | undefined): string {
  if (ok === undefined) return "n/a";
  return ok ? "ok" : "MISSED";
}

/**
 * `rows` (rows[0] the header) as aligned columns two spaces apart: the first left-aligned, the
 * others right-aligned, a dashed rule under the header.
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const [header, ...body] = rows;
  return [line(header!), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}
