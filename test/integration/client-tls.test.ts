// MemcacheClient over TLS (ElastiCache in-transit encryption) against a real memcached -Z with
// certificates from a throwaway CA: commands work with the CA and the right server name, and
// a wrong name, an unknown CA or a plain client fail fast with typed errors.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { describe, expect } from "vitest";
import { MemcacheConnectionClosedError, MemcacheError } from "../../lib/memcache/errors.ts";
import { describeError, rejection, timed } from "../helpers/client.ts";
import { it } from "../helpers/fixtures.ts";

// Each test takes its own client on the file's TLS memcached as `newClient`.

describe("with the test CA and the certificate's server name", () => {
  it("runs set, get, getMany and metaGet over TLS", async ({ certs, tlsClient: newClient }) => {
    const client = newClient({ tls: { ca: certs.caPem, servername: certs.serverName } });
    expect(await client.set("tls:a", "over tls")).toBe(true);
    expect(await client.set("tls:b", { n: 2 })).toBe(true);
    expect(await client.get("tls:a")).toBe("over tls");
    expect(await client.getMany(["tls:a", "tls:b", "tls:missing"])).toEqual(
      new Map<string, unknown>([
        ["tls:a", "over tls"],
        ["tls:b", { n: 2 }],
      ]),
    );
    const reply = await client.metaGet("tls:b", ["v", "f"]);
    expect(reply.code).toBe("VA");
    expect(client.decodeMeta(reply)).toEqual({ n: 2 });
  });

  it("verifies the certificate against the IP address when no server name is given", async ({
    certs,
    tlsClient: newClient,
  }) => {
    const client = newClient({ tls: { ca: certs.caPem } });
    expect(await client.set("tls:ip", "by address")).toBe(true);
    expect(await client.get("tls:ip")).toBe("by address");
  });
});

describe("values read over TLS", () => {
  it("reads replies spread over many socket reads, and keeps values handed out intact", async ({
    certs,
    tlsClient: newClient,
  }) => {
    const client = newClient({ tls: { ca: certs.caPem } });
    // Replies are read into one reused buffer per socket: what the parser keeps across reads
    // (values of a reply not yet complete) and what it hands out (a meta value) must be copies.
    const keys = Array.from({ length: 100 }, (_, i) => `tls:read:${i}`);
    const values = keys.map((_, i) => Buffer.alloc(2_000, i));
    // One set at a time: memcached 1.6.18 -Z stops answering pipelined input of more than about
    // one TLS record (16 KB) until more arrives; see the README's TLS notes.
    for (const [i, k] of keys.entries()) await client.set(k, values[i]!);
    const many = await client.getMany<Buffer>(keys); // about 200 KB in one reply
    expect(keys.map((k) => many.get(k))).toEqual(values);
    const meta = await client.metaGet(keys[7]!, ["v"]);
    await client.getMany(keys);
    expect(meta.value).toEqual(values[7]);
  });
});

describe("refused TLS connections", () => {
  it("rejects with MemcacheConnectionClosedError naming the altnames when the server name is wrong", async ({
    certs,
    tlsClient: newClient,
  }) => {
    const client = newClient({ tls: { ca: certs.caPem, servername: "wrong.test" } });
    const { ms, result } = await timed(() => client.get("tls:a"));
    const error = rejection(result);
    expect(error).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(describeError(error)).toMatch(/altnames|ERR_TLS_CERT_ALTNAME_INVALID/);
    expect(describeError(error)).toMatch(/wrong\.test/);
    expect(ms).toBeLessThan(1000);
  });

  it("rejects with MemcacheConnectionClosedError when the certificate's CA is not trusted", async ({
    tlsClient: newClient,
  }) => {
    const client = newClient({ tls: true });
    const { ms, result } = await timed(() => client.get("tls:a"));
    const error = rejection(result);
    expect(error).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(describeError(error)).toMatch(/certificate|issuer|CERT/i);
    expect(ms).toBeLessThan(1000);
  });

  it("fails a plain-text client against the TLS port with a MemcacheError, not a hang", async ({
    tlsClient: newClient,
  }) => {
    const client = newClient({ timeoutMs: 500 });
    const { ms, result } = await timed(() => client.get("tls:a"));
    expect(rejection(result)).toBeInstanceOf(MemcacheError);
    expect(ms).toBeLessThan(500 + 250);
  });
});
