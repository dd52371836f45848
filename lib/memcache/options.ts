// Option checking, one module for every component. An options object is checked where it enters
// (a constructor, or a call that takes options), so a typo or a unit slip fails at once, naming
// the option, instead of quietly changing behaviour: `timeoutMs: Number("100ms")` is NaN, which
// a timer treats as "fire at once" and a comparison as "never"; `tmeoutMs: 50` would be ignored.
//
// Each component keeps one documented options interface, one defaults object and one rules
// object side by side; checkOptions() merges them. A bad option throws TypeError (Middy's
// convention) with a message that starts `lambda-memcache: <Component> option "<name>"`.
//
// Rules are plain functions: they return undefined for a good value, else what is wrong with it
// ("must be ..., got ..."). A given `undefined` counts as not given (the default applies).

/** undefined when `value` is good; else the complaint, e.g. `must be true or false, got "yes"`. */
export type OptionRule = (value: unknown) => string | undefined;

/** One rule per option of T. */
export type OptionRules<T> = { readonly [K in keyof T]-?: OptionRule };

/** Longest delay Node's timers take (2^31-1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;
/** Largest TTL or period in seconds an option takes (memcached reads exptime as a signed 32-bit). */
export const MAX_SECONDS = 2_147_483_647;

/** The TypeError every bad option throws. */
export function optionError(component: string, name: string, complaint: string): TypeError {
  return new TypeError(`lambda-memcache: ${component} option "${name}" ${complaint}`);
}

/**
 * Checks `given` against `rules` and returns `{ ...defaults, ...given }` (given undefineds
 * dropped). Throws TypeError for a non-object, an unknown key (suggesting the nearest known one),
 * a bad value, or a missing option that has no default (a key absent from `defaults`).
 */
export function checkOptions<T extends object>(
  component: string,
  given: unknown,
  rules: OptionRules<T>,
  defaults: Partial<T>,
): T {
  if (
    given !== undefined &&
    (typeof given !== "object" || given === null || Array.isArray(given))
  ) {
    throw new TypeError(
      `lambda-memcache: ${component} options must be an object, got ${show(given)}`,
    );
  }
  const result: Record<string, unknown> = { ...defaults };
  const supplied = (given ?? {}) as Record<string, unknown>;
  for (const name of Object.keys(supplied)) {
    if (!Object.hasOwn(rules, name)) {
      throw optionError(component, name, unknownComplaint(name, Object.keys(rules)));
    }
    const value = supplied[name];
    if (value === undefined) continue;
    const complaint = (rules as Record<string, OptionRule>)[name]!(value);
    if (complaint !== undefined) throw optionError(component, name, complaint);
    result[name] = value;
  }
  for (const name of Object.keys(rules)) {
    if (result[name] === undefined && !Object.hasOwn(defaults, name)) {
      throw optionError(component, name, "is required");
    }
  }
  return result as T;
}

/**
 * Refuses keys of `given` that are not in `known` (for per-call options whose values the caller
 * checks itself); returns the complaint for the first unknown key, or undefined.
 */
export function unknownOption(
  given: object,
  known: readonly string[],
): { name: string; complaint: string } | undefined {
  for (const name of Object.keys(given)) {
    if (!known.includes(name)) return { name, complaint: unknownComplaint(name, known) };
  }
  return undefined;
}

function unknownComplaint(name: string, known: readonly string[]): string {
  const near = nearest(name, known);
  return near === undefined
    ? `is not an option (options: ${known.join(", ")})`
    : `is not an option; did you mean "${near}"?`;
}

/**
 * The known name `name` was probably meant as: the closest by edit distance (at most 2, letter
 * case ignored), else one that `name` begins (`ttl` -> `ttlSeconds`, `retry` -> `retries`).
 */
function nearest(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best !== undefined || lower.length < 3) return best;
  const stem = lower.slice(0, Math.max(3, lower.length - 1));
  return known.find((candidate) => candidate.toLowerCase().startsWith(stem));
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** A value as an error message shows it: strings quoted, numbers as written (NaN, -1). */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  if (typeof value === "bigint") return `${value}n`;
  return String(value);
}

// ---- rules ----

/** A finite number from `min` to `max` (whole when `whole`), e.g. a duration in ms. */
export function numberRule(min: number, max: number, unit: string, whole = false): OptionRule {
  const expected = `must be a ${whole ? "whole " : ""}number of ${unit} from ${min} to ${max}`;
  return (value) =>
    typeof value === "number" &&
    Number.isFinite(value) &&
    value >= min &&
    value <= max &&
    (!whole || Number.isInteger(value))
      ? undefined
      : `${expected}, got ${show(value)}`;
}

/** A duration in ms a timer can wait: finite, min..2^31-1. */
export function msRule(min = 0): OptionRule {
  return numberRule(min, MAX_TIMER_MS, "ms");
}

/** Whole seconds, min..2^31-1 (TTLs, periods). */
export function secondsRule(min = 0): OptionRule {
  return numberRule(min, MAX_SECONDS, "seconds", true);
}

/** A whole count, min..max. */
export function countRule(min: number, max: number): OptionRule {
  const expected = `must be a whole number from ${min} to ${max}`;
  return (value) =>
    Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max
      ? undefined
      : `${expected}, got ${show(value)}`;
}

export const booleanRule: OptionRule = (value) =>
  typeof value === "boolean" ? undefined : `must be true or false, got ${show(value)}`;

export const functionRule: OptionRule = (value) =>
  typeof value === "function" ? undefined : `must be a function, got ${show(value)}`;

export const nonEmptyStringRule: OptionRule = (value) =>
  typeof value === "string" && value.length > 0
    ? undefined
    : `must be a non-empty string, got ${show(value)}`;

/** One of the given strings. */
export function oneOfRule(...choices: readonly string[]): OptionRule {
  const expected = `must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`;
  return (value) =>
    typeof value === "string" && choices.includes(value)
      ? undefined
      : `${expected}, got ${show(value)}`;
}
