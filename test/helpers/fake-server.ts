// Misbehaving memcached peers for fault tests: small node:net servers on loopback that close at
// once, never answer, or answer each request line with whatever the test scripts (garbage, wrong
// byte counts). Each counts the connections it accepted, so tests can see reconnects.

import net from "node:net";
import { closeServer, type LoopbackAddress, listenOnLoopback } from "../../tools/ports.ts";

export interface FakeServer extends LoopbackAddress {
  /** Connections accepted so far. */
  readonly connections: number;
  /** Destroys every accepted socket and stops listening. */
  close(): Promise<void>;
}

/** Called for each accepted socket with its 0-based index among this server's connections. */
export type ConnectionBehaviour = (socket: net.Socket, index: number) => void;

/** Starts a TCP server on a free loopback port that treats each connection as `behaviour` says. */
export async function startFakeServer(behaviour: ConnectionBehaviour): Promise<FakeServer> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {}); // the client resets sockets on purpose
    behaviour(socket, connections++);
  });
  return {
    ...(await listenOnLoopback(server)),
    get connections() {
      return connections;
    },
    close: () => closeServer(server, sockets),
  };
}

/** Accepts and closes at once, without a byte of reply. */
export const closeImmediately: ConnectionBehaviour = (socket) => {
  socket.destroy();
};

/** Accepts, reads and discards everything, never answers (also not a TLS handshake). */
export const blackHole: ConnectionBehaviour = (socket) => {
  socket.resume();
};

/**
 * Answers every complete request line with `reply(line, connectionIndex)` (a string is sent as
 * latin1; nothing when it returns undefined). Only for line commands such as get: data blocks
 * are not skipped.
 */
export function answerLines(
  reply: (line: string, connectionIndex: number) => string | Buffer | undefined,
): ConnectionBehaviour {
  return (socket, index) =>
    forEachLine(socket, (line) => {
      const answer = reply(line, index);
      if (answer !== undefined && !socket.destroyed) socket.write(answer, "latin1");
    });
}

/** Calls `onLine` with each complete line (without its \r\n) `socket` receives, read as latin1. */
export function forEachLine(socket: net.Socket, onLine: (line: string) => void): void {
  let buffered = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let end = buffered.indexOf("\r\n"); end !== -1; end = buffered.indexOf("\r\n")) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      onLine(line);
    }
  });
}
