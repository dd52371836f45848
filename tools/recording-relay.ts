// A loopback TCP relay in front of a real memcached that records every byte the client sends
// (per connection), and a checker for that stream: every line must be one well-formed command
// of the memcached text or meta protocol with a key of 1..250 printable ASCII bytes, or the data
// block a storage command announced. So a test sees exactly what memcached received, without
// memcached's -vv log. It also counts request/reply exchanges per connection (tests and
// bench:client's cold-start figure).

import net from "node:net";
import { closeServer, type LoopbackAddress, listenOnLoopback } from "./ports.ts";

export interface RecordingRelay extends LoopbackAddress {
  /** Client -> server bytes of each connection accepted so far, in order of acceptance. */
  streams(): Buffer[];
  /**
   * Request/reply exchanges of each connection so far: bytes from the client that arrive after
   * the server said something since the client's previous bytes start a new exchange (so
   * requests pipelined in one write are one exchange; a request sent after waiting for a reply
   * is another). The TCP handshake is not counted.
   */
  exchanges(): number[];
  /** Forgets what was recorded (open connections go on recording from here). */
  clear(): void;
  /** Destroys every socket and stops listening. */
  close(): Promise<void>;
}

/** Starts a relay on a free loopback port that forwards to `target` and records. */
export async function startRecordingRelay(target: {
  host: string;
  port: number;
}): Promise<RecordingRelay> {
  // One record per connection: its client bytes and its exchange count.
  let recorded: Array<{ chunks: Buffer[]; exchanges: number }> = [];
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    let current = { chunks: [] as Buffer[], exchanges: 0 };
    recorded.push(current);
    let answeredSinceRequest = true;
    const upstream = net.connect({ host: target.host, port: target.port });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on("error", () => {}); // clients reset sockets on purpose
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => {
      // clear() replaces `recorded`; keep recording this connection into the new list.
      if (!recorded.includes(current)) {
        current = { chunks: [], exchanges: 0 };
        recorded.push(current);
      }
      current.chunks.push(Buffer.from(chunk));
      if (answeredSinceRequest) current.exchanges++;
      answeredSinceRequest = false;
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      answeredSinceRequest = true;
      client.write(chunk);
    });
  });

  return {
    ...(await listenOnLoopback(server)),
    streams: () => recorded.map((record) => Buffer.concat(record.chunks)),
    exchanges: () => recorded.map((record) => record.exchanges),
    clear: () => {
      recorded = [];
    },
    close: () => closeServer(server, sockets),
  };
}

// ---- the command grammar ----

/** One command as memcached received it. */
export interface ReceivedCommand {
  verb: string;
  /** The keys it names (get/gets may name several). */
  keys: string[];
  /** The command line, without its \r\n. */
  line: string;
  /** Length of the data block after the line (storage commands), else undefined. */
  dataBytes: number | undefined;
}

export interface CommandStreamCheck {
  commands: ReceivedCommand[];
  /** Every violation of the grammar, with its byte offset; empty when the stream is clean. */
  errors: string[];
}

const KEY = /^[\x21-\x7e]{1,250}$/;
const UINT = /^[0-9]{1,20}$/;
const EXPTIME = /^-?[0-9]{1,11}$/;
const META_FLAG = /^[A-Za-z][\x21-\x7e]*$/;

/**
 * Splits a client -> server stream into commands and checks each against the grammar:
 *   get|gets <key>+            gat|gats <exptime> <key>+
 *   set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]  + data block
 *   cas <key> <flags> <exptime> <bytes> <cas> [noreply]                       + data block
 *   delete <key> [noreply]     incr|decr <key> <delta>     touch <key> <exptime>
 *   mg|md|ma <key> <flag>*     ms <key> <datalen> <flag>*  + data block        mn
 *   version | stats [group] | flush_all [delay] | config get <name>
 * A line may not contain \r, \n or NUL and tokens are separated by exactly one space.
 */
export function checkCommandStream(stream: Buffer): CommandStreamCheck {
  const commands: ReceivedCommand[] = [];
  const errors: string[] = [];
  let offset = 0;
  while (offset < stream.length) {
    const end = stream.indexOf("\r\n", offset);
    if (end === -1) {
      errors.push(`@${offset}: incomplete command line ${show(stream, offset, stream.length)}`);
      break;
    }
    const line = stream.toString("latin1", offset, end);
    const at = offset;
    offset = end + 2;
    const problem = lineProblem(line);
    if (problem !== undefined) {
      errors.push(`@${at}: ${problem}: ${JSON.stringify(line.slice(0, 200))}`);
      continue;
    }
    const command = parseCommand(line);
    if (typeof command === "string") {
      errors.push(`@${at}: ${command}: ${JSON.stringify(line.slice(0, 200))}`);
      continue;
    }
    commands.push(command);
    if (command.dataBytes !== undefined) {
      const dataEnd = offset + command.dataBytes;
      if (dataEnd + 2 > stream.length) {
        errors.push(`@${offset}: data block of ${command.dataBytes} bytes cut short`);
        break;
      }
      if (stream[dataEnd] !== 0x0d || stream[dataEnd + 1] !== 0x0a) {
        errors.push(`@${dataEnd}: data block not followed by \\r\\n (announced size is wrong)`);
      }
      offset = dataEnd + 2;
    }
  }
  return { commands, errors };
}

function lineProblem(line: string): string | undefined {
  if (/[\r\n\0]/.test(line)) return "control character inside a command line";
  if (line.length === 0) return "empty command line";
  if (line.includes("  ") || line.startsWith(" ") || line.endsWith(" ")) return "stray space";
  if (!/^[\x20-\x7e]*$/.test(line)) return "non-ASCII byte in a command line";
  return undefined;
}

function parseCommand(line: string): ReceivedCommand | string {
  const [verb = "", ...args] = line.split(" ");
  const command = (keys: string[], dataBytes?: number): ReceivedCommand | string => {
    const bad = keys.find((key) => !KEY.test(key));
    if (bad !== undefined) return `invalid key ${JSON.stringify(bad)}`;
    return { verb, keys, line, dataBytes };
  };
  const noreply = (rest: string[]) =>
    rest.length === 0 || (rest.length === 1 && rest[0] === "noreply");
  switch (verb) {
    case "get":
    case "gets":
      return args.length >= 1 ? command(args) : "no key";
    case "gat":
    case "gats":
      return args.length >= 2 && EXPTIME.test(args[0]!) ? command(args.slice(1)) : "bad gat";
    case "cas":
    case "set":
    case "add":
    case "replace":
    case "append":
    case "prepend": {
      const fixed = verb === "cas" ? 5 : 4;
      const [key = "", flags = "", exptime = "", bytes = ""] = args;
      if (
        args.length < fixed ||
        !UINT.test(flags) ||
        !EXPTIME.test(exptime) ||
        !UINT.test(bytes) ||
        (verb === "cas" && !UINT.test(args[4]!)) ||
        !noreply(args.slice(fixed))
      ) {
        return `bad ${verb} line`;
      }
      return command([key], Number(bytes));
    }
    case "delete":
      return args.length >= 1 && noreply(args.slice(1)) ? command([args[0]!]) : "bad delete";
    case "incr":
    case "decr":
      return args.length === 2 && UINT.test(args[1]!) ? command([args[0]!]) : `bad ${verb}`;
    case "touch":
      return args.length === 2 && EXPTIME.test(args[1]!) ? command([args[0]!]) : "bad touch";
    case "mg":
    case "md":
    case "ma":
      if (args.length < 1) return "no key";
      if (!args.slice(1).every((flag) => META_FLAG.test(flag))) return "bad meta flag";
      return command([args[0]!]);
    case "ms": {
      if (args.length < 2 || !UINT.test(args[1]!)) return "bad ms line";
      if (!args.slice(2).every((flag) => META_FLAG.test(flag))) return "bad meta flag";
      return command([args[0]!], Number(args[1]));
    }
    case "mn":
    case "version":
      return args.length === 0 ? command([]) : `bad ${verb}`;
    case "stats":
      return args.length <= 1 ? command([]) : "bad stats";
    case "flush_all":
      return args.length === 0 || (args.length === 1 && UINT.test(args[0]!))
        ? command([])
        : "bad flush_all";
    case "config":
      return args.length === 2 && args[0] === "get" ? command([]) : "bad config";
    default:
      return `unknown command ${JSON.stringify(verb.slice(0, 40))}`;
  }
}

function show(stream: Buffer, from: number, to: number): string {
  return JSON.stringify(stream.toString("latin1", from, Math.min(to, from + 200)));
}
