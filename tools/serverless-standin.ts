// A local stand-in for ElastiCache Serverless for Memcached: a TLS server in front of a real
// memcached (plain text) that forwards what the service accepts and refuses what it refuses, as
// AWS's "Supported Memcached commands" page lists it:
//
//   - connections are TLS only (a plain-text client fails the handshake);
//   - a get/gets command line longer than maxGetLineBytes (16,000, "\r\n" included) is refused
//     with CLIENT_ERROR (AWS: "limited to 16KB"; the reply text is ours, the page names none);
//   - `stats` and `stats reset` only; any other stats variant answers ERROR;
//   - a delayed `flush_all <seconds>` (seconds > 0) is refused with CLIENT_ERROR;
//   - engine configuration and introspection (me, lru, lru_crawler, watch, verbosity, slabs,
//     config, ...) answer ERROR, so `config get cluster` answers ERROR as the service does;
//   - the binary protocol closes the connection.
//
// Tests run the client's limits against it, and `npm run dev` can put it in front of the new
// cache (CACHE_NEW_KIND=serverless). A refused command is answered in its place in the reply
// stream: commands after it are held until every reply before it has arrived, so pipelining
// stays correct. Quiet meta commands (the q flag: replies only on some outcomes) cannot be
// ordered that way and are refused with CLIENT_ERROR — this project's client never sends them.

import { readFile } from "node:fs/promises";
import net from "node:net";
import tls from "node:tls";
import { type ReplyHandler, ReplyParser } from "../lib/memcache/protocol.ts";
import { closeServer, type LoopbackAddress, loopback } from "./ports.ts";

export interface ServerlessStandInOptions {
  /** The memcached it fronts, reached in plain text. */
  target: { host: string; port: number };
  /** The certificate chain and key it serves TLS with (see tools/tls.ts). */
  tls: { certFile: string; keyFile: string };
  /** Longest get/gets command line accepted, "\r\n" included. Default 16,000 (16 KB). */
  maxGetLineBytes?: number;
  /** Port on 127.0.0.1; default a free one. */
  port?: number;
}

/** A command the stand-in answered itself instead of forwarding. */
export interface RefusedCommand {
  /** The command line, cut to 80 characters. */
  line: string;
  /** What it answered. */
  reply: string;
}

export interface ServerlessStandIn extends LoopbackAddress {
  /** TLS connections accepted so far (plain-text attempts that failed the handshake included). */
  readonly connections: number;
  /** Lengths in bytes ("\r\n" included) of every get/gets line received, in order. */
  readonly getLineBytes: readonly number[];
  /** Every command answered by the stand-in itself, in order. */
  readonly refused: readonly RefusedCommand[];
  /** Forgets getLineBytes and refused (between tests). */
  resetLog(): void;
  /** Destroys every connection and stops listening. */
  close(): Promise<void>;
}

export const defaultMaxGetLineBytes = 16_000;

/** How a reply to a forwarded command ends (see onLine). */
type ReplyShape = "line" | "multi" | "meta" | "none";

/** A command in reply order: forwarded to memcached, or answered here. */
type Slot =
  | { kind: "server"; shape: ReplyShape; bytes: Buffer | null }
  | { kind: "local"; reply: string };

const STORAGE_VERBS = new Set(["set", "add", "replace", "append", "prepend", "cas"]);
const MULTI_LINE_VERBS = new Set(["get", "gets", "gat", "gats", "stats"]);
const META_VERBS = new Set(["mg", "ms", "md", "ma", "mn"]);
// Commands that configure the engine or show its internals: ERROR on the service.
const UNSUPPORTED_VERBS = new Set([
  "me",
  "lru",
  "lru_crawler",
  "watch",
  "verbosity",
  "slabs",
  "config",
  "cache_memlimit",
  "shutdown",
  "extstore",
  "debugtime",
  "misbehave",
]);
/** A command line without "\n" longer than this closes the connection (memcached's own rule). */
const MAX_PENDING_LINE_BYTES = 1024 * 1024;

/** Starts the stand-in on 127.0.0.1 (TLS), forwarding to `options.target`. */
export async function startServerlessStandIn(
  options: ServerlessStandInOptions,
): Promise<ServerlessStandIn> {
  const [cert, key] = await Promise.all([
    readFile(options.tls.certFile),
    readFile(options.tls.keyFile),
  ]);
  const maxGetLineBytes = options.maxGetLineBytes ?? defaultMaxGetLineBytes;
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let getLineBytes: number[] = [];
  let refused: RefusedCommand[] = [];

  const server = tls.createServer({ cert, key }, (client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    serve(client, options.target, {
      maxGetLineBytes,
      onGetLine: (bytes) => getLineBytes.push(bytes),
      onRefused: (entry) => refused.push(entry),
    });
  });
  server.on("connection", (socket: net.Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  });
  server.on("tlsClientError", () => {}); // a plain-text client: its handshake fails, as it should

  const address = await new Promise<LoopbackAddress>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: loopback, port: options.port ?? 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({ host: loopback, port, endpoint: `${loopback}:${port}` });
    });
  });
  return {
    ...address,
    get connections() {
      return connections;
    },
    get getLineBytes() {
      return getLineBytes;
    },
    get refused() {
      return refused;
    },
    resetLog() {
      getLineBytes = [];
      refused = [];
    },
    close: () => closeServer(server, sockets),
  };
}

interface ServeHooks {
  maxGetLineBytes: number;
  onGetLine(bytes: number): void;
  onRefused(entry: RefusedCommand): void;
}

/** One client connection: its upstream socket, the command framer and the reply order. */
function serve(client: tls.TLSSocket, target: { host: string; port: number }, hooks: ServeHooks) {
  const upstream = net.connect({ host: target.host, port: target.port });
  upstream.setNoDelay(true);
  const slots: Slot[] = [];
  let pending: Buffer = Buffer.alloc(0);

  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const side of [client, upstream]) {
    side.on("error", end);
    side.on("close", end);
  }

  /** Sends what may go now: local replies at the head, forwarded commands up to the next local. */
  const pump = () => {
    let i = 0;
    while (i < slots.length) {
      const slot = slots[i]!;
      if (slot.kind === "local") {
        if (i > 0) return; // after the replies still owed before it
        slots.shift();
        client.write(slot.reply, "latin1");
        continue;
      }
      if (slot.bytes !== null) {
        upstream.write(slot.bytes);
        slot.bytes = null;
      }
      if (slot.shape === "none") slots.splice(i, 1);
      else i++;
    }
  };

  const replyDone = () => {
    const head = slots[0];
    if (head === undefined || head.kind !== "server") {
      end(); // a reply nobody asked for: memcached and the stand-in disagree
      return;
    }
    slots.shift();
    pump();
  };
  const handler: ReplyHandler = {
    onValue: () => {},
    onConfig: () => {},
    onMetaValue: () => replyDone(),
    onLine: (line) => {
      const head = slots[0];
      const shape = head?.kind === "server" ? head.shape : "line";
      if (shape !== "multi" || line === "END" || isErrorLine(line)) replyDone();
    },
  };
  const parser = new ReplyParser(handler, {
    maxLineBytes: 1024 * 1024,
    maxReplyValueBytes: 1024 * 1024 * 1024,
  });
  upstream.on("data", (chunk: Buffer) => {
    // Forwarded as it comes: a local reply waits for the replies before it (pump), and nothing
    // after a local reply has been forwarded yet, so the chunk holds no reply that follows one.
    client.write(chunk);
    try {
      parser.feed(chunk);
    } catch {
      end();
    }
  });

  client.on("data", (chunk: Buffer) => {
    if (pending.length === 0 && chunk[0] === 0x80) return end(); // binary protocol
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      const command = nextCommand(pending);
      if (command === "incomplete") {
        if (pending.length > MAX_PENDING_LINE_BYTES && pending.indexOf(10) === -1) end();
        break;
      }
      pending = pending.subarray(command.bytes.length);
      slots.push(slotFor(command, hooks));
      pump();
    }
  });
}

interface Command {
  /** The command line without its line end. */
  line: string;
  /** Length of the line with its "\r\n" (or "\n"). */
  lineBytes: number;
  tokens: string[];
  /** The whole command: line and data block. */
  bytes: Buffer;
}

/** The first complete command in `buffer` (a line, plus a data block for storage and ms). */
function nextCommand(buffer: Buffer): Command | "incomplete" {
  const lf = buffer.indexOf(10);
  if (lf === -1) return "incomplete";
  const lineEnd = lf > 0 && buffer[lf - 1] === 13 ? lf - 1 : lf;
  const line = buffer.toString("latin1", 0, lineEnd);
  const tokens = line.split(" ").filter((token) => token !== "");
  const verb = tokens[0] ?? "";
  let dataBytes = 0;
  if (STORAGE_VERBS.has(verb)) dataBytes = Number(tokens[4]);
  else if (verb === "ms") dataBytes = Number(tokens[2]);
  const total = lf + 1 + (Number.isSafeInteger(dataBytes) && dataBytes > 0 ? dataBytes + 2 : 0);
  if (buffer.length < total) return "incomplete";
  return { line, lineBytes: lf + 1, tokens, bytes: buffer.subarray(0, total) };
}

/** Where a command's reply comes from: memcached, or the stand-in's refusal. */
function slotFor(command: Command, hooks: ServeHooks): Slot {
  const { tokens, line } = command;
  const verb = tokens[0] ?? "";
  const refuse = (reply: string): Slot => {
    hooks.onRefused({ line: line.slice(0, 80), reply });
    return { kind: "local", reply: `${reply}\r\n` };
  };
  if (verb === "get" || verb === "gets") {
    hooks.onGetLine(command.lineBytes);
    if (command.lineBytes > hooks.maxGetLineBytes) {
      return refuse(`CLIENT_ERROR ${verb} line of ${command.lineBytes} bytes over the 16KB limit`);
    }
  }
  if (
    verb === "stats" &&
    !(tokens.length === 1 || (tokens.length === 2 && tokens[1] === "reset"))
  ) {
    return refuse("ERROR");
  }
  if (verb === "flush_all" && /^[0-9]+$/.test(tokens[1] ?? "") && Number(tokens[1]) > 0) {
    return refuse("CLIENT_ERROR delayed flush_all is not supported");
  }
  if (UNSUPPORTED_VERBS.has(verb)) return refuse("ERROR");
  if (META_VERBS.has(verb) && tokens.slice(2).includes("q")) {
    return refuse("CLIENT_ERROR the stand-in does not order quiet meta commands");
  }
  let shape: ReplyShape = "line";
  if (verb === "stats" && tokens[1] === "reset") shape = "line";
  else if (MULTI_LINE_VERBS.has(verb)) shape = "multi";
  else if (META_VERBS.has(verb)) shape = "meta";
  else if (tokens.at(-1) === "noreply" || verb === "quit") shape = "none";
  return { kind: "server", shape, bytes: command.bytes };
}

function isErrorLine(line: string): boolean {
  return line === "ERROR" || line.startsWith("CLIENT_ERROR") || line.startsWith("SERVER_ERROR");
}
