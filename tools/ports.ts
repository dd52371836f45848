// Ports on loopback for tests, benchmarks and the local stack: a free port the kernel picks,
// whether a fixed port can be bound right now, listening a server on a free port, and a close
// that does not wait for open sockets.

import net from "node:net";

export const loopback = "127.0.0.1";

export interface LoopbackAddress {
  host: "127.0.0.1";
  port: number;
  /** "127.0.0.1:port", for MemcacheClient's servers. */
  endpoint: string;
}

/** A port on `host` that was free a moment ago (the kernel picks it). */
export function freePort(host: string = loopback): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** undefined if `host:port` can be bound right now, else the error code (e.g. "EADDRINUSE"). */
export function bindProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

/** Listens on a free 127.0.0.1 port (the kernel picks it) and resolves with the address. */
export function listenOnLoopback(server: net.Server): Promise<LoopbackAddress> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: loopback, port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({ host: loopback, port, endpoint: `${loopback}:${port}` });
    });
  });
}

/** Destroys `sockets`, then stops listening; resolves once the server has closed. */
export function closeServer(server: net.Server, sockets: Iterable<net.Socket>): Promise<void> {
  return new Promise((done) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => done());
  });
}
