// Listening and closing for the loopback test servers (fake peers, discovery endpoint, relays,
// the fault proxy): a free port on 127.0.0.1, and a close that does not wait for open sockets.

import type net from "node:net";

export interface LoopbackAddress {
  host: "127.0.0.1";
  port: number;
  /** "127.0.0.1:port", for MemcacheClient's servers. */
  endpoint: string;
}

/** Listens on a free 127.0.0.1 port (the kernel picks it) and resolves with the address. */
export function listenOnLoopback(server: net.Server): Promise<LoopbackAddress> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({ host: "127.0.0.1", port, endpoint: `127.0.0.1:${port}` });
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
