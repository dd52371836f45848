// ping(): every node is asked on its own, so a dead node shows as down without hiding the
// others (what GET /health reports).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../../tools/memcached.ts";

let live: MemcachedProcess;
let dying: MemcachedProcess;

beforeAll(async () => {
  [live, dying] = await Promise.all([startMemcached(), startMemcached()]);
});

afterAll(async () => {
  await Promise.all([live?.stop(), dying?.stop()]);
});

describe("ping", () => {
  it("reports each node's version while all answer", async () => {
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

  it("reports a killed node as down and the other as up, without rejecting", async () => {
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
