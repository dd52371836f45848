// Pure pieces of the connection: which servers count as speaking the meta protocol the way this
// client does (the rule behind hasMeta() and the lease choice).

import { describe, expect, it } from "vitest";
import { metaCapable } from "../../../lib/memcache/connection.ts";

describe("metaCapable", () => {
  it.each([
    ["1.6.10", true, true],
    ["1.6.18", true, true],
    ["1.6.22", true, true],
    ["1.7.0", true, true],
    ["2.0.0", true, true],
    // 1.6.0-1.6.9 answer meta commands in an older format (OK instead of HD, sizes as flags).
    ["1.6.9", true, false],
    ["1.6.6", true, false],
    ["1.6.0", true, false],
    ["1.5.22", true, false],
    ["1.4.39", true, false],
    // A version that is not plain x.y.z (a proxy, a managed service): the mn answer decides.
    ["1.6", true, true],
    ["1.6-managed", true, true],
    ["unknown", true, true],
    // Without an MN answer to mn, never.
    ["1.6.18", false, false],
    ["unknown", false, false],
    ["1.6.18-rc1", true, true],
    ["1.6.9-rc1", true, false],
  ])("version %j, answers mn: %s -> %s", (version, answersMn, expected) => {
    expect(metaCapable(version, answersMn)).toBe(expected);
  });
});
