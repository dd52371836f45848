// Lease (lib/cache/leases.ts): one object owns a won lease and ends it exactly once. Whatever
// the caller does after the first ending — fill again, release, release twice — reaches the
// implementation not at all; a fill that fails releases the lease itself, once.

import { describe, expect, it } from "vitest";
import { Lease, type LeaseEnds } from "../../../lib/cache/leases.ts";

/** Ends that record each call; fill resolves `stored` or throws `fillError`. */
function recordingEnds(behaviour: { stored?: boolean; fillError?: Error } = {}) {
  const calls: string[] = [];
  const ends: LeaseEnds = {
    async fill(value, ttlSeconds) {
      calls.push(`fill ${String(value)} ${ttlSeconds}`);
      if (behaviour.fillError !== undefined) throw behaviour.fillError;
      return behaviour.stored ?? true;
    },
    async release(keepStaleSeconds) {
      calls.push(`release ${keepStaleSeconds ?? "-"}`);
    },
  };
  return { calls, ends };
}

const token = { kind: "meta", cas: "42" } as const;

describe("Lease", () => {
  it("fills once; a later fill or release sends nothing", async () => {
    const { calls, ends } = recordingEnds();
    const lease = new Lease("k", token, ends);
    expect(lease.ended).toBe(false);

    expect(await lease.fill("v", 60)).toBe(true);
    expect(lease.ended).toBe(true);
    expect(await lease.fill("w", 60)).toBe(false);
    await lease.release();
    await lease.release({ keepStaleSeconds: 30 });

    expect(calls).toEqual(["fill v 60"]);
  });

  it("releases once; a later fill stores nothing", async () => {
    const { calls, ends } = recordingEnds();
    const lease = new Lease("k", token, ends);

    await lease.release();
    await lease.release();
    expect(await lease.fill("v", 60)).toBe(false);

    expect(calls).toEqual(["release -"]);
  });

  it("ends once when two endings race", async () => {
    const { calls, ends } = recordingEnds();
    const lease = new Lease("k", token, ends);

    const [filled] = await Promise.all([lease.fill("v", 60), lease.release(), lease.fill("w", 1)]);

    expect(filled).toBe(true);
    expect(calls).toEqual(["fill v 60"]);
  });

  it("passes keepStaleSeconds to the release", async () => {
    const { calls, ends } = recordingEnds();
    await new Lease("k", token, ends, { stale: "old" }).release({ keepStaleSeconds: 30 });
    expect(calls).toEqual(["release 30"]);
  });

  it("gives itself up when its fill fails, then passes the error on; nothing more afterwards", async () => {
    const failure = new Error("SERVER_ERROR object too large for cache");
    const { calls, ends } = recordingEnds({ fillError: failure });
    const lease = new Lease("k", token, ends);

    await expect(lease.fill("v", 60)).rejects.toBe(failure);
    await lease.release();

    expect(calls).toEqual(["fill v 60", "release -"]);
  });

  it("resolves false when the fill lost (an invalidation won)", async () => {
    const { ends } = recordingEnds({ stored: false });
    expect(await new Lease("k", token, ends).fill("v", 60)).toBe(false);
  });

  it("keeps the token it was won with, and what was seen", () => {
    const { ends } = recordingEnds();
    const lease = new Lease("k", { kind: "lock-tombstone", lockId: "a.1", cas: "7" }, ends, {
      tombstone: true,
    });
    expect(lease.token).toEqual({ kind: "lock-tombstone", lockId: "a.1", cas: "7" });
    expect(lease.tombstone).toBe(true);
    expect(lease.stale).toBeUndefined();
  });
});
