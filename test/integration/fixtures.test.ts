// The vitest fixtures (test/helpers/fixtures.ts) against real processes: what a test's fixtures
// started is stopped by PID once the test ends, also when it failed, and the file's memcached and
// client are the same for every test of the file.

import { describe, expect } from "vitest";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import { it } from "../helpers/fixtures.ts";

/** Whether a process with this PID exists (signal 0 checks without sending anything). */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

describe("a test's own processes", () => {
  const pids: number[] = [];

  it.fails("(fails on purpose after starting two memcached processes)", async ({
    spawnMemcached,
  }) => {
    const started = await Promise.all([spawnMemcached(), spawnMemcached()]);
    pids.push(...started.map((memcached) => memcached.pid));
    expect(pids.every(exists)).toBe(true);
    throw new Error("this test fails on purpose");
  });

  it("are stopped by PID after the test, although it failed", () => {
    expect(pids).toHaveLength(2);
    expect(pids.filter(exists)).toEqual([]);
  });
});

describe("the file's memcached and client", () => {
  let first: { pid: number; client: MemcacheClient } | undefined;

  it("answer the first test", async ({ memcached, client }) => {
    first = { pid: memcached.pid, client };
    expect(await client.set("fixtures:shared", "kept")).toBe(true);
  });

  it("are the same process and client in the next test, with what the first stored", async ({
    memcached,
    client,
  }) => {
    expect(first).toEqual({ pid: memcached.pid, client });
    expect(exists(memcached.pid)).toBe(true);
    expect(await client.get("fixtures:shared")).toBe("kept");
  });
});
