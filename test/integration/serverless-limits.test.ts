// ElastiCache Serverless for Memcached's documented limits, each against the local stand-in
// (tools/serverless-standin.ts: TLS in front of a real memcached, refusing what the service
// refuses): first that the stand-in enforces the limit over a raw TLS socket, then what
// MemcacheClient does about it — with `elastiCacheServerless: true` it keeps within the limit or
// refuses before sending; without it, the service's refusal reaches the caller as an error.

import net from "node:net";
import tls from "node:tls";
import { describe, expect } from "vitest";
import { MemcacheClient, maxGetLineBytes } from "../../lib/memcache/client.ts";
import {
  MemcacheClientError,
  MemcacheError,
  MemcacheIllegalInputError,
  MemcacheUnknownCommandError,
} from "../../lib/memcache/errors.ts";
import type { LoopbackAddress } from "../../tools/ports.ts";
import { rejection } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

/**
 * Sends `payload` over a fresh TLS connection to the stand-in and collects what comes back until
 * `done(text)` says so or the connection closes; the text ends with "<closed>" when it closed.
 */
function exchange(
  target: LoopbackAddress,
  ca: string,
  payload: string,
  done: (text: string) => boolean,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: target.host, port: target.port, ca });
    let text = "";
    const timer = setTimeout(() => socket.destroy(new Error(`no end of reply: ${text}`)), 10_000);
    socket.setEncoding("latin1");
    socket.once("secureConnect", () => socket.write(payload, "latin1"));
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (done(text)) {
        clearTimeout(timer);
        socket.end();
        resolve(text);
      }
    });
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(`${text}<closed>`);
    });
    socket.once("error", reject);
  });
}

const lines = (n: number) => (text: string) => text.split("\r\n").length > n;
const key200 = (i: number) => `k${String(i).padStart(6, "0")}:${"x".repeat(192)}`;

describe("the stand-in (what the service does)", () => {
  it("takes TLS connections only: a plain-text client gets no reply", async ({
    serverlessStandIn,
  }) => {
    const reply = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: serverlessStandIn.host, port: serverlessStandIn.port });
      let text = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => {
        text += chunk;
      });
      socket.on("error", () => {});
      socket.once("close", () => resolve(text));
      socket.write("version\r\n");
    });
    expect(reply).not.toContain("VERSION");
  });

  it("accepts a get line of exactly 16,000 bytes and refuses one of 16,001 with CLIENT_ERROR", async ({
    serverlessStandIn,
    certs,
  }) => {
    const getLine = (bytes: number) => `get ${"k".repeat(bytes - 6)}\r\n`;
    expect(getLine(16_000).length).toBe(16_000);
    // (One key that long is no valid key: memcached answers CLIENT_ERROR itself, but the line
    // reached it. Real keys are checked below; this is about the line.)
    const atLimit = await exchange(serverlessStandIn, certs.caPem, getLine(16_000), lines(1));
    expect(atLimit).toMatch(/^CLIENT_ERROR bad command line format\r\n/);
    const over = await exchange(serverlessStandIn, certs.caPem, getLine(16_001), lines(1));
    expect(over).toMatch(/^CLIENT_ERROR get line of 16001 bytes over the 16KB limit\r\n/);
    const realKeys = `get${Array.from({ length: 80 }, (_, i) => ` ${key200(i)}`).join("")}\r\n`;
    expect(realKeys.length).toBeGreaterThan(16_000);
    const gets = await exchange(
      serverlessStandIn,
      certs.caPem,
      `gets${realKeys.slice(3)}`,
      lines(1),
    );
    expect(gets).toMatch(/^CLIENT_ERROR gets line of/);
  });

  it("answers ERROR to stats groups, me, lru_crawler, watch, verbosity and config get cluster", async ({
    serverlessStandIn,
    certs,
  }) => {
    for (const command of [
      "stats settings",
      "stats items",
      "stats slabs",
      "stats detail dump",
      "me somekey",
      "lru_crawler metadump all",
      "watch",
      "verbosity 1",
      "config get cluster",
    ]) {
      const reply = await exchange(serverlessStandIn, certs.caPem, `${command}\r\n`, lines(1));
      expect(reply, command).toBe("ERROR\r\n");
    }
    expect(await exchange(serverlessStandIn, certs.caPem, "stats reset\r\n", lines(1))).toBe(
      "RESET\r\n",
    );
    const stats = await exchange(serverlessStandIn, certs.caPem, "stats\r\n", (t) =>
      t.endsWith("END\r\n"),
    );
    expect(stats).toMatch(/^STAT pid [0-9]+\r\n/);
  });

  it("refuses a delayed flush_all with CLIENT_ERROR and runs an immediate one", async ({
    serverlessStandIn,
    certs,
  }) => {
    expect(await exchange(serverlessStandIn, certs.caPem, "flush_all 10\r\n", lines(1))).toMatch(
      /^CLIENT_ERROR /,
    );
    expect(await exchange(serverlessStandIn, certs.caPem, "flush_all 0\r\n", lines(1))).toBe(
      "OK\r\n",
    );
    expect(await exchange(serverlessStandIn, certs.caPem, "flush_all\r\n", lines(1))).toBe(
      "OK\r\n",
    );
  });

  it("keeps replies in request order around a refused command in a pipeline", async ({
    serverlessStandIn,
    certs,
    client,
  }) => {
    await client.set("standin:a", "A");
    await client.set("standin:b", "B");
    const payload = "get standin:a\r\nstats items\r\nmn\r\nget standin:b\r\nme standin:a\r\nmn\r\n";
    const reply = await exchange(serverlessStandIn, certs.caPem, payload, (text) =>
      /MN\r\n[\s\S]*MN\r\n$/.test(text),
    );
    expect(reply).toBe(
      "VALUE standin:a 16 1\r\nA\r\nEND\r\nERROR\r\nMN\r\nVALUE standin:b 16 1\r\nB\r\nEND\r\nERROR\r\nMN\r\n",
    );
  });
});

describe("MemcacheClient with elastiCacheServerless: true", () => {
  it("runs set, get, getMany, gets/cas, incr, meta commands and stats over the stand-in", async ({
    serverlessClient,
    serverlessStandIn,
  }) => {
    serverlessStandIn.resetLog();
    const client = serverlessClient();
    expect(await client.set("sl:a", { a: 1 })).toBe(true);
    expect(await client.get("sl:a")).toEqual({ a: 1 });
    expect(await client.getMany(["sl:a", "sl:none"])).toEqual(new Map([["sl:a", { a: 1 }]]));
    const item = await client.gets<{ a: number }>("sl:a");
    expect(await client.cas("sl:a", { a: 2 }, item!.cas)).toBe("stored");
    expect(await client.set("sl:n", 41)).toBe(true);
    expect(await client.incr("sl:n")).toBe(42);
    expect(await client.hasMeta()).toBe(true);
    expect(client.decodeMeta(await client.metaGet("sl:a"))).toEqual({ a: 2 });
    expect(Object.values(await client.stats())[0]).toHaveProperty("curr_items");
    await client.flushAll();
    expect(await client.get("sl:a")).toBeUndefined();
    expect(serverlessStandIn.refused).toEqual([]);
  });

  it("reads 5,000 keys of 200 bytes with one getMany in get lines of at most 16,000 bytes", {
    timeout: 30_000,
  }, async ({ serverlessClient, serverlessStandIn, client: direct }) => {
    const keys = Array.from({ length: 5_000 }, (_, i) => key200(i));
    await Promise.all(keys.map((key, i) => direct.set(key, i)));
    serverlessStandIn.resetLog();
    const values = await serverlessClient().getMany<number>(keys);
    expect(values.size).toBe(5_000);
    expect(values.get(key200(4_999))).toBe(4_999);
    const sent = serverlessStandIn.getLineBytes;
    expect(serverlessStandIn.refused).toEqual([]);
    expect(Math.max(...sent)).toBeLessThanOrEqual(maxGetLineBytes);
    // Full lines: 79 keys of 201 bytes after "get" fill 15,884 bytes with "\r\n".
    expect(sent.length).toBe(Math.ceil(5_000 / 79));
  });

  it("fails a getMany whose batch the server refuses, even when another node's batch was read", async ({
    startStandIn,
    certs,
    openClient,
    client: direct,
  }) => {
    // Node "strict" refuses any get line over 4,000 bytes: the client's 16 KB batches are refused.
    const strict = await startStandIn({ maxGetLineBytes: 4_000 });
    const lenient = await startStandIn();
    const keys = Array.from({ length: 200 }, (_, i) => key200(i));
    await Promise.all(keys.map((key) => direct.set(key, "v")));
    const client = openClient(`${strict.endpoint},${lenient.endpoint}`, {
      elastiCacheServerless: true,
      tls: { ca: certs.caPem },
    });
    const error = rejection(await Promise.allSettled([client.getMany(keys)]).then(([r]) => r!));
    expect(error).toBeInstanceOf(MemcacheClientError);
    expect((error as Error).message).toMatch(/over the 16KB limit/);
    expect(strict.refused.length).toBeGreaterThan(0);
    expect(lenient.refused).toEqual([]);
    expect(lenient.getLineBytes.length).toBeGreaterThan(0); // the other node did answer
  });

  it("refuses stats groups, a delayed flushAll and configGet before sending anything", async ({
    serverlessClient,
    serverlessStandIn,
  }) => {
    serverlessStandIn.resetLog();
    const client = serverlessClient();
    await client.set("sl:kept", "still here");
    const refusals: PromiseSettledResult<unknown>[] = await Promise.allSettled([
      client.stats("settings"),
      client.flushAll(30),
      client.configGet(),
    ]);
    for (const result of refusals) {
      const error = rejection(result);
      expect(error).toBeInstanceOf(MemcacheIllegalInputError);
      expect((error as Error).message).toMatch(/elastiCacheServerless/);
    }
    expect(serverlessStandIn.refused).toEqual([]);
    expect(await client.get("sl:kept")).toBe("still here");
  });

  it("is refused by the stand-in without the option: ERROR and CLIENT_ERROR reach the caller", async ({
    serverlessStandIn,
    certs,
    openClient,
  }) => {
    serverlessStandIn.resetLog();
    const client = openClient(serverlessStandIn.endpoint, { tls: { ca: certs.caPem } });
    expect(rejection((await Promise.allSettled([client.stats("settings")]))[0]!)).toBeInstanceOf(
      MemcacheUnknownCommandError,
    );
    expect(rejection((await Promise.allSettled([client.flushAll(30)]))[0]!)).toBeInstanceOf(
      MemcacheClientError,
    );
    expect(rejection((await Promise.allSettled([client.configGet("cluster")]))[0]!)).toBeInstanceOf(
      MemcacheUnknownCommandError,
    );
    expect(serverlessStandIn.refused.map((r) => r.line)).toEqual([
      "stats settings",
      "flush_all 30",
      "config get cluster",
    ]);
  });

  it("finds no nodes by Auto Discovery there: a configEndpoint client falls back to the endpoint", async ({
    serverlessStandIn,
    certs,
  }) => {
    const client = new MemcacheClient({
      configEndpoint: serverlessStandIn.endpoint,
      tls: { ca: certs.caPem },
      timeoutMs: 2_000,
      connectTimeoutMs: 2_000,
    });
    try {
      expect(await client.set("sl:static", "one node")).toBe(true);
      expect(await client.get("sl:static")).toBe("one node");
      expect(client.nodes.map((node) => node.endpoint)).toEqual([serverlessStandIn.endpoint]);
    } finally {
      client.close();
    }
  });

  it("cannot connect in plain text: a client without tls fails with a MemcacheError", async ({
    serverlessStandIn,
    openClient,
  }) => {
    const client = openClient(serverlessStandIn.endpoint, { timeoutMs: 500 });
    expect(rejection((await Promise.allSettled([client.get("k")]))[0]!)).toBeInstanceOf(
      MemcacheError,
    );
  });
});
