// How MemcacheClient fails: a real memcached killed, paused, stopped and restarted under it,
// and small TCP servers that close at once, never answer, never finish a TLS handshake or
// break the protocol. Every request settles within its bound, typed; the client recovers on
// its own; and an idle client never holds the process open.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, vi } from "vitest";
import { type ClientOptions, MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheClientError,
  MemcacheConnectionClosedError,
  MemcacheError,
  MemcacheNodeDeadError,
  MemcacheProtocolError,
  MemcacheServerError,
  MemcacheTimeoutError,
  MemcacheUnknownCommandError,
} from "../../lib/memcache/errors.ts";
import { rejection, timed } from "../helpers/client.ts";
import {
  answerLines,
  blackHole,
  closeImmediately,
  type FakeServer,
  startFakeServer,
} from "../helpers/fake-server.ts";
import { it } from "../helpers/fixtures.ts";

const clients: MemcacheClient[] = [];

function newClient(servers: string, options: Partial<ClientOptions> = {}): MemcacheClient {
  const client = new MemcacheClient({ servers, timeoutMs: 1000, ...options });
  clients.push(client);
  return client;
}

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

/** Resolves with `promise`'s value, or with "deadline" if it has not settled after `ms`. */
async function orDeadline<T>(promise: Promise<T>, ms: number): Promise<T | "deadline"> {
  const abort = new AbortController();
  try {
    return await Promise.race([
      promise,
      delay(Math.max(0, ms), "deadline" as const, { signal: abort.signal }),
    ]);
  } finally {
    abort.abort();
  }
}

/** A fake server for one test, closed after it. */
const fakes: FakeServer[] = [];
async function fake(...args: Parameters<typeof startFakeServer>): Promise<FakeServer> {
  const server = await startFakeServer(...args);
  fakes.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((server) => server.close()));
});

// The describes that need a real memcached share the file's (`memcached`, called `server` here).

describe("a memcached killed with requests in flight", () => {
  it.afterEach(async ({ memcached }) => {
    await memcached.restart(); // each test kills it
  });

  /**
   * README: the requests in flight fail "in ~10 ms" (measured here: see the README's table).
   * Counted from the SIGKILL, with timeoutMs far away so that only noticing the close can settle
   * them; 250 ms is the slack for the file's load (above), and a close noticed late — say
   * 900 ms — fails.
   */
  const killNoticedWithinMs = 250;

  it.for([
    ["before the first reply", () => new Promise((resolve) => setImmediate(resolve))],
    ["while replies stream in", (gets: Promise<unknown>[]) => gets[0]],
  ] as const)(
    `settles all 64 requests within ${killNoticedWithinMs} ms of a SIGKILL %s`,
    async ([_when, waitToKill], { memcached: server }) => {
      const timeoutMs = 10_000;
      const client = newClient(server.endpoint, { timeoutMs });
      const value = randomBytes(100 * 1024);
      await client.set("big", value);

      const gets = Array.from({ length: 64 }, () => client.get<Buffer>("big"));
      const settledAt: number[] = [];
      const settled = () => settledAt.push(performance.now());
      for (const get of gets) get.then(settled, settled);
      await waitToKill(gets);
      const inFlightAtKill = client.nodes[0]!.inFlight;
      const killedAt = performance.now();
      const killed = server.kill("SIGKILL");

      const outcomes = await orDeadline(Promise.allSettled(gets), killNoticedWithinMs * 4);
      await killed;
      expect(outcomes, "some requests never settled").not.toBe("deadline");
      if (outcomes === "deadline") return;

      expect(inFlightAtKill).toBeGreaterThan(0);
      const lastMs = Math.max(...settledAt) - killedAt;
      expect(lastMs, "the last request settled this long after the kill").toBeLessThan(
        killNoticedWithinMs,
      );
      let closed = 0;
      for (const outcome of outcomes) {
        // A reply the kernel had already delivered may complete; a cut-off one must not.
        if (outcome.status === "fulfilled") expect(outcome.value?.equals(value)).toBe(true);
        else {
          expect(outcome.reason).toBeInstanceOf(MemcacheConnectionClosedError);
          closed++;
        }
      }
      expect(closed).toBeGreaterThan(0);
    },
  );
});

describe("a server that closes every connection at once", () => {
  it("rejects a get with MemcacheConnectionClosedError well before timeoutMs", async () => {
    const peer = await fake(closeImmediately);
    const client = newClient(peer.endpoint, { timeoutMs: 1000 });
    const { ms, result } = await timed(() => client.get("k"));
    expect(rejection(result)).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(ms).toBeLessThan(200);
    expect(peer.connections).toBe(1);
  });
});

describe("a server that never answers", () => {
  it("rejects a get with MemcacheTimeoutError once timeoutMs has passed", async () => {
    const peer = await fake(blackHole);
    const client = newClient(peer.endpoint, { timeoutMs: 150 });
    const { ms, result } = await timed(() => client.get("k"));
    const error = rejection(result);
    expect(error).toBeInstanceOf(MemcacheTimeoutError);
    expect((error as Error).message).toMatch(/timeoutMs/);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(150 + 250);
  });

  it("rejects 20 concurrent gets with MemcacheTimeoutError in the same window", async () => {
    const peer = await fake(blackHole);
    const client = newClient(peer.endpoint, { timeoutMs: 150 });
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => timed(() => client.get(`k${i}`))),
    );
    for (const { ms, result } of runs) {
      expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
      expect(ms).toBeGreaterThanOrEqual(140);
      expect(ms).toBeLessThan(150 + 250);
    }
  });

  it("times out a reply that stops halfway through its value", async () => {
    const peer = await fake(answerLines(() => "VALUE k 0 10\r\nabc"));
    const client = newClient(peer.endpoint, { timeoutMs: 150, connectTimeoutMs: 100 });
    const { ms, result } = await timed(() => client.get("k"));
    expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(150 + 250);
  });

  it("times out the first request on a new socket after timeoutMs even when connectTimeoutMs is longer", async () => {
    const peer = await fake(blackHole); // the TCP connect succeeds at once
    const client = newClient(peer.endpoint, { timeoutMs: 150, connectTimeoutMs: 1000 });
    const { ms, result } = await timed(() => client.get("k"));
    expect(rejection(result)).toBeInstanceOf(MemcacheTimeoutError);
    expect(ms).toBeLessThan(150 + 250);
  });

  it("fails a TLS connect whose handshake never completes with MemcacheTimeoutError after connectTimeoutMs", async () => {
    const peer = await fake(blackHole);
    const client = newClient(peer.endpoint, { tls: true, connectTimeoutMs: 150, timeoutMs: 1000 });
    const { ms, result } = await timed(() => client.get("k"));
    const error = rejection(result);
    expect(error).toBeInstanceOf(MemcacheTimeoutError);
    expect((error as Error).message).toMatch(/connectTimeoutMs/);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(150 + 250);
  });

  it("fails a never-completing TLS handshake on connectTimeoutMs, not on the shorter timeoutMs", async () => {
    const peer = await fake(blackHole); // accepts TCP, never answers the ClientHello
    const client = newClient(peer.endpoint, { tls: true, connectTimeoutMs: 300, timeoutMs: 100 });
    const { ms, result } = await timed(() => client.get("k"));
    const error = rejection(result);
    expect(error).toBeInstanceOf(MemcacheTimeoutError);
    expect((error as Error).message).toMatch(/within 300 ms \(connectTimeoutMs\)/);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(300 + 250);
  });

  it("answers a request made during a TLS handshake slower than timeoutMs (its time starts once connected)", async ({
    certs,
    tlsMemcached,
  }) => {
    // The server's first flight (ServerHello...) is held 400 ms; everything after flows freely.
    const relay = await fake(holdFirstReply(tlsMemcached, 400));
    const client = newClient(relay.endpoint, {
      tls: { ca: certs.caPem, servername: certs.serverName },
      connectTimeoutMs: 5_000,
      timeoutMs: 250,
    });
    const { ms, result } = await timed(() => client.get("tls:slow-handshake"));
    expect(result).toEqual({ status: "fulfilled", value: undefined });
    expect(ms).toBeGreaterThanOrEqual(390);
  });
});

/** A relay to `target` that holds the target's first chunk to the client `holdMs`. */
function holdFirstReply(target: { host: string; port: number }, holdMs: number) {
  return (socket: Socket) => {
    const upstream = netConnect({ host: target.host, port: target.port });
    let first = true;
    upstream.on("data", (chunk: Buffer) => {
      if (!first) return void socket.write(chunk);
      first = false;
      upstream.pause();
      setTimeout(() => {
        socket.write(chunk);
        upstream.resume();
      }, holdMs);
    });
    socket.on("data", (chunk: Buffer) => upstream.write(chunk));
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    for (const side of [socket, upstream]) {
      side.on("error", end);
      side.on("close", end);
    }
  };
}

describe("a process that was busy or descheduled past timeoutMs (a throttled Lambda)", () => {
  /** Keeps this thread busy for `ms`, the way a GC pause or CPU-bound handler code does. */
  function block(ms: number): void {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      // busy
    }
  }

  it("resolves a reply that arrived while the event loop was blocked past timeoutMs", async ({
    memcached: server,
  }) => {
    const client = newClient(server.endpoint, { timeoutMs: 100 });
    await client.set("busy", "v");
    for (let i = 0; i < 3; i++) {
      const pending = client.get("busy");
      process.nextTick(block, 150); // after the write, before the reply is read
      expect(await pending).toBe("v");
    }
    expect(client.nodes[0]!.isDead).toBe(false);
  });

  it("counts timeoutMs from the write, not from the call, when the caller blocks right after it", async ({
    memcached: server,
  }) => {
    const client = newClient(server.endpoint, { timeoutMs: 100 });
    await client.set("busy-sync", "v");
    for (let i = 0; i < 3; i++) {
      const pending = client.get("busy-sync");
      block(150); // before the command has even been written
      expect(await pending).toBe("v");
    }
  });
});

describe("a paused memcached (SIGSTOP)", () => {
  it.afterEach(({ memcached }) => {
    memcached.resume();
  });

  it("times out while paused and answers again after resume", async ({ memcached: server }) => {
    const client = newClient(server.endpoint, {
      timeoutMs: 150,
      failuresBeforeDead: 2,
      deadRetryMs: 300,
    });
    const node = client.nodes[0]!;
    await client.set("paused", "before");

    await server.pause();
    for (let attempt = 1; attempt <= 2; attempt++) {
      const { ms, result } = await timed(() => client.get("paused"));
      expect(rejection(result), `attempt ${attempt}`).toBeInstanceOf(MemcacheTimeoutError);
      expect(ms, `attempt ${attempt}`).toBeLessThan(150 + 250);
    }
    expect(node.isDead).toBe(true);
    // Then refused without waiting (README: "then ~0"); 50 ms is slack for a loaded machine.
    const dead = await timed(() => client.get("paused"));
    expect(rejection(dead.result)).toBeInstanceOf(MemcacheNodeDeadError);
    expect(dead.ms).toBeLessThan(50);

    server.resume();
    await vi.waitFor(() => expect(node.isDead).toBe(false), { timeout: 1_000, interval: 20 });
    expect(await client.get("paused")).toBe("before");
    expect(await client.set("paused", "after")).toBe(true);
    expect(await client.get("paused")).toBe("after");
  });
});

describe("a memcached that restarts or stops", () => {
  it("reconnects by itself after a restart between two calls", async ({ memcached: server }) => {
    const client = newClient(server.endpoint, { deadRetryMs: 300 });
    await client.set("restart", "before");
    await server.restart();

    const first = await timed(() => client.get("restart"));
    if (first.result.status === "rejected") {
      expect(first.result.reason).toBeInstanceOf(MemcacheConnectionClosedError);
    } else {
      expect(first.result.value).toBeUndefined(); // a new process starts empty
    }
    expect(await client.set("restart", "after")).toBe(true);
    expect(await client.get("restart")).toBe("after");
  });

  it("refuses fast while stopped, marks the node dead, and recovers after deadRetryMs once it is back", async ({
    memcached: server,
  }) => {
    const client = newClient(server.endpoint, { failuresBeforeDead: 2, deadRetryMs: 300 });
    const node = client.nodes[0]!;
    expect(await client.set("stop", "x")).toBe(true);
    await server.stop();

    for (let attempt = 1; attempt <= 2; attempt++) {
      const { ms, result } = await timed(() => client.get("stop"));
      const error = rejection(result);
      expect(error, `attempt ${attempt}`).toBeInstanceOf(MemcacheConnectionClosedError);
      expect((error as Error).message, `attempt ${attempt}`).toMatch(/ECONNREFUSED/);
      expect(ms, `attempt ${attempt}`).toBeLessThan(100);
    }

    expect(node.isDead).toBe(true);
    const dead = await timed(() => client.get("stop"));
    expect(rejection(dead.result)).toBeInstanceOf(MemcacheNodeDeadError);
    expect(dead.ms).toBeLessThan(50); // README: under 50 ms on a loaded machine; timeoutMs would be 100+
    expect(node.isOpen).toBe(false); // refused without connecting

    await server.restart();
    await vi.waitFor(() => expect(node.isDead).toBe(false), { timeout: 1_000, interval: 20 });
    expect(await client.set("stop", "back")).toBe(true);
    expect(await client.get("stop")).toBe("back");
  });
});

describe("a server that breaks the protocol", () => {
  it.each([
    ["answers get with garbage", "HELLO\r\n"],
    ["announces a wrong byte count", "VALUE k 0 5\r\nabcdefgh\r\nEND\r\n"],
    ["sends a malformed VALUE header", "VALUE k x 5\r\nabcde\r\nEND\r\n"],
    ["answers get with CALUE for VALUE", "CALUE k 0 5\r\nabcde\r\nEND\r\n"],
    ["announces flags over 32 bits", "VALUE k 4294967296 5\r\nabcde\r\nEND\r\n"],
  ])("rejects when it %s, fails the queued requests too, and reconnects", async (_name, reply) => {
    // First connection misbehaves; later ones answer every get with a miss.
    const peer = await fake(answerLines((_line, index) => (index === 0 ? reply : "END\r\n")));
    const client = newClient(peer.endpoint);

    const [first, ...queued] = await Promise.allSettled([
      client.get("k"),
      client.get("k2"),
      client.get("k3"),
    ]);
    expect(rejection(first!)).toBeInstanceOf(MemcacheProtocolError);
    for (const outcome of queued) expect(rejection(outcome)).toBeInstanceOf(MemcacheError);
    expect(client.nodes[0]!.isOpen).toBe(false);

    expect(await client.get("k")).toBeUndefined();
    expect(peer.connections).toBe(2);
  });
});

describe("a server that answers with an error line", () => {
  it("resets the socket after CLIENT_ERROR to a command with data: a server out of step cannot answer the next request", async () => {
    // As memcached after a bad data chunk: CLIENT_ERROR, and then the rest of the chunk read as
    // a command of its own, whose ERROR comes before the next request's reply.
    const outOfStep = new Set<number>();
    const peer = await fake(
      answerLines((line, connection) => {
        if (line.startsWith("set boom ")) {
          outOfStep.add(connection);
          return "CLIENT_ERROR bad data chunk\r\n";
        }
        if (line.startsWith("set ")) return "";
        return outOfStep.has(connection) ? "ERROR\r\nEND\r\n" : "END\r\n";
      }),
    );
    const client = newClient(peer.endpoint);

    // The get pipelined behind the set would read the data block's ERROR as its reply.
    const [refused, behind] = await Promise.allSettled([
      client.set("boom", "x"),
      client.get("behind"),
    ]);
    expect(rejection(refused!)).toBeInstanceOf(MemcacheClientError);
    expect(rejection(behind!)).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(await client.get("next")).toBeUndefined();
    expect(peer.connections).toBe(2);
  });

  it("resets the socket after ERROR to a command that carried data: the data, read as a command, never answers the next request", async () => {
    // A server that does not know the storage command reads its data block as a command: here
    // the value "get secret", whose reply would pair with the get pipelined behind the set.
    let dataLine = false;
    const peer = await fake(
      answerLines((line) => {
        if (dataLine) {
          dataLine = false;
          return line === "get secret" ? "VALUE secret 16 6\r\nsecret\r\nEND\r\n" : "ERROR\r\n";
        }
        if (line.startsWith("set ")) {
          dataLine = true;
          return "ERROR\r\n";
        }
        return "END\r\n";
      }),
    );
    const client = newClient(peer.endpoint);

    const [set, next] = await Promise.allSettled([
      client.set("k", "get secret"),
      client.get("next"),
    ]);
    expect(rejection(set!)).toBeInstanceOf(MemcacheUnknownCommandError);
    expect(rejection(next!)).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(await client.get("next")).toBeUndefined();
    expect(peer.connections).toBe(2);
  });

  it("keeps the socket after ERROR to a one-line command, and after SERVER_ERROR to a storage command", async () => {
    const peer = await fake(
      answerLines((line) => {
        if (line === "get boom") return "ERROR\r\n";
        if (line.startsWith("set ")) return "SERVER_ERROR object too large for cache\r\n";
        if (line === "data") return undefined; // the data block: memcached swallowed it
        return "END\r\n";
      }),
    );
    const client = newClient(peer.endpoint);

    await expect(client.get("boom")).rejects.toBeInstanceOf(MemcacheUnknownCommandError);
    await expect(client.set("k", "data")).rejects.toBeInstanceOf(MemcacheServerError);
    expect(await client.get("next")).toBeUndefined();
    expect(peer.connections).toBe(1);
  });
});

describe("close()", () => {
  it("rejects pending requests with MemcacheConnectionClosedError at once, and the next call reconnects", async () => {
    const peer = await fake(blackHole);
    const client = newClient(peer.endpoint, { timeoutMs: 5_000 });
    const pending = Promise.allSettled([client.get("k")]);
    await vi.waitFor(() => expect(peer.connections).toBe(1), { timeout: 1_000, interval: 5 });
    client.close();
    const settled = await orDeadline(pending, 50);
    expect(settled, "the pending get did not settle within 50 ms of close()").not.toBe("deadline");
    if (settled === "deadline") return;
    expect(rejection(settled[0])).toBeInstanceOf(MemcacheConnectionClosedError);
    expect(client.nodes[0]!.isDead).toBe(false); // closing is not a failure

    const again = Promise.allSettled([client.get("k")]);
    await vi.waitFor(() => expect(peer.connections).toBe(2), { timeout: 1_000, interval: 10 });
    client.close();
    expect(rejection((await again)[0])).toBeInstanceOf(MemcacheConnectionClosedError);
  });
});

describe("the process that uses the client", () => {
  it("exits by itself within 2 s after its last call, without close()", async ({
    memcached: server,
  }) => {
    const script = path.join(import.meta.dirname, "../fixtures/client-without-close.ts");
    const child = spawn(process.execPath, [script, server.endpoint], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let doneAt = 0;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (doneAt === 0 && stdout.includes("\n")) doneAt = performance.now();
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));

    try {
      await vi.waitFor(() => expect(doneAt || stderr).toBeTruthy(), {
        timeout: 10_000,
        interval: 10,
      });
      expect(stderr).toBe("");
      expect(stdout).toBe("done\n");
      const code = await orDeadline(exited, 2_000 - (performance.now() - doneAt));
      expect(code, "the child was still running 2 s after its last call").toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
