// The reference app's 5xx answers: whatever failed, the body is generic and the detail (which in
// AWS names the caches' and the origin's private addresses) goes to the log only.

import middy from "@middy/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { errorResponse, serverError } from "../../../functions/shared/http.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs `fn` with console.log captured; returns its result and the lines logged. */
async function logged<T>(fn: () => Promise<T> | T): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => {
    lines.push(String(line));
  });
  return { result: await fn(), lines };
}

const internal =
  "connection to memcached 10.0.3.17:11211 failed: connect ECONNREFUSED 10.0.3.17:11211";

describe("errorResponse", () => {
  it("answers an unhandled error with a generic 502 and logs the detail", async () => {
    const handler = middy(async () => {
      throw new Error(internal);
    }).use(errorResponse());
    const { result, lines } = await logged(() => handler({}, {} as never));
    expect(result).toEqual({
      statusCode: 502,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ error: "upstream failure" }),
    });
    expect(JSON.stringify(result)).not.toContain("10.0.3.17");
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { level: "ERROR", status: 502, message: internal, name: "Error" },
    ]);
  });

  it("leaves a response another middleware already set", async () => {
    const handler = middy(async () => {
      throw new Error(internal);
    })
      .use(errorResponse())
      .use({
        onError: (request) => {
          request.response = { statusCode: 418, body: "set earlier" };
        },
      });
    const { result } = await logged(() => handler({}, {} as never));
    expect(result).toEqual({ statusCode: 418, body: "set earlier" });
  });
});

describe("serverError", () => {
  it("puts only the given error text in the body", async () => {
    const { result, lines } = await logged(() =>
      serverError(503, "cache unavailable", { failures: { "10.0.3.17:11211": internal } }),
    );
    expect(JSON.parse(result.body as string)).toEqual({ error: "cache unavailable" });
    expect(result.statusCode).toBe(503);
    expect(lines[0]).toContain(internal);
  });

  it("adds the caller-safe fields it is given, never the detail", async () => {
    const { result } = await logged(() =>
      serverError(503, "cache unavailable", { internal }, { phase: "cutover" }),
    );
    expect(JSON.parse(result.body as string)).toEqual({
      phase: "cutover",
      error: "cache unavailable",
    });
  });
});
