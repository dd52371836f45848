// ping(): every node is asked on its own, so a dead node shows as down without hiding the
// others (what GET /health reports).

import { describe, expect } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { test } from "../helpers/fixtures.ts";

/** Two memcached processes for one test (stopped after it): `dying` may be killed. */
const it = test.extend("nodes", async ({ spawnMemcached }) => {
  const [live, dying] = await Promise.all([spawnMemcached(), spawnMemcached()]);
  return { live, dying };
});

describe("ping", () => {
  it("reports each node's version while all answer", async ({ nodes: { live, dying } }) => {
    const client = new MemcacheClient({ servers: [live.endpoint, dying.endpoint], timeoutMs: 500 });
    try {
      const health = await client.ping();
      expect(Object.keys(health).sort()).toEqual([live.endpoint, dying.endpoint].sort());
      for (const node of Object.values(health)) {
        expect(node.ok).toBe(true);
        expect(node.version).toMatch(/^1\.6\./);
      }
    } finally {
      client.close();
    }
  });

  it("reports a killed node as down and the other as up, without rejecting", async ({
    nodes: { live, dying },
  }) => {
    const client = new MemcacheClient({ servers: [live.endpoint, dying.endpoint], timeoutMs: 500 });
    try {
      await dying.kill("SIGKILL");
      const health = await client.ping();
      expect(health[live.endpoint]).toMatchObject({ ok: true });
      expect(health[dying.endpoint]?.ok).toBe(false);
      expect(health[dying.endpoint]?.error).toMatch(/ECONNREFUSED|closed|connect/);
    } finally {
      client.close();
    }
  });
});
