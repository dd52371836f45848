// The dead-node rule of a connection, against scripted TCP peers: consecutive failures mark a
// node dead, any reply resets the count, a dead node is refused without being contacted, and
// after deadRetryMs exactly one request probes it while every other request is refused at once
// until that probe is answered (or fails, and the node is dead for another deadRetryMs).
//
// Load: the bounds here are counts (requests that reached the peer), not times, except "refused
// at once", which allows 50 ms for a refusal that sends nothing; that holds on a loaded machine
// (the suite's other files plus two CPU-bound processes on 2 cores).

import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, vi } from "vitest";
import type { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  MemcacheClientError,
  MemcacheConnectionClosedError,
  MemcacheNodeDeadError,
} from "../../lib/memcache/errors.ts";
import { rejection, timed } from "../helpers/client.ts";
import { type FakeServer, forEachLine, startFakeServer } from "../helpers/fake-server.ts";
import { it } from "../helpers/fixtures.ts";

const fakes: FakeServer[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((server) => server.close()));
});

/**
 * A peer that, while `up`, answers every `get` with END after `answerDelayMs` (and `set
 * client-error` with CLIENT_ERROR), and while down closes each connection as soon as it has
 * read a chunk. `lines` counts the request lines that reached it.
 */
async function scriptedPeer() {
  const state = { up: true, answerDelayMs: 0, lines: 0 };
  const server = await startFakeServer((socket) => {
    let dataLine = false;
    forEachLine(socket, (line) => {
      state.lines++;
      if (!state.up) {
        socket.destroy();
        return;
      }
      if (dataLine) {
        dataLine = false; // a set's data block: already answered
        return;
      }
      dataLine = line.startsWith("set ");
      const reply = line.startsWith("set client-error ")
        ? "CLIENT_ERROR bad data chunk\r\n"
        : line.startsWith("set ")
          ? "STORED\r\n"
          : "END\r\n";
      const answer = () => {
        if (!socket.destroyed) socket.write(reply);
      };
      if (state.answerDelayMs > 0) setTimeout(answer, state.answerDelayMs);
      else answer();
    });
  });
  fakes.push(server);
  return { server, state };
}

/** Runs `count` gets at once; their outcomes, and how long each took to settle. */
async function concurrentGets(client: MemcacheClient, count: number) {
  return Promise.all(Array.from({ length: count }, (_, i) => timed(() => client.get(`k${i}`))));
}

describe("the failure count", () => {
  it("is reset by a reply: failure, answer, failure leaves the node alive", async ({
    openClient,
  }) => {
    const { server, state } = await scriptedPeer();
    const client = openClient(server.endpoint, { failuresBeforeDead: 2, deadRetryMs: 60_000 });
    const node = client.nodes[0]!;

    state.up = false;
    await expect(client.get("a")).rejects.toBeInstanceOf(MemcacheConnectionClosedError);
    state.up = true;
    expect(await client.get("b")).toBeUndefined();
    state.up = false;
    await expect(client.get("c")).rejects.toBeInstanceOf(MemcacheConnectionClosedError);

    expect(node.isDead).toBe(false);
    state.up = true;
    const linesBefore = state.lines;
    expect(await client.get("d")).toBeUndefined(); // sent, not refused
    expect(state.lines).toBe(linesBefore + 1);
  });

  it("counts consecutive failures: two in a row mark the node dead", async ({ openClient }) => {
    const { server, state } = await scriptedPeer();
    const client = openClient(server.endpoint, { failuresBeforeDead: 2, deadRetryMs: 60_000 });

    state.up = false;
    for (const key of ["a", "b"]) {
      await expect(client.get(key)).rejects.toBeInstanceOf(MemcacheConnectionClosedError);
    }
    expect(client.nodes[0]!.isDead).toBe(true);
    const linesBefore = state.lines;
    await expect(client.get("c")).rejects.toBeInstanceOf(MemcacheNodeDeadError);
    expect(state.lines).toBe(linesBefore);
  });

  it("is not raised by an error reply that resets the socket: the server answered", async ({
    openClient,
  }) => {
    const { server, state } = await scriptedPeer();
    const client = openClient(server.endpoint, { failuresBeforeDead: 1, deadRetryMs: 60_000 });

    // CLIENT_ERROR to a command with data resets the socket, and the get queued behind it fails
    // with it.
    const [refused, queued] = await Promise.allSettled([
      client.set("client-error", "x"),
      client.get("behind"),
    ]);
    expect(rejection(refused!)).toBeInstanceOf(MemcacheClientError);
    expect(rejection(queued!)).toBeInstanceOf(MemcacheConnectionClosedError);

    expect(client.nodes[0]!.isDead).toBe(false);
    const linesBefore = state.lines;
    expect(await client.get("next")).toBeUndefined();
    expect(state.lines).toBe(linesBefore + 1);
  });
});

describe("after deadRetryMs", () => {
  const deadRetryMs = 300;

  /** A client of a peer that is down, its node marked dead by two refused gets. */
  async function deadNode(openClient: (servers: string, options?: object) => MemcacheClient) {
    const peer = await scriptedPeer();
    const client = openClient(peer.server.endpoint, { failuresBeforeDead: 2, deadRetryMs });
    peer.state.up = false;
    for (const key of ["a", "b"]) {
      await expect(client.get(key)).rejects.toBeInstanceOf(MemcacheConnectionClosedError);
    }
    expect(client.nodes[0]!.isDead).toBe(true);
    return { ...peer, client };
  }

  it("sends one probe of 20 concurrent gets and refuses the other 19 at once until it is answered", async ({
    openClient,
  }) => {
    const { client, state } = await deadNode(openClient);
    state.up = true;
    state.answerDelayMs = 200; // the probe's answer takes a while: the others must not wait for it
    await delay(deadRetryMs); // the dead period is the condition under test

    const linesBefore = state.lines;
    const runs = await concurrentGets(client, 20);

    expect(state.lines - linesBefore).toBe(1);
    const probes = runs.filter((run) => run.result.status === "fulfilled");
    expect(probes).toHaveLength(1);
    expect(probes[0]!.ms).toBeGreaterThanOrEqual(190);
    const refused = runs.filter((run) => run.result.status === "rejected");
    for (const { ms, result } of refused) {
      const error = rejection(result);
      expect(error).toBeInstanceOf(MemcacheNodeDeadError);
      expect((error as Error).message).toMatch(/probing/);
      expect(ms).toBeLessThan(50);
    }

    // Answered: the node is back, and every request goes out again.
    expect(client.nodes[0]!.isDead).toBe(false);
    state.answerDelayMs = 0;
    const after = await concurrentGets(client, 20);
    expect(after.map((run) => run.result.status)).toEqual(after.map(() => "fulfilled"));
    expect(state.lines - linesBefore).toBe(21);
  });

  it("marks the node dead for another deadRetryMs when the one probe fails", async ({
    openClient,
  }) => {
    const { client, state, server } = await deadNode(openClient);
    await delay(deadRetryMs); // still down

    const linesBefore = state.lines;
    const connectionsBefore = server.connections;
    const runs = await concurrentGets(client, 20);

    expect(state.lines - linesBefore).toBe(1);
    expect(server.connections - connectionsBefore).toBe(1);
    const errors = runs.map((run) => rejection(run.result));
    expect(errors.filter((e) => e instanceof MemcacheConnectionClosedError)).toHaveLength(1);
    expect(errors.filter((e) => e instanceof MemcacheNodeDeadError)).toHaveLength(19);

    expect(client.nodes[0]!.isDead).toBe(true);
    const again = await timed(() => client.get("k"));
    expect((rejection(again.result) as Error).message).toMatch(/retrying in \d+ ms/);
    expect(state.lines - linesBefore).toBe(1);

    // Back after the next dead period: one probe, answered, and the node is used again.
    state.up = true;
    await vi.waitFor(
      async () => {
        expect(await client.get("k")).toBeUndefined();
      },
      { timeout: deadRetryMs * 5, interval: 50 },
    );
    expect(client.nodes[0]!.isDead).toBe(false);
  });

  it("leaves the next request to probe when the client closes the socket of a probe in flight", async ({
    openClient,
  }) => {
    const { client, state } = await deadNode(openClient);
    state.up = true;
    state.answerDelayMs = 5_000; // the probe is never answered before close()
    await delay(deadRetryMs);

    const probe = timed(() => client.get("probe"));
    await vi.waitFor(() => expect(state.lines).toBeGreaterThan(2), { timeout: 1_000, interval: 5 });
    client.close();
    expect(rejection((await probe).result)).toBeInstanceOf(MemcacheConnectionClosedError);

    state.answerDelayMs = 0;
    expect(await client.get("next")).toBeUndefined();
    expect(client.nodes[0]!.isDead).toBe(false);
  });
});
