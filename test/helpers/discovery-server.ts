// A stand-in for an ElastiCache configuration endpoint: a loopback TCP (or TLS) server that
// answers `config get cluster` with the version and node list the test sets, and can be told to
// answer the next requests with scripted bytes (wrong byte count, no END, garbage) or ERROR.

import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { closeServer, type LoopbackAddress, listenOnLoopback } from "../../tools/ports.ts";
import { forEachLine } from "./fake-server.ts";

export interface DiscoveredNode {
  /** The node's DNS name as ElastiCache lists it (hashed onto the ring, checked against TLS). */
  host: string;
  /** Its IP address; "" to leave the field empty. */
  ip: string;
  port: number;
}

export interface DiscoveryServer extends LoopbackAddress {
  /** `config get cluster` requests received so far. */
  readonly requests: number;
  /** What the next well-formed answers carry. */
  setNodes(version: number, nodes: readonly DiscoveredNode[]): void;
  /** Sends exactly `bytes` instead of the configuration for the next `times` requests. */
  answerRaw(bytes: string | Buffer, times?: number): void;
  /** Answers `ERROR\r\n` for the next `times` requests. */
  answerError(times?: number): void;
  /** Drops any scripted answers still queued: every request gets the configuration again. */
  answerNormally(): void;
  /** The well-formed reply for the current version and nodes, as sent on the wire. */
  configReply(): Buffer;
  /** Destroys every accepted socket and stops listening. */
  close(): Promise<void>;
}

export interface DiscoveryServerOptions {
  /** Serve TLS with this certificate and key (ElastiCache with in-transit encryption). */
  tls?: { certFile: string; keyFile: string };
}

/** The `config get cluster` reply for `version` and `nodes`, byte count included. */
export function clusterConfigReply(version: number, nodes: readonly DiscoveredNode[]): Buffer {
  const entries = nodes.map((node) => `${node.host}|${node.ip}|${node.port}`).join(" ");
  const data = Buffer.from(`${version}\n${entries}\n`, "latin1");
  return Buffer.concat([
    Buffer.from(`CONFIG cluster 0 ${data.length}\r\n`, "latin1"),
    data,
    Buffer.from("\r\nEND\r\n", "latin1"),
  ]);
}

/** Starts the server on a free loopback port. */
export async function startDiscoveryServer(
  options: DiscoveryServerOptions = {},
): Promise<DiscoveryServer> {
  let version = 0;
  let nodes: readonly DiscoveredNode[] = [];
  let requests = 0;
  const scripted: Buffer[] = [];
  const sockets = new Set<net.Socket>();

  const answer = (socket: net.Socket, line: string): void => {
    if (line === "config get cluster") {
      requests++;
      socket.write(scripted.shift() ?? clusterConfigReply(version, nodes));
    } else if (line === "version") {
      socket.write("VERSION 1.6.22\r\n");
    } else {
      socket.write("ERROR\r\n");
    }
  };

  const onConnection = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {}); // clients reset sockets after a bad reply, on purpose
    forEachLine(socket, (line) => {
      if (!socket.destroyed) answer(socket, line);
    });
  };

  const server = options.tls
    ? tls.createServer(
        { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile) },
        onConnection,
      )
    : net.createServer(onConnection);
  // A client that refuses the certificate aborts the handshake; that is not a server failure.
  server.on("tlsClientError", () => {});

  const enqueue = (bytes: Buffer, times: number): void => {
    for (let i = 0; i < times; i++) scripted.push(bytes);
  };

  return {
    ...(await listenOnLoopback(server)),
    get requests() {
      return requests;
    },
    setNodes(nextVersion, nextNodes) {
      version = nextVersion;
      nodes = [...nextNodes];
    },
    answerRaw(bytes, times = 1) {
      enqueue(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes, times);
    },
    answerError(times = 1) {
      enqueue(Buffer.from("ERROR\r\n"), times);
    },
    answerNormally() {
      scripted.length = 0;
    },
    configReply: () => clusterConfigReply(version, nodes),
    close: () => closeServer(server, sockets),
  };
}
