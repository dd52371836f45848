// Options that cannot hang a request, against a real black-holed peer (a TCP server that
// accepts and never answers): `timeoutMs: Number("100ms")` is NaN, which used to turn the
// timeout off — a get stayed pending for good. It is now refused when the client is built, and
// a cache timeout is told apart from the DOMException TimeoutError of an origin fetch.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import { Connection, connectionDefaults, Reply } from "../../lib/memcache/connection.ts";
import { MemcacheError, MemcacheTimeoutError } from "../../lib/memcache/errors.ts";
import { rejection, thrownBy, timed } from "../helpers/client.ts";
import { blackHole, type FakeServer, startFakeServer } from "../helpers/fake-server.ts";

let peer: FakeServer;

beforeAll(async () => {
  peer = await startFakeServer(blackHole);
});

afterAll(async () => {
  await peer?.close();
});

describe("timeoutMs from an unparsed environment value", () => {
  it('refuses timeoutMs: Number("100ms") when the client is built, naming the option', () => {
    const error = thrownBy(
      () => new MemcacheClient({ servers: peer.endpoint, timeoutMs: Number("100ms") }),
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(
      'lambda-memcache: MemcacheClient option "timeoutMs" must be a number of ms from 1 to 2147483647, got NaN',
    );
    expect(peer.connections).toBe(0);
  });

  it("is what kept a get to a black-holed node pending: a NaN deadline is never reached", async () => {
    // Below the client's checks, as every client was before them.
    const node = new Connection(
      { host: "127.0.0.1", port: peer.port },
      { ...connectionDefaults, timeoutMs: Number("100ms") },
    );
    try {
      const pending = node.send("get k\r\n", Reply.VALUES, "get");
      const outcome = await Promise.race([
        pending.then(
          () => "answered",
          () => "rejected",
        ),
        new Promise((resolve) => setTimeout(resolve, 600, "still pending")),
      ]);
      expect(outcome).toBe("still pending"); // six times the timeout meant
      node.close();
      await expect(pending).rejects.toBeInstanceOf(MemcacheError);
    } finally {
      node.close();
    }
  });

  it('with timeoutMs: Number("100") a get to the black-holed node fails in about 100 ms', async () => {
    const client = new MemcacheClient({ servers: peer.endpoint, timeoutMs: Number("100") });
    try {
      const { ms, result } = await timed(() => client.get("k"));
      expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
      expect(ms).toBeGreaterThanOrEqual(90);
      expect(ms).toBeLessThan(100 + 400);
    } finally {
      client.close();
    }
  });
});

describe("a cache timeout and an origin timeout", () => {
  it("are told apart: MemcacheTimeoutError vs the DOMException TimeoutError of AbortSignal.timeout", async () => {
    const client = new MemcacheClient({ servers: peer.endpoint, timeoutMs: 100 });
    try {
      const [cacheResult, originResult] = await Promise.allSettled([
        client.get("k"),
        // The same black hole as an HTTP origin: fetch never gets a response.
        fetch(`http://${peer.endpoint}/products/1`, { signal: AbortSignal.timeout(100) }),
      ]);
      const cacheError = rejection(cacheResult) as Error;
      const originError = rejection(originResult) as Error;

      expect(cacheError.name).toBe("MemcacheTimeoutError");
      expect(cacheError).toBeInstanceOf(MemcacheError);
      expect(originError.name).toBe("TimeoutError");
      expect(originError).toBeInstanceOf(DOMException);
      expect(originError).not.toBeInstanceOf(MemcacheError);
    } finally {
      client.close();
    }
  });
});
