// checkOptions and its rules (lib/memcache/options.ts): what every component's options go
// through. Unknown keys with a suggestion, numbers finite and in range, wrong types, required
// options, non-object options, and the message format every bad option shares.

import { describe, expect, it } from "vitest";
import {
  booleanRule,
  checkOptions,
  countRule,
  functionRule,
  msRule,
  type OptionRules,
  oneOfRule,
  secondsRule,
  unknownOption,
} from "../../../lib/memcache/options.ts";
import { thrownBy } from "../../helpers/client.ts";

interface Sample {
  timeoutMs: number;
  ttlSeconds: number;
  retries: number;
  enabled: boolean;
  mode: "a" | "b";
  onEvent: (() => void) | undefined;
  target: string;
}

const rules: OptionRules<Sample> = {
  timeoutMs: msRule(1),
  ttlSeconds: secondsRule(0),
  retries: countRule(1, 10),
  enabled: booleanRule,
  mode: oneOfRule("a", "b"),
  onEvent: functionRule,
  target: (value) => (typeof value === "string" ? undefined : "must be a string"),
};

/** Every option has a default except `target`, which is required. */
const defaults: Omit<Sample, "target"> = {
  timeoutMs: 100,
  ttlSeconds: 60,
  retries: 3,
  enabled: true,
  mode: "a",
  onEvent: undefined,
};

const check = (given: unknown) => checkOptions("Sample", given, rules, defaults);

function messageOf(given: unknown): string {
  const error = thrownBy(() => check(given));
  expect(error).toBeInstanceOf(TypeError);
  return (error as Error).message;
}

describe("checkOptions", () => {
  it("returns the defaults merged with the options given", () => {
    expect(check({ target: "x", timeoutMs: 50, mode: "b" })).toEqual({
      ...defaults,
      target: "x",
      timeoutMs: 50,
      mode: "b",
    });
  });

  it("treats an option given as undefined as not given", () => {
    expect(check({ target: "x", timeoutMs: undefined }).timeoutMs).toBe(100);
  });

  it("does not change the object it was given", () => {
    const given = { target: "x", retries: 5 };
    check(given);
    expect(given).toEqual({ target: "x", retries: 5 });
  });

  it.each([
    ["tmeoutMs", "timeoutMs"],
    ["timeoutMS", "timeoutMs"],
    ["timeout", "timeoutMs"],
    ["ttl", "ttlSeconds"],
    ["retry", "retries"],
    ["onevent", "onEvent"],
  ])("refuses the unknown option %s and suggests %s", (typo, meant) => {
    expect(messageOf({ target: "x", [typo]: 1 })).toBe(
      `lambda-memcache: Sample option "${typo}" is not an option; did you mean "${meant}"?`,
    );
  });

  it("lists the options when an unknown one is close to none", () => {
    expect(messageOf({ target: "x", somethingElse: 1 })).toBe(
      'lambda-memcache: Sample option "somethingElse" is not an option (options: timeoutMs, ttlSeconds, retries, enabled, mode, onEvent, target)',
    );
  });

  it.each([
    ["NaN (Number('100ms'))", Number("100ms"), "NaN"],
    ["-1", -1, "-1"],
    ["0", 0, "0"],
    ["Infinity", Number.POSITIVE_INFINITY, "Infinity"],
    ["past the longest timer", 2 ** 31, "2147483648"],
    ["a numeric string", "100", '"100"'],
    ["a bigint", 100n, "100n"],
  ])("refuses timeoutMs %s", (_label, value, shown) => {
    expect(messageOf({ target: "x", timeoutMs: value })).toBe(
      `lambda-memcache: Sample option "timeoutMs" must be a number of ms from 1 to 2147483647, got ${shown}`,
    );
  });

  it.each([
    ["1.5", 1.5],
    ["-1", -1],
    ["NaN", Number.NaN],
  ])("refuses ttlSeconds %s (whole seconds only)", (_label, value) => {
    expect(messageOf({ target: "x", ttlSeconds: value })).toMatch(
      /^lambda-memcache: Sample option "ttlSeconds" must be a whole number of seconds from 0 to 2147483647, got /,
    );
  });

  it("refuses a count out of range", () => {
    expect(messageOf({ target: "x", retries: 11 })).toBe(
      'lambda-memcache: Sample option "retries" must be a whole number from 1 to 10, got 11',
    );
  });

  it.each([
    ["enabled", "yes", 'must be true or false, got "yes"'],
    ["mode", "c", 'must be one of "a", "b", got "c"'],
    ["onEvent", "log", 'must be a function, got "log"'],
    ["target", 5, "must be a string"],
  ])("refuses option %s of the wrong type", (name, value, complaint) => {
    expect(messageOf({ target: "x", [name]: value })).toBe(
      `lambda-memcache: Sample option "${name}" ${complaint}`,
    );
  });

  it("refuses a missing required option, also one given as undefined", () => {
    expect(messageOf({})).toBe('lambda-memcache: Sample option "target" is required');
    expect(messageOf({ target: undefined })).toBe(
      'lambda-memcache: Sample option "target" is required',
    );
  });

  it.each([
    ["a string", "timeoutMs=50", '"timeoutMs=50"'],
    ["null", null, "null"],
    ["an array", [1], "an array"],
    ["a number", 5, "5"],
  ])("refuses options that are %s", (_label, given, shown) => {
    expect(messageOf(given)).toBe(
      `lambda-memcache: Sample options must be an object, got ${shown}`,
    );
  });
});

describe("unknownOption", () => {
  it("names the first key not among the known ones, with a suggestion", () => {
    expect(unknownOption({ ttlSeconds: 1, ttl: 2 }, ["ttlSeconds", "flags"])).toEqual({
      name: "ttl",
      complaint: 'is not an option; did you mean "ttlSeconds"?',
    });
    expect(unknownOption({ ttlSeconds: 1 }, ["ttlSeconds", "flags"])).toBeUndefined();
  });
});
