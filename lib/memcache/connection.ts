// One memcached node: one socket (plain or TLS), opened lazily and reused across invocations,
// many requests pipelined on it and answered in order. Any failure (reset, close, timeout,
// protocol violation) destroys the socket and rejects everything queued on it at once; the next
// request reconnects. A node that keeps failing is marked dead and refused without waiting.

import net from "node:net";
import tls from "node:tls";
import { formatAddress, type NodeAddress } from "./address.ts";
import { type CommandContext, commandChannel } from "./diagnostics.ts";
import {
  MemcacheClientError,
  MemcacheConnectionClosedError,
  type MemcacheError,
  MemcacheNodeDeadError,
  MemcacheProtocolError,
  MemcacheServerError,
  MemcacheTimeoutError,
  MemcacheUnknownCommandError,
} from "./errors.ts";
import { countRule, msRule, type OptionRules, show } from "./options.ts";
import { type MetaReply, parseMetaFlags, type ReplyHandler, ReplyParser } from "./protocol.ts";

export interface ConnectionOptions {
  /** Time allowed to open the socket (and finish the TLS handshake). Default 200 ms. */
  connectTimeoutMs: number;
  /**
   * Time allowed from sending a request to its complete reply; a request made while the
   * connection opens is sent, and timed, once it is up. Default 100 ms.
   */
  timeoutMs: number;
  /** TCP keep-alive probe delay on an idle socket. Default 15,000 ms. */
  keepAliveDelayMs: number;
  /** Consecutive failures after which the node is marked dead. Default 2. */
  failuresBeforeDead: number;
  /** How long a dead node is skipped before it is tried again. Default 2,000 ms. */
  deadRetryMs: number;
  /** TLS (ElastiCache in-transit encryption): true, or node:tls options (ca, servername, ...). */
  tls: boolean | tls.ConnectionOptions;
  /** Longest reply line accepted (protocol-violation guard). Default 8 KiB. */
  maxLineBytes: number;
  /**
   * Largest value block a reply may announce, in bytes (protocol-violation guard on what is
   * received; maxValueBytes limits what is sent). Default 128 MiB.
   */
  maxReplyValueBytes: number;
  /** A read on a socket idle this long is retried once if it fails (see send()). Default 1,000 ms. */
  staleSocketMs: number;
}

export const connectionDefaults: ConnectionOptions = {
  connectTimeoutMs: 200,
  timeoutMs: 100,
  keepAliveDelayMs: 15_000,
  failuresBeforeDead: 2,
  deadRetryMs: 2_000,
  tls: false,
  maxLineBytes: 8 * 1024,
  maxReplyValueBytes: 128 * 1024 * 1024,
  staleSocketMs: 1_000,
};

export const connectionRules: OptionRules<ConnectionOptions> = {
  connectTimeoutMs: msRule(1),
  timeoutMs: msRule(1),
  keepAliveDelayMs: msRule(0),
  failuresBeforeDead: countRule(1, Number.MAX_SAFE_INTEGER),
  deadRetryMs: msRule(0),
  tls: (value) =>
    typeof value === "boolean" ||
    (typeof value === "object" && value !== null && !Array.isArray(value))
      ? undefined
      : `must be true, false or node:tls connect options, got ${show(value)}`,
  maxLineBytes: countRule(64, 1024 * 1024),
  maxReplyValueBytes: countRule(1, 1024 * 1024 * 1024),
  staleSocketMs: msRule(0),
};

/** What a request expects back; decides how reply events are gathered into one result. */
export const Reply = {
  /** One status line: STORED, DELETED, TOUCHED, OK, 42, VERSION x, ... -> string */
  LINE: 1,
  /** VALUE blocks until END (get/gets/gat/gats) -> RetrievedValue[] */
  VALUES: 2,
  /** STAT lines until END -> Record<string, string> */
  STATS: 3,
  /** One meta reply (HD/EN/NF/NS/EX/MN or VA + block) -> MetaReply */
  META: 4,
  /** An optional CONFIG block, then END -> Buffer | undefined */
  CONFIG: 5,
} as const;
export type ReplyKind = (typeof Reply)[keyof typeof Reply];

/** How one request is sent and checked. */
export interface SendOptions {
  /** The request carries a data block (after ERROR the server would read it as commands). */
  hasData?: boolean;
  /** A read: retried once on a fresh socket if it fails on a socket that sat idle (see send()). */
  retryIfStale?: boolean;
  /**
   * For one-line replies: the lines this command may answer (errors aside). Anything else is a
   * protocol violation: the socket is destroyed and every request on it rejects.
   */
  accept?: (line: string) => boolean;
  /**
   * Turns the gathered reply into the command's result, applied before the promise resolves (so
   * a command costs one promise, not one per layer). A throw rejects the request only.
   */
  result?: (reply: never) => unknown;
}

const NO_OPTIONS: SendOptions = {};

export interface RetrievedValue {
  key: string;
  flags: number;
  data: Buffer;
  cas: string | undefined;
}

/** One request on the wire, waiting for its reply. */
class Pending {
  /** Counts from the write (see flushWrites()); set at enqueue time until then. */
  deadline: number;
  values: RetrievedValue[] | undefined = undefined;
  stats: Record<string, string> | undefined = undefined;
  config: Buffer | undefined = undefined;
  resolve: (value: unknown) => void = noop;
  reject: (error: Error) => void = noop;
  readonly kind: ReplyKind;
  /** Command name, for error messages. */
  readonly verb: string;
  readonly options: SendOptions;
  /** The diagnostics event of this request, when someone subscribes (see diagnostics.ts). */
  readonly trace: CommandContext | undefined;

  constructor(
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
    deadline: number,
    trace: CommandContext | undefined,
  ) {
    this.kind = kind;
    this.verb = verb;
    this.options = options;
    this.deadline = deadline;
    this.trace = trace;
  }
}

function noop(): void {}

/** Sockets opened by this process so far: the source of Connection.socketId. */
let socketsOpened = 0;

export class Connection implements ReplyHandler {
  /** The node this connection talks to, as configured or discovered. */
  readonly node: NodeAddress;
  /** The node's name (hostname or IP): verified against its TLS certificate, shown in errors. */
  readonly host: string;
  readonly port: number;
  /** `host:port` (`[v6]:port`), as errors and health checks show the node. */
  readonly endpoint: string;
  readonly options: ConnectionOptions;
  /** Meta-protocol support as probed on this socket (undefined until probed; see probeMeta()). */
  metaSupport: boolean | undefined;
  /** The server's version as its `version` reply gave it on this socket (undefined until asked). */
  serverVersion: string | undefined;

  private socket: net.Socket | null = null;
  private parser: ReplyParser | null = null;
  private connected = false;
  // Commands queued since the last write, sent as one write in a microtask (see enqueue()).
  private outText = "";
  private outParts: Array<string | Buffer> | null = null;
  private flushScheduled = false;
  private readonly flushSoon = () => this.flushWrites();
  // Requests in wire order: queue[head..tail) await replies. The array is reused while requests
  // come and go one at a time, so a request does not reallocate it.
  private queue: Array<Pending | undefined> = [];
  private head = 0;
  private tail = 0;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  /** When the node was marked dead: until this time requests are refused (0: not marked). */
  private deadUntil = 0;
  /** After the dead period: the one request sent to see whether the node is back awaits it. */
  private probing = false;
  private connectDeadline = 0;
  private lastSendAt = 0;
  /** Queue index of the first request not yet written (-1: none); see flushWrites(). */
  private unflushedFrom = -1;
  private retiring = false;
  private metaProbe: Promise<boolean> | undefined;
  /** Reads retried after failing on a socket that had sat idle (see send()). */
  staleRetries = 0;
  private openedSocketId = 0;

  /** `options` must be complete and checked (the client does that; see connectionRules). */
  constructor(node: NodeAddress, options: ConnectionOptions) {
    this.node = node;
    this.host = node.host;
    this.port = node.port;
    this.endpoint = formatAddress(node);
    this.options = options;
  }

  /** Where the socket connects: the discovered IP address, or the host itself. */
  get address(): string {
    return this.node.ip ?? this.host;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.tail - this.head;
  }

  /**
   * True while the node is marked dead: requests are refused without being sent, also after
   * deadRetryMs while the one probe request is out.
   */
  get isDead(): boolean {
    return this.probing || this.deadUntil > Date.now();
  }

  /** True when a socket is open (or opening). */
  get isOpen(): boolean {
    return this.socket !== null;
  }

  /**
   * The open socket's number, unique in this process; undefined while none is open. A CAS token
   * is only good on the server process that issued it (a restarted memcached counts CAS values
   * from 1 again), and a socket never outlives that process: a token read on socket n may be
   * sent back while the socket is still n.
   */
  get socketId(): number | undefined {
    return this.socket === null ? undefined : this.openedSocketId;
  }

  /**
   * Sends one command and resolves with its reply, gathered as `kind` says (and turned into the
   * result by `options.result`). Rejects with a MemcacheError subclass; never hangs longer than
   * timeoutMs. `keyCount` is reported to diagnostics subscribers only.
   *
   * `retryIfStale` (reads only, never writes): when the socket sat idle for staleSocketMs or
   * more — a thawed Lambda's socket may be dead without any FIN — and the request fails with a
   * timeout or a closed connection, it is sent once more on a fresh socket.
   */
  send<T>(
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions = NO_OPTIONS,
    keyCount = 1,
  ): Promise<T> {
    // Diagnostics cost one check when nobody listens: no context object, no closure.
    if (commandChannel.hasSubscribers) {
      return this.traced<T>(payload, kind, verb, options, keyCount);
    }
    return this.sendOnce<T>(payload, kind, verb, options, undefined);
  }

  private sendOnce<T>(
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
    trace: CommandContext | undefined,
  ): Promise<T> {
    const now = Date.now();
    if (
      options.retryIfStale === true &&
      this.connected &&
      now - this.lastSendAt >= this.options.staleSocketMs
    ) {
      return this.enqueue<T>(payload, kind, verb, options, trace, now).catch((error: unknown) => {
        if (
          error instanceof MemcacheTimeoutError ||
          error instanceof MemcacheConnectionClosedError
        ) {
          this.staleRetries++;
          return this.enqueue<T>(payload, kind, verb, options, trace, Date.now());
        }
        throw error;
      });
    }
    return this.enqueue<T>(payload, kind, verb, options, trace, now);
  }

  /** send() with a diagnostics event around it (see diagnostics.ts). */
  private traced<T>(
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
    keyCount: number,
  ): Promise<T> {
    const context: CommandContext = {
      command: verb,
      node: this.endpoint,
      serverAddress: this.host,
      serverPort: this.port,
      keyCount,
      outcome: "error",
      durationMs: 0,
    };
    const started = performance.now();
    const run = () =>
      this.sendOnce<T>(payload, kind, verb, options, context).then(
        (result) => {
          context.durationMs = performance.now() - started;
          return result;
        },
        (error: unknown) => {
          context.durationMs = performance.now() - started;
          context.outcome = "error";
          throw error;
        },
      );
    return commandChannel.tracePromise(run, context);
  }

  /**
   * Whether this node speaks the meta protocol as the client expects (see metaCapable()), asked
   * once per socket. The probe (`version`, then `mn`) is queued at once, so it leaves in the same
   * write as whatever else is sent in this tick: on a new socket it costs no round trip of its
   * own when the caller sends its first request right after calling this.
   */
  probeMeta(): Promise<boolean> {
    if (this.metaSupport !== undefined) return Promise.resolve(this.metaSupport);
    if (this.metaProbe !== undefined) return this.metaProbe;
    const version = this.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY, 0);
    const noop = this.send<MetaReply>("mn\r\n", Reply.META, "mn", NO_OPTIONS, 0);
    const socket = this.socket; // opened by the sends above unless the node is marked dead
    const probe = Promise.allSettled([version, noop]).then(([versionResult, noopResult]) => {
      if (this.metaProbe === probe) this.metaProbe = undefined;
      if (versionResult.status === "rejected") throw versionResult.reason;
      if (
        noopResult.status === "rejected" &&
        !(noopResult.reason instanceof MemcacheUnknownCommandError)
      ) {
        throw noopResult.reason;
      }
      const answered = noopResult.status === "fulfilled" && noopResult.value.code === "MN";
      const supported = metaCapable(versionResult.value.slice(8), answered);
      // Remember it only for the socket that answered (a reconnect may reach another server).
      if (socket !== null && this.socket === socket) this.metaSupport = supported;
      return supported;
    });
    this.metaProbe = probe;
    return probe;
  }

  private deadError(now: number): MemcacheNodeDeadError {
    const until = this.probing
      ? "one request is probing it; the others are refused until it answers"
      : `retrying in ${this.deadUntil - now} ms (deadRetryMs)`;
    return new MemcacheNodeDeadError(
      `memcached ${this.endpoint} is marked dead after ${this.failures} consecutive failures; ${until}`,
    );
  }

  private enqueue<T>(
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
    trace: CommandContext | undefined,
    now: number,
  ): Promise<T> {
    this.lastSendAt = now;
    if (this.deadUntil !== 0) {
      // Marked dead. After deadRetryMs one request goes out as the probe; until it is answered
      // (the node is back) or fails (dead for another deadRetryMs), every other request is
      // refused as during the dead period, so a node that is still down costs one request, not
      // one per concurrent caller.
      if (now < this.deadUntil || this.probing) return Promise.reject(this.deadError(now));
      this.probing = true;
    }
    const socket = this.socket ?? this.open();
    if (this.unflushedFrom < 0) this.unflushedFrom = this.tail;
    const pending = new Pending(kind, verb, options, now + this.options.timeoutMs, trace);
    const promise = new Promise<T>((resolve, reject) => {
      pending.resolve = resolve as (value: unknown) => void;
      pending.reject = reject;
    });
    this.queue[this.tail++] = pending;
    if (this.tail - this.head === 1) {
      socket.ref(); // keep the process alive only while a reply is owed
      // Until the connection is up (TLS: handshake done) only the connect deadline runs; a
      // request's timeoutMs starts when it can be sent (see onConnected).
      if (this.timer === null) {
        this.armTimer(this.connected ? this.options.timeoutMs : this.connectDeadline - now);
      }
    }
    // Everything queued until the current microtasks are done leaves in one write: pipelining
    // without added latency. A reaction on a settled promise is the cheapest microtask (a
    // process.nextTick object per request cost more than the rest of the request together, and
    // queueMicrotask wraps its callback once AsyncLocalStorage is in use).
    if (typeof payload === "string") {
      this.outText += payload;
    } else {
      this.outParts ??= [];
      if (this.outText.length > 0) this.outParts.push(this.outText);
      this.outText = "";
      this.outParts.push(payload);
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      SETTLED.then(this.flushSoon);
    }
    return promise;
  }

  /**
   * Closes the socket once the requests already sent are answered (a node leaving the cluster:
   * the server may still execute them, so their replies should not be thrown away).
   */
  retire(): void {
    if (this.inFlight === 0) this.close();
    else this.retiring = true;
  }

  /** Closes the socket; pending requests reject with MemcacheConnectionClosedError. Not a failure. */
  close(): void {
    this.destroy(
      new MemcacheConnectionClosedError(`connection to ${this.endpoint} closed by the client`),
      false,
    );
  }

  private open(): net.Socket {
    const { options } = this;
    let socket: net.Socket;
    const parser = new ReplyParser(this, {
      maxLineBytes: options.maxLineBytes,
      maxReplyValueBytes: options.maxReplyValueBytes,
    });
    // Replies are read into one buffer per socket (onread) rather than through 'data' events:
    // no stream machinery and no buffer allocated per read, on the TLS path too (node:tls
    // decrypts into it). The parser keeps slices of what it is fed (values, a partial line), so
    // it gets a copy.
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes: number, buffer: Uint8Array): boolean => {
        if (this.socket !== socket) return false;
        try {
          parser.feed(Buffer.from(buffer.subarray(0, bytes)));
        } catch (error) {
          this.destroy(
            error instanceof MemcacheProtocolError
              ? new MemcacheProtocolError(`memcached ${this.endpoint}: ${error.message}`)
              : new MemcacheProtocolError(`memcached ${this.endpoint}: ${String(error)}`, {
                  cause: error,
                }),
          );
        }
        return true;
      },
    };
    if (options.tls === false) {
      socket = net.connect({ host: this.address, port: this.port, onread });
      socket.once("connect", () => this.onConnected(socket));
    } else {
      const tlsOptions = options.tls === true ? {} : options.tls;
      socket = tls.connect({
        ...tlsOptions,
        host: this.address,
        port: this.port,
        // A node known by a hostname (configured or discovered) is verified against that name;
        // for an IP, the caller's servername (if any) applies. SNI may not carry an IP address.
        servername: net.isIP(this.host) === 0 ? this.host : tlsOptions.servername,
        onread, // node:tls takes it as net does (@types/node does not list it)
      } as tls.ConnectionOptions);
      socket.once("secureConnect", () => this.onConnected(socket));
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, options.keepAliveDelayMs);
    socket.unref();
    socket.on("error", (error: Error) => {
      if (this.socket !== socket) return;
      this.destroy(
        new MemcacheConnectionClosedError(
          `connection to memcached ${this.endpoint} failed: ${error.message}`,
          {
            cause: error,
          },
        ),
      );
    });
    socket.on("end", () => {
      if (this.socket === socket) {
        this.destroy(
          new MemcacheConnectionClosedError(`memcached ${this.endpoint} closed the connection`),
        );
      }
    });
    socket.on("close", () => {
      if (this.socket === socket) {
        this.destroy(
          new MemcacheConnectionClosedError(`connection to memcached ${this.endpoint} closed`),
        );
      }
    });
    this.socket = socket;
    this.openedSocketId = ++socketsOpened;
    this.parser = parser;
    this.connected = false;
    this.metaSupport = undefined;
    this.serverVersion = undefined;
    // The connect deadline shares the one timer: until connected, the timer checks it.
    this.armTimer(options.connectTimeoutMs);
    this.connectDeadline = Date.now() + options.connectTimeoutMs;
    return socket;
  }

  /**
   * The socket is usable (TLS: the handshake is done). Requests queued while connecting leave
   * now, so their timeoutMs starts now: a handshake that never completes fails on
   * connectTimeoutMs, not on the first request's shorter timeoutMs.
   */
  private onConnected(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.connected = true;
    const deadline = Date.now() + this.options.timeoutMs;
    for (let i = this.head; i < this.tail; i++) {
      const pending = this.queue[i];
      if (pending !== undefined) pending.deadline = deadline;
    }
    if (this.inFlight > 0) this.armTimer(this.options.timeoutMs);
    else if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private armTimer(delayMs: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(onTimer, Math.max(1, delayMs), this);
    this.timer.unref();
  }

  /**
   * One timer per connection, not per request: replies come in order, so only the oldest
   * request (and, while connecting, the connect deadline) can be overdue. When it fires it
   * checks them and re-arms for the next deadline.
   */
  checkDeadlines(): void {
    this.timer = null;
    const socket = this.socket;
    if (socket === null) return;
    const now = Date.now();
    const head = this.queue[this.head];
    if (this.connected ? head !== undefined && now >= head.deadline : now >= this.connectDeadline) {
      // Overdue by the clock, but the reply (or the connect) may be sitting unread in the socket
      // while this process was descheduled or busy: Node reads sockets (poll phase) before it
      // runs setImmediate callbacks, so decide only after that.
      setImmediate(onGrace, this, socket, head);
      return;
    }
    if (!this.connected) this.armTimer(this.connectDeadline - now);
    else if (head !== undefined) this.armTimer(head.deadline - now);
  }

  /** @internal The second look of checkDeadlines(), after pending socket reads. */
  expireIfStillOverdue(socket: net.Socket, checked: Pending | undefined): void {
    if (this.socket !== socket) return;
    const now = Date.now();
    if (!this.connected && now >= this.connectDeadline) {
      this.destroy(
        new MemcacheTimeoutError(
          `could not connect to memcached ${this.endpoint} within ${this.options.connectTimeoutMs} ms (connectTimeoutMs)`,
        ),
      );
      return;
    }
    const head = this.queue[this.head];
    if (this.connected && head !== undefined && head === checked && now >= head.deadline) {
      this.destroy(
        new MemcacheTimeoutError(
          `memcached ${this.endpoint} did not answer "${head.verb}" within ${this.options.timeoutMs} ms (timeoutMs); the connection was closed and reopens on the next call`,
        ),
      );
      return;
    }
    if (this.timer === null) this.checkDeadlines(); // answered meanwhile: watch the next one
  }

  /** Destroys the socket and rejects every queued request with `error`. */
  private destroy(error: MemcacheError, isFailure = true): void {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    this.parser?.stop();
    this.parser = null;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    socket.destroy();
    this.outText = "";
    this.outParts = null;
    this.unflushedFrom = -1;
    const pending = this.queue;
    const start = this.head;
    const end = this.tail;
    this.queue = [];
    this.head = 0;
    this.tail = 0;
    // A failed probe marks the node dead again below (its failure count was not reset); a probe
    // closed by the client leaves the next request to probe.
    this.probing = false;
    // A server that closes an idle socket is not failing; one that drops requests or never
    // connects is.
    if (isFailure && (end > start || !this.connected)) {
      this.failures++;
      if (this.failures >= this.options.failuresBeforeDead) {
        this.deadUntil = Date.now() + this.options.deadRetryMs;
      }
    }
    this.connected = false;
    for (let i = start; i < end; i++) pending[i]!.reject(error);
  }

  private current(what: string): Pending {
    const head = this.queue[this.head];
    if (head === undefined)
      throw new MemcacheProtocolError(`unexpected ${what} with no request waiting`);
    return head;
  }

  /** Takes the oldest request off the queue; the socket stops holding the process when idle. */
  private dequeue(): Pending {
    const head = this.queue[this.head]!;
    this.queue[this.head] = undefined;
    this.head++;
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
      if (this.queue.length > 1024) this.queue = []; // after a burst: give the memory back
      this.socket?.unref();
      if (this.retiring) {
        this.retiring = false;
        queueMicrotask(() => this.close()); // after this reply is delivered
      }
    } else if (this.head >= 1024 && this.unflushedFrom < 0) {
      this.queue = this.queue.slice(this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
    this.failures = 0; // the server answered: it is alive
    if (this.deadUntil !== 0) {
      this.deadUntil = 0; // the probe was answered: the node is back
      this.probing = false;
    }
    return head;
  }

  private complete(value: unknown): void {
    const head = this.dequeue();
    if (head.trace !== undefined) head.trace.outcome = outcomeOf(head.kind, value);
    const result = head.options.result;
    if (result === undefined) {
      head.resolve(value);
      return;
    }
    let mapped: unknown;
    try {
      mapped = (result as (reply: unknown) => unknown)(value);
    } catch (error) {
      head.reject(error as Error);
      return;
    }
    head.resolve(mapped);
  }

  // ---- ReplyHandler: reply events from the parser, in wire order ----

  onValue(key: string, flags: number, data: Buffer, cas: string | undefined): void {
    const head = this.current("VALUE");
    if (head.kind !== Reply.VALUES)
      throw new MemcacheProtocolError(`unexpected VALUE for "${head.verb}"`);
    const item: RetrievedValue = { key, flags, data, cas };
    if (head.values === undefined) head.values = [item];
    else head.values.push(item);
  }

  onMetaValue(flags: string, data: Buffer): void {
    const head = this.current("VA");
    if (head.kind !== Reply.META)
      throw new MemcacheProtocolError(`unexpected VA for "${head.verb}"`);
    const reply: MetaReply = { code: "VA", flags: parseMetaFlags(flags), value: data };
    this.complete(reply);
  }

  onConfig(_name: string, data: Buffer): void {
    const head = this.current("CONFIG");
    if (head.kind !== Reply.CONFIG)
      throw new MemcacheProtocolError(`unexpected CONFIG for "${head.verb}"`);
    head.config = data;
  }

  onLine(line: string): void {
    const head = this.queue[this.head];
    if (head === undefined) {
      throw new MemcacheProtocolError(
        `unexpected ${JSON.stringify(line.slice(0, 40))} with no request waiting`,
      );
    }
    switch (head.kind) {
      case Reply.LINE: {
        if (isErrorLine(line)) return this.onErrorLine(head, line);
        const accept = head.options.accept;
        if (accept === undefined || accept(line)) {
          if (head.verb === "version" && line.startsWith("VERSION ")) {
            this.serverVersion = line.slice(8);
          }
          return this.complete(line);
        }
        break;
      }
      case Reply.VALUES:
        if (line === "END") return this.complete(head.values ?? []);
        break;
      case Reply.META: {
        if (isErrorLine(line)) return this.onErrorLine(head, line);
        const reply = metaReply(line);
        if (META_CODES.has(reply.code)) return this.complete(reply);
        break;
      }
      case Reply.STATS:
        if (line.startsWith("STAT ")) {
          const space = line.indexOf(" ", 5);
          head.stats ??= {};
          if (space === -1) head.stats[line.slice(5)] = "";
          else head.stats[line.slice(5, space)] = line.slice(space + 1);
          return;
        }
        if (line === "END") return this.complete(head.stats ?? {});
        break;
      case Reply.CONFIG:
        if (line === "END") return this.complete(head.config);
        break;
    }
    if (isErrorLine(line)) return this.onErrorLine(head, line);
    throw new MemcacheProtocolError(
      `unexpected reply ${JSON.stringify(line.slice(0, 80))} to "${head.verb}"`,
    );
  }

  private onErrorLine(head: Pending, line: string): void {
    const where = `memcached ${this.endpoint} answered "${head.verb}" with`;
    if (line === "ERROR") {
      // After an unknown command that carried data, the server reads that data as commands.
      return this.rejectHead(
        new MemcacheUnknownCommandError(`${where} ERROR: the server does not support this command`),
        head.options.hasData !== true,
      );
    }
    if (line.startsWith("CLIENT_ERROR")) {
      // After a data block the server may now be out of step with our stream (it may read the
      // rest of the block as commands): start over on a fresh socket. A command without data
      // (incr on a non-numeric value) was read whole and answered: the commands behind it stay.
      return this.rejectHead(
        new MemcacheClientError(`${where} ${line}`),
        head.options.hasData !== true,
      );
    }
    // SERVER_ERROR: the server swallowed any data block; a single-line exchange stays in step.
    const multiLine =
      head.kind === Reply.VALUES || head.kind === Reply.STATS || head.kind === Reply.CONFIG;
    return this.rejectHead(new MemcacheServerError(`${where} ${line}`), !multiLine);
  }

  private rejectHead(error: MemcacheError, keepConnection: boolean): void {
    const head = this.dequeue();
    if (!keepConnection) {
      // Not a failure of the node: it answered (the requests behind this one fail all the same).
      this.destroy(
        new MemcacheConnectionClosedError(
          `connection to memcached ${this.endpoint} reset after a "${head.verb}" error: ${error.message}`,
        ),
        false,
      );
    }
    head.reject(error);
  }

  /**
   * @internal Writes this tick's batch of commands. destroy() empties the batch, so whatever is
   * in it belongs to the current socket.
   */
  flushWrites(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    // Deadlines count from the write, not from the call: synchronous work after the call must
    // not use up a request's time before it was even sent.
    if (this.unflushedFrom >= 0) {
      const deadline = Date.now() + this.options.timeoutMs;
      for (let i = this.unflushedFrom; i < this.tail; i++) {
        const pending = this.queue[i];
        if (pending !== undefined) pending.deadline = deadline;
      }
      this.unflushedFrom = -1;
    }
    const text = this.outText;
    const parts = this.outParts;
    this.outText = "";
    this.outParts = null;
    if (socket === null) return;
    // Text is written as UTF-8: commands are ASCII (keys and meta flags are checked), so only a
    // string value's bytes depend on it, and those are meant to be UTF-8.
    if (parts === null) {
      socket.write(text, "utf8");
      return;
    }
    if (text.length === 0 && parts.length === 1) {
      socket.write(parts[0]!); // one storage command with a binary value: no cork, no writev
      return;
    }
    if (text.length > 0) parts.push(text);
    socket.cork();
    for (const part of parts) {
      if (typeof part === "string") socket.write(part, "utf8");
      else socket.write(part);
    }
    socket.uncork();
  }
}

const SETTLED = Promise.resolve();

/** The read buffer of a socket (see open()): what Node itself allocates per read of a socket. */
const READ_BUFFER_BYTES = 64 * 1024;

function onGrace(connection: Connection, socket: net.Socket, head: Pending | undefined): void {
  connection.expireIfStillOverdue(socket, head);
}

function onTimer(connection: Connection): void {
  connection.checkDeadlines();
}

export const VERSION_REPLY: SendOptions = { accept: (line) => line.startsWith("VERSION ") };

/**
 * The meta protocol as this client speaks it (HD/VA/EN replies, `ms <key> <size>`) is there when
 * `mn` answers MN and the version is not a release before 1.6.10: 1.6.0-1.6.9 answer meta
 * commands differently (OK instead of HD, sizes as flags) and 1.5 has none (ERROR). A version
 * that is not plain `x.y.z` (a proxy, or a managed service such as ElastiCache Serverless, which
 * documents every memcached 1.6 command) is judged by its `mn` answer alone.
 */
export function metaCapable(version: string, answersMn: boolean): boolean {
  if (!answersMn) return false;
  const match = /^(\d+)\.(\d+)\.(\d+)(?:[^\d]|$)/.exec(version);
  if (match === null) return true;
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (major !== 1) return major > 1;
  if (minor !== 6) return minor > 6;
  return patch >= 10;
}

/** A short word for how a request was answered, for diagnostics (see CommandContext.outcome). */
function outcomeOf(kind: ReplyKind, reply: unknown): string {
  switch (kind) {
    case Reply.LINE: {
      const line = reply as string;
      const first = line.charCodeAt(0);
      if ((first >= 0x30 && first <= 0x39) || line.startsWith("VERSION ")) return "ok";
      return line.toLowerCase();
    }
    case Reply.VALUES:
      return (reply as RetrievedValue[]).length === 0 ? "miss" : "hit";
    case Reply.META:
      return (reply as MetaReply).code.toLowerCase();
    default:
      return "ok";
  }
}

// Meta reply codes (1.6.10+); VA arrives through onMetaValue.
const META_CODES = new Set(["HD", "EN", "NF", "NS", "EX", "MN"]);

function isErrorLine(line: string): boolean {
  return line === "ERROR" || line.startsWith("CLIENT_ERROR") || line.startsWith("SERVER_ERROR");
}

function metaReply(line: string): MetaReply {
  const space = line.indexOf(" ");
  if (space === -1) return { code: line, flags: {} };
  return { code: line.slice(0, space), flags: parseMetaFlags(line.slice(space + 1)) };
}
