// The public memcached client: every command as one method over three private helpers (fetch,
// store, simple), routed to a node by a NodeSelector. Keys and values are checked before any
// byte is written; replies map to results through small tables; anything else is an error.

import { type AddressInput, type AddressListInput, toAddress, toAddressList } from "./address.ts";
import { NodeSet } from "./cluster.ts";
import {
  Connection,
  type ConnectionOptions,
  connectionDefaults,
  connectionRules,
  Reply,
  type ReplyKind,
  type RetrievedValue,
  type SendOptions,
  VERSION_REPLY,
} from "./connection.ts";
import {
  AutoDiscovery,
  type DiscoveryOptions,
  discoveryDefaults,
  discoveryRules,
} from "./discovery.ts";
import {
  MemcacheClientError,
  MemcacheIllegalInputError,
  MemcacheServerError,
  MemcacheUnknownCommandError,
} from "./errors.ts";
import { assertValidKey } from "./keys.ts";
import {
  booleanRule,
  checkOptions,
  countRule,
  functionRule,
  type OptionRules,
  optionError,
  show,
  unknownOption,
} from "./options.ts";
import {
  encodeLine,
  encodeMetaSet,
  encodeMetaSetText,
  encodeStorage,
  encodeStorageText,
  type MetaReply,
  type StorageVerb,
  toWireExptime,
} from "./protocol.ts";
import { defaultSerde, isInternalFlags, type Serde, withChecksum } from "./serde.ts";

/**
 * Options of `new MemcacheClient(options)`: where the nodes are (exactly one of `servers` and
 * `configEndpoint`), plus the connection, discovery and value options. Defaults: clientDefaults.
 */
export interface ClientOptions extends ConnectionOptions, DiscoveryOptions {
  /**
   * The nodes: `host:port`, `[ipv6]:port` or `host` (port 11211), a comma-separated list of
   * them, or an array of such strings and NodeAddress objects. Keys are spread over the nodes by
   * consistent hashing (libmemcached-compatible ketama).
   */
  servers: AddressListInput | undefined;
  /**
   * An ElastiCache configuration endpoint (`host:port` or a NodeAddress): the nodes come from
   * Auto Discovery, and follow the cluster as nodes are added or replaced. An endpoint that does
   * not speak `config get cluster` (plain memcached, ElastiCache Serverless) is used as the node.
   */
  configEndpoint: AddressInput | undefined;
  /** Value format; default: Buffer / string / integer / JSON by flags (see serde.ts). */
  serde: Serde;
  /**
   * Add a CRC-32 to every value and read damaged ones as misses (see withChecksum in serde.ts).
   * Default false: values stay readable by other memcached clients.
   */
  checksums: boolean;
  /**
   * Largest value the client sends, in bytes. Default 1 MiB (memcached's default `-I`); the
   * server may still refuse a value close to its limit (item header) with SERVER_ERROR.
   * (maxReplyValueBytes limits what is received.)
   */
  maxValueBytes: number;
  /**
   * Called for every stored value the serde cannot decode (read as a miss): a pickle (flags 1)
   * from a Python service, unknown flags, bad UTF-8/JSON/zlib. Default: none. This library's own
   * internal values (tombstones) are not reported. Must not throw; an error it throws is ignored.
   */
  onUndecodable: ((value: UndecodableValue) => void) | undefined;
  /**
   * The server is ElastiCache Serverless for Memcached. It takes TLS connections only (`tls`
   * must be given) and has no Auto Discovery (`configEndpoint` is refused: give its endpoint as
   * `servers`); what the service refuses — `stats <group>`, a delayed `flushAll`, `configGet` —
   * this client refuses before sending, with MemcacheIllegalInputError. Default false.
   */
  elastiCacheServerless: boolean;
}

/** A stored value that read as a miss because the serde could not decode it. */
export interface UndecodableValue {
  key: string;
  flags: number;
  /** Length of the stored bytes. */
  bytes: number;
}

export const clientDefaults: ClientOptions = {
  ...connectionDefaults,
  ...discoveryDefaults,
  servers: undefined,
  configEndpoint: undefined,
  serde: defaultSerde,
  checksums: false,
  maxValueBytes: 1024 * 1024,
  onUndecodable: undefined,
  elastiCacheServerless: false,
};

const clientRules: OptionRules<ClientOptions> = {
  ...connectionRules,
  ...discoveryRules,
  // Parsed (once) by the constructor, which names a bad entry.
  servers: (value) =>
    typeof value === "string" || Array.isArray(value)
      ? undefined
      : `must be "host:port[,host:port...]" or an array of addresses, got ${show(value)}`,
  configEndpoint: (value) =>
    typeof value === "string" || (typeof value === "object" && value !== null)
      ? undefined
      : `must be "host:port" or { host, port }, got ${show(value)}`,
  serde: (value) =>
    typeof (value as Serde | null)?.encode === "function" &&
    typeof (value as Serde | null)?.decode === "function"
      ? undefined
      : `must be an object with encode and decode functions, got ${show(value)}`,
  checksums: booleanRule,
  maxValueBytes: countRule(1, 1024 * 1024 * 1024),
  onUndecodable: functionRule,
  elastiCacheServerless: booleanRule,
};

export interface SetOptions {
  /** Seconds until expiry; 0 (default) never expires; over 30 days is sent as a Unix time. */
  ttlSeconds?: number;
  /** Overrides the flags word chosen by the serde (for raw Buffers written for other clients). */
  flags?: number;
}

export interface CasItem<T = unknown> {
  /**
   * The value; undefined when the stored bytes cannot be decoded (corrupt or foreign format) —
   * the CAS token still lets a cas() overwrite and so repair the entry.
   */
  value: T | undefined;
  /** The item's CAS token (opaque, 64-bit, as decimal text). */
  cas: string;
  flags: number;
  /**
   * The stored bytes as received, whatever the serde made of them (counters read decimal text
   * under any flags). May share memory with the socket's read buffer: copy it to keep it.
   */
  data: Buffer;
}

/** Outcome of a storage command, from the server's STORED / NOT_STORED / EXISTS / NOT_FOUND. */
export type StorageResult = "stored" | "not_stored" | "exists" | "not_found";
/** Outcome of cas(): stored, or someone changed it since gets() (exists), or it is gone. */
export type CasResult = "stored" | "exists" | "not_found";

/** One node's answer to ping(). */
export interface NodeHealth {
  ok: boolean;
  version?: string;
  error?: string;
}

/**
 * Longest multi-key retrieval line sent, "\r\n" included. get/gets: 16,000 bytes, within
 * ElastiCache Serverless's 16 KB limit on get/gets lines (memcached 1.6.18 itself takes any
 * length: measured up to 1 MB). gat/gats: 2,048, because memcached closes the connection when
 * any other command's line passes 2,048 bytes before its end has arrived.
 */
export const maxGetLineBytes = 16_000;
export const maxTouchLineBytes = 2_048;

// What each command may answer (anything else is a protocol violation and resets the socket),
// and what the answer means to the caller. Module constants: a command allocates none of this.
const READ: SendOptions = { retryIfStale: true };
const WITH_DATA: SendOptions = { hasData: true };
const oneOf = (lines: string[], result?: (line: string) => unknown): SendOptions => {
  const allowed = new Set(lines);
  return { accept: (line) => allowed.has(line), result };
};
const DELETE_REPLY = oneOf(["DELETED", "NOT_FOUND"], (line) => line === "DELETED");
const TOUCH_REPLY = oneOf(["TOUCHED", "NOT_FOUND"], (line) => line === "TOUCHED");
const OK_REPLY = oneOf(["OK"]);
const NUMBER_REPLY: SendOptions = {
  accept: (line) => line === "NOT_FOUND" || /^[0-9]{1,20}$/.test(line),
  result: (line: string) => {
    if (line === "NOT_FOUND") return undefined;
    const n = Number(line);
    return Number.isSafeInteger(n) ? n : BigInt(line);
  },
};

const STORAGE_REPLIES: Record<string, StorageResult> = {
  STORED: "stored",
  NOT_STORED: "not_stored",
  EXISTS: "exists",
  NOT_FOUND: "not_found",
};
const isStorageReply = (line: string) => Object.hasOwn(STORAGE_REPLIES, line);
/** Storage commands that resolve with the outcome's name (cas). */
const STORAGE_REPLY: SendOptions = {
  hasData: true,
  accept: isStorageReply,
  result: (line: string) => STORAGE_REPLIES[line],
};
/** Storage commands that resolve true when stored (set, add, replace, append, prepend). */
const STORED_REPLY: SendOptions = {
  hasData: true,
  accept: isStorageReply,
  result: (line: string) => line === "STORED",
};

// Read-only stats groups with a STAT...END reply ("reset" and "detail" answer differently).
const STATS_GROUPS = new Set(["settings", "items", "slabs", "sizes", "conns"]);

const MAX_CAS = 2n ** 64n - 1n;

const SERVERLESS = "the server is ElastiCache Serverless (elastiCacheServerless)";
/** append/prepend: raw bytes, flags 0, TTL unchanged. */
const RAW_BYTES: SetOptions = { flags: 0 };
const META_REPLY: SendOptions = {};

// Meta flags that would break request/reply pairing (q: no reply on success) or key encoding.
const META_FLAG = /^[A-Za-z][\x21-\x7e]*$/;
const REFUSED_META_FLAGS = new Set(["q", "b"]);

export class MemcacheClient {
  /** The nodes and the hash ring over them. */
  readonly cluster: NodeSet;
  /** Auto Discovery, when created with a configuration endpoint. */
  readonly discovery: AutoDiscovery | undefined;
  private readonly serde: Serde;
  private readonly maxValueBytes: number;
  private readonly onUndecodable: ((value: UndecodableValue) => void) | undefined;
  // Reads of one key, with the reply decoded by this client's serde before the promise resolves.
  private readonly readValue: SendOptions;
  private readonly readCasItem: SendOptions;
  /** The flags of a string value when the serde stores strings as their UTF-8 bytes. */
  private readonly textFlags: number | undefined;
  private readonly serverless: boolean;

  constructor(options: Partial<ClientOptions>) {
    const checked = checkOptions("MemcacheClient", options, clientRules, clientDefaults);
    const { servers, configEndpoint, serde, checksums, maxValueBytes, refreshIntervalMs } = checked;
    const connectionOptions = pickConnectionOptions(checked);
    if (checked.elastiCacheServerless) checkServerlessOptions(checked);
    if (servers !== undefined && configEndpoint === undefined) {
      const nodes = parsedOption("servers", () => toAddressList(servers));
      this.cluster = new NodeSet(connectionOptions, nodes);
      this.discovery = undefined;
    } else if (configEndpoint !== undefined && servers === undefined) {
      const endpoint = parsedOption("configEndpoint", () => toAddress(configEndpoint));
      this.cluster = new NodeSet(connectionOptions);
      this.discovery = new AutoDiscovery(
        new Connection(endpoint, connectionOptions),
        this.cluster,
        { refreshIntervalMs },
      );
    } else if (servers === undefined) {
      throw optionError(
        "MemcacheClient",
        "servers",
        'is required: give servers ("host:port,...") or configEndpoint (Auto Discovery)',
      );
    } else {
      throw optionError(
        "MemcacheClient",
        "configEndpoint",
        "cannot be given together with servers: give one of them",
      );
    }
    this.serde = checksums ? withChecksum(serde) : serde;
    this.maxValueBytes = maxValueBytes;
    this.onUndecodable = checked.onUndecodable;
    this.serverless = checked.elastiCacheServerless;
    this.textFlags = textFlagsOf(this.serde);
    this.readValue = { retryIfStale: true, result: this.decodeFirst };
    this.readCasItem = {
      retryIfStale: true,
      result: (items: RetrievedValue[]) => this.casItem(items[0]),
    };
  }

  /** The node connections (for health checks and tests). */
  get nodes(): readonly Connection[] {
    return this.cluster.nodes;
  }

  /** Undefined when commands can go out now; else the first discovery to wait for. */
  private ready(): Promise<void> | undefined {
    return this.discovery?.beforeCommand();
  }

  /**
   * The one path of every keyed command once its request is built: check the key, route it to
   * its node, send. Nothing is awaited before the request is queued, so commands made in one
   * tick leave in one write; a bad key (or no node) rejects, and nothing is sent.
   */
  private dispatch<R>(
    key: string,
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
  ): Promise<R> {
    try {
      assertValidKey(key);
      return this.sendTo<R>(key, payload, kind, verb, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** dispatch() for a request whose key is already checked; throws if there is no node. */
  private sendTo<R>(
    key: string,
    payload: string | Buffer,
    kind: ReplyKind,
    verb: string,
    options: SendOptions,
  ): Promise<R> {
    const pending = this.ready();
    if (pending !== undefined) {
      return pending.then(() => this.cluster.nodeFor(key).send<R>(payload, kind, verb, options));
    }
    return this.cluster.nodeFor(key).send<R>(payload, kind, verb, options);
  }

  // ---- retrieval ----

  /** The value, or undefined on a miss (also when the stored bytes cannot be decoded). */
  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.dispatch(key, `get ${key}\r\n`, Reply.VALUES, "get", this.readValue);
  }

  /** Many keys in one pipelined round trip per node; missing keys are absent from the map. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<Map<string, T>> {
    const items = await this.fetch("get", keys);
    const result = new Map<string, T>();
    for (const item of items) {
      const value = this.decode(item);
      if (value !== undefined) result.set(item.key, value as T);
    }
    return result;
  }

  /** The value with its CAS token, for a later cas(). */
  gets<T = unknown>(key: string): Promise<CasItem<T> | undefined> {
    return this.dispatch(key, `gets ${key}\r\n`, Reply.VALUES, "gets", this.readCasItem);
  }

  /** Get and touch: the value, with its TTL reset to `ttlSeconds`. */
  gat<T = unknown>(key: string, ttlSeconds: number): Promise<T | undefined> {
    return this.touching("gat", key, ttlSeconds, this.readValue);
  }

  /** gat with the CAS token. */
  gats<T = unknown>(key: string, ttlSeconds: number): Promise<CasItem<T> | undefined> {
    return this.touching("gats", key, ttlSeconds, this.readCasItem);
  }

  private touching<R>(
    verb: "gat" | "gats",
    key: string,
    ttlSeconds: number,
    options: SendOptions,
  ): Promise<R> {
    try {
      const line = encodeLine(verb, toWireExptime(ttlSeconds), key);
      return this.dispatch(key, line, Reply.VALUES, verb, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // ---- storage ----

  /** Stores unconditionally. Resolves true when stored. */
  set(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return this.storage("set", key, value, options, undefined, STORED_REPLY);
  }

  /** Stores only if the key is absent. Resolves false when it exists. */
  add(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return this.storage("add", key, value, options, undefined, STORED_REPLY);
  }

  /** Stores only if the key exists. Resolves false when it is absent. */
  replace(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return this.storage("replace", key, value, options, undefined, STORED_REPLY);
  }

  /** Appends raw bytes to an existing value (flags and TTL unchanged). False when absent. */
  append(key: string, data: string | Buffer): Promise<boolean> {
    return this.storage("append", key, Buffer.from(data), RAW_BYTES, undefined, STORED_REPLY);
  }

  /** Prepends raw bytes to an existing value (flags and TTL unchanged). False when absent. */
  prepend(key: string, data: string | Buffer): Promise<boolean> {
    return this.storage("prepend", key, Buffer.from(data), RAW_BYTES, undefined, STORED_REPLY);
  }

  /**
   * Stores only if the item still has the CAS token from gets(): "stored", "exists" (someone
   * changed it since) or "not_found" (it expired or was deleted).
   */
  cas(key: string, value: unknown, cas: string, options?: SetOptions): Promise<CasResult> {
    if (!/^[0-9]{1,20}$/.test(cas) || BigInt(cas) > MAX_CAS) {
      return Promise.reject(
        new MemcacheIllegalInputError(`cas token must be a 64-bit unsigned decimal, got "${cas}"`),
      );
    }
    return this.storage("cas", key, value, options, cas, STORAGE_REPLY);
  }

  // ---- other keyed commands ----

  /** Resolves true when the key existed. */
  delete(key: string): Promise<boolean> {
    return this.dispatch(key, `delete ${key}\r\n`, Reply.LINE, "delete", DELETE_REPLY);
  }

  /** Adds `delta` to a decimal counter; undefined when the key is absent. 64-bit, wraps at 2^64. */
  incr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    return this.arithmetic("incr", key, delta);
  }

  /** Subtracts `delta`, stopping at 0; undefined when the key is absent. */
  decr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    return this.arithmetic("decr", key, delta);
  }

  /** Sets a new TTL. Resolves true when the key existed. */
  touch(key: string, ttlSeconds: number): Promise<boolean> {
    try {
      const line = encodeLine("touch", key, toWireExptime(ttlSeconds));
      return this.dispatch(key, line, Reply.LINE, "touch", TOUCH_REPLY);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // ---- whole-server commands (sent to every node) ----

  /**
   * Invalidates every item on every node, optionally `delaySeconds` from now. memcached reads
   * the delay as it reads a TTL, so it goes through the same conversion (over 30 days: an
   * absolute Unix time; sent raw, memcached would take it for a time in 1970 and flush nothing).
   */
  async flushAll(delaySeconds = 0): Promise<void> {
    if (!Number.isSafeInteger(delaySeconds) || delaySeconds < 0) {
      throw new MemcacheIllegalInputError(
        `flushAll delaySeconds must be a whole number >= 0, got ${delaySeconds}`,
      );
    }
    if (delaySeconds > 0 && this.serverless) {
      throw new MemcacheIllegalInputError(
        `flushAll(${delaySeconds}) refused: ${SERVERLESS}, which refuses a delayed flush_all with CLIENT_ERROR; flush now with flushAll()`,
      );
    }
    const line =
      delaySeconds > 0 ? encodeLine("flush_all", toWireExptime(delaySeconds)) : "flush_all\r\n";
    await this.eachNode(async (node) => {
      await node.send<string>(line, Reply.LINE, "flush_all", OK_REPLY, 0);
    });
  }

  /** Server version per node endpoint, e.g. `{ "10.0.0.5:11211": "1.6.22" }`. */
  version(): Promise<Record<string, string>> {
    return this.eachNode(async (node) => {
      const line = await node.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY, 0);
      return line.slice(8);
    });
  }

  /**
   * Health of every node, each asked on its own (`version`), so one dead node does not hide the
   * others: `{ "10.0.0.5:11211": { ok: true, version: "1.6.22" }, ... }`. Never rejects.
   */
  async ping(): Promise<Record<string, NodeHealth>> {
    try {
      await this.ready();
    } catch (error) {
      return {
        [this.discovery ? "discovery" : "cluster"]: { ok: false, error: (error as Error).message },
      };
    }
    const nodes = this.cluster.nodes;
    const results = await Promise.allSettled(
      nodes.map((node) =>
        node.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY, 0),
      ),
    );
    const out: Record<string, NodeHealth> = {};
    nodes.forEach((node, i) => {
      const result = results[i]!;
      out[node.endpoint] =
        result.status === "fulfilled" && result.value.startsWith("VERSION ")
          ? { ok: true, version: result.value.slice(8) }
          : {
              ok: false,
              error:
                result.status === "rejected"
                  ? (result.reason as Error).message
                  : `unexpected reply ${JSON.stringify(result.value)}`,
            };
    });
    return out;
  }

  /** `stats [group]` per node endpoint (group: "settings", "items", "slabs", ...). */
  stats(group?: string): Promise<Record<string, Record<string, string>>> {
    if (group !== undefined && this.serverless) {
      return Promise.reject(
        new MemcacheIllegalInputError(
          `stats("${group}") refused: ${SERVERLESS}, which answers only "stats" and "stats reset" (other groups answer ERROR)`,
        ),
      );
    }
    if (group !== undefined && !STATS_GROUPS.has(group)) {
      return Promise.reject(
        new MemcacheIllegalInputError(
          `stats group must be one of ${[...STATS_GROUPS].join(", ")}; got "${group}"`,
        ),
      );
    }
    const line = group === undefined ? "stats\r\n" : encodeLine("stats", group);
    return this.eachNode((node) =>
      node.send<Record<string, string>>(line, Reply.STATS, "stats", undefined, 0),
    );
  }

  /**
   * The number of the socket open to the node holding `key` (see Connection.socketId); undefined
   * while none is open or the node is not known yet. Equal numbers before and after a command
   * mean it went to the same server process: a CAS token read earlier is still its own.
   */
  socketIdFor(key: string): number | undefined {
    try {
      return this.cluster.nodeFor(key).socketId;
    } catch {
      return undefined; // no node yet (Auto Discovery has not answered)
    }
  }

  // ---- meta protocol (memcached >= 1.6.10: HD/VA/EN replies) ----

  /**
   * Whether the node holding `key` speaks the meta protocol as this client expects (answers `mn`
   * with MN and is not a release before 1.6.10, whose meta replies differ; see metaCapable()).
   * Asked once per connection, with the version, and queued at once: a request sent right after
   * this call leaves in the same write, so the probe costs no round trip of its own.
   */
  hasMeta(key = ""): Promise<boolean> {
    try {
      const pending = this.ready();
      if (pending !== undefined) return pending.then(() => this.cluster.nodeFor(key).probeMeta());
      return this.cluster.nodeFor(key).probeMeta();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** `mg <key> <flags>*`: code VA (with value), HD (found, no value asked) or EN (miss). */
  metaGet(key: string, flags: readonly string[] = ["v", "f"]): Promise<MetaReply> {
    return this.meta("mg", key, flags);
  }

  /**
   * `ms <key> <len> <flags>*` with the value encoded by the serde (its flags word is sent as
   * `F<flags>` unless `flags` already has an F). TTLs: `T${toWireExptime(ttlSeconds)}`.
   * Codes: HD stored, NS not stored, EX cas mismatch, NF not found.
   */
  metaSet(key: string, value: unknown, flags: readonly string[] = []): Promise<MetaReply> {
    try {
      assertValidKey(key);
      assertMetaFlags(flags);
      const hasFlags = flags.some((f) => f[0] === "F");
      let payload: string | Buffer;
      if (typeof value === "string" && this.textFlags !== undefined) {
        const all = hasFlags ? flags : [...flags, `F${this.textFlags}`];
        payload = encodeMetaSetText(key, value, this.textBytes(value), all);
      } else {
        const encoded = this.encode(value);
        const all = hasFlags ? flags : [...flags, `F${encoded.flags}`];
        payload = encodeMetaSet(key, encoded.data, all);
      }
      return this.sendTo(key, payload, Reply.META, "ms", WITH_DATA);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** `md <key> <flags>*`: HD deleted (or marked stale with I), NF not found, EX cas mismatch. */
  metaDelete(key: string, flags: readonly string[] = []): Promise<MetaReply> {
    return this.meta("md", key, flags);
  }

  /** `ma <key> <flags>*`: arithmetic (N autovivify, J initial, D delta, MI/MD mode, v value). */
  metaArithmetic(key: string, flags: readonly string[] = []): Promise<MetaReply> {
    return this.meta("ma", key, flags);
  }

  /** `mn`: answers MN after every earlier request on the node holding `key`. */
  async metaNoop(key = ""): Promise<MetaReply> {
    await this.ready();
    return this.cluster.nodeFor(key).send<MetaReply>("mn\r\n", Reply.META, "mn", undefined, 0);
  }

  /**
   * Decodes a meta reply's value (asked for with the v and f flags); undefined if absent or bad.
   * `key` names the value in an onUndecodable report.
   */
  decodeMeta<T = unknown>(reply: MetaReply, key = ""): T | undefined {
    if (reply.value === undefined) return undefined;
    const flags = Number(reply.flags.f ?? "0");
    return this.decodeValue(key, reply.value, flags) as T | undefined;
  }

  /**
   * ElastiCache Auto Discovery: `config get <name>`; the CONFIG block, or undefined if the
   * server answered END alone. Plain memcached answers ERROR (UnknownCommandError).
   */
  async configGet(name = "cluster", key = ""): Promise<Buffer | undefined> {
    if (!/^[a-z_]{1,32}$/.test(name)) {
      throw new MemcacheIllegalInputError(`config name must be a lowercase word, got "${name}"`);
    }
    if (this.serverless) {
      throw new MemcacheIllegalInputError(
        `configGet("${name}") refused: ${SERVERLESS}, which has no Auto Discovery and answers "config get" with ERROR`,
      );
    }
    await this.ready();
    const line = encodeLine("config", "get", name);
    return this.cluster.nodeFor(key).send<Buffer | undefined>(line, Reply.CONFIG, "config", {}, 0);
  }

  /** Closes every socket. The client stays usable: the next call reconnects. */
  close(): void {
    this.cluster.close();
    this.discovery?.close();
  }

  // ---- the protocol helpers (each ends in dispatch(), or in send() for many keys) ----

  /**
   * get/gets/gat/gats of many keys: one pipelined round trip per node, each line within
   * maxGetLineBytes (gat/gats: maxTouchLineBytes).
   */
  private async fetch(
    verb: "get" | "gets" | "gat" | "gats",
    keys: readonly string[],
    ttlSeconds?: number,
  ): Promise<RetrievedValue[]> {
    const prefix = ttlSeconds === undefined ? verb : `${verb} ${toWireExptime(ttlSeconds)}`;
    await this.ready();
    const byNode = new Map<Connection, string[]>();
    for (const key of new Set(keys)) {
      assertValidKey(key);
      const node = this.cluster.nodeFor(key);
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [key]);
      else list.push(key);
    }
    // Keys are printable ASCII, so characters are bytes; 2 for the "\r\n".
    const maxLine = (verb === "get" || verb === "gets" ? maxGetLineBytes : maxTouchLineBytes) - 2;
    const requests: Promise<RetrievedValue[]>[] = [];
    for (const [node, nodeKeys] of byNode) {
      let line = prefix;
      let count = 0;
      for (const key of nodeKeys) {
        if (line.length + key.length + 1 > maxLine && count > 0) {
          requests.push(node.send(`${line}\r\n`, Reply.VALUES, verb, READ, count));
          line = prefix;
          count = 0;
        }
        line += ` ${key}`;
        count++;
      }
      requests.push(node.send(`${line}\r\n`, Reply.VALUES, verb, READ, count));
    }
    // One failing node does not sink the others' hits: its keys read as misses. Only when every
    // node failed does the whole call fail. A batch the server refused (it answered ERROR,
    // CLIENT_ERROR or SERVER_ERROR: it is up, and said no) fails the call: read as misses, its
    // keys would send every caller to the origin without anyone seeing why.
    const settled = await Promise.allSettled(requests);
    const items: RetrievedValue[] = [];
    let answered = false;
    let failure: PromiseRejectedResult | undefined;
    for (const result of settled) {
      if (result.status === "fulfilled") {
        answered = true;
        items.push(...result.value);
      } else if (isRefusal(result.reason)) throw result.reason;
      else failure ??= result;
    }
    if (failure !== undefined && !answered) throw failure.reason;
    return items;
  }

  /** set/add/replace/append/prepend/cas: the value encoded and checked before dispatch. */
  private storage<R>(
    verb: StorageVerb,
    key: string,
    value: unknown,
    options: SetOptions | undefined,
    cas: string | undefined,
    reply: SendOptions,
  ): Promise<R> {
    try {
      assertValidKey(key);
      if (options !== undefined) assertSetOptions(verb, options);
      // A string under the default serde goes out as text: no Buffer for the value or the command.
      const text = typeof value === "string" && this.textFlags !== undefined ? value : undefined;
      const encoded = text === undefined ? this.encode(value) : undefined;
      const flags = options?.flags ?? encoded?.flags ?? this.textFlags!;
      if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
        throw new MemcacheIllegalInputError(
          `flags must be a 32-bit unsigned integer, got ${flags}`,
        );
      }
      const ttlSeconds = options?.ttlSeconds;
      const exptime = ttlSeconds === undefined || ttlSeconds === 0 ? 0 : toWireExptime(ttlSeconds);
      const payload =
        text === undefined
          ? encodeStorage(verb, key, flags, exptime, encoded!.data, cas)
          : encodeStorageText(verb, key, flags, exptime, text, this.textBytes(text), cas);
      return this.sendTo(key, payload, Reply.LINE, verb, reply);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private arithmetic(
    verb: "incr" | "decr",
    key: string,
    delta: number | bigint,
  ): Promise<number | bigint | undefined> {
    if (
      (typeof delta === "number" && !(Number.isSafeInteger(delta) && delta >= 0)) ||
      (typeof delta === "bigint" && (delta < 0n || delta >= 2n ** 64n))
    ) {
      return Promise.reject(
        new MemcacheIllegalInputError(
          `${verb} delta must be an integer in 0..2^64-1, got ${delta}`,
        ),
      );
    }
    return this.dispatch(key, `${verb} ${key} ${delta}\r\n`, Reply.LINE, verb, NUMBER_REPLY);
  }

  private meta(
    verb: "mg" | "md" | "ma",
    key: string,
    flags: readonly string[],
  ): Promise<MetaReply> {
    try {
      assertMetaFlags(flags);
    } catch (error) {
      return Promise.reject(error);
    }
    const line =
      flags.length === 0 ? `${verb} ${key}\r\n` : `${verb} ${key} ${flags.join(" ")}\r\n`;
    return this.dispatch(key, line, Reply.META, verb, META_REPLY);
  }

  private encode(value: unknown) {
    const encoded = this.serde.encode(value);
    this.checkSize(encoded.data.length);
    return encoded;
  }

  /** The UTF-8 size of a string value, checked against maxValueBytes. */
  private textBytes(text: string): number {
    const bytes = Buffer.byteLength(text, "utf8");
    this.checkSize(bytes);
    return bytes;
  }

  private checkSize(bytes: number): void {
    if (bytes > this.maxValueBytes) {
      throw new MemcacheIllegalInputError(
        `value is ${bytes} bytes, over maxValueBytes (${this.maxValueBytes}); raise it only if the server runs with a larger -I`,
      );
    }
  }

  private decode(item: RetrievedValue): unknown {
    return this.decodeValue(item.key, item.data, item.flags);
  }

  private readonly decodeFirst = (items: RetrievedValue[]): unknown => {
    const item = items[0];
    return item === undefined ? undefined : this.decodeValue(item.key, item.data, item.flags);
  };

  /** The serde's decode; a value it cannot decode is a miss, reported to onUndecodable. */
  private decodeValue(key: string, data: Buffer, flags: number): unknown {
    const value = this.serde.decode(data, flags);
    if (value === undefined && this.onUndecodable !== undefined && !isInternalFlags(flags)) {
      try {
        this.onUndecodable({ key, flags, bytes: data.length });
      } catch {
        // An observer must never turn a miss into a failure.
      }
    }
    return value;
  }

  private casItem<T>(item: RetrievedValue | undefined): CasItem<T> | undefined {
    if (item === undefined || item.cas === undefined) return undefined;
    return {
      value: this.decode(item) as T | undefined,
      cas: item.cas,
      flags: item.flags,
      data: item.data,
    };
  }

  private async eachNode<T>(run: (node: Connection) => Promise<T>): Promise<Record<string, T>> {
    await this.ready();
    const nodes = this.cluster.nodes;
    const results = await Promise.all(nodes.map(run));
    const out: Record<string, T> = {};
    nodes.forEach((node, i) => {
      out[node.endpoint] = results[i]!;
    });
    return out;
  }
}

/**
 * The flags word under which `serde` stores a string as its UTF-8 bytes, if it does (the default
 * serde; checked on a sample rather than assumed), so such a value can go out as text.
 */
/** The server answered the command with an error line: it is up, and refused this command. */
function isRefusal(error: unknown): boolean {
  return (
    error instanceof MemcacheClientError ||
    error instanceof MemcacheServerError ||
    error instanceof MemcacheUnknownCommandError
  );
}

/** ElastiCache Serverless: TLS only, no Auto Discovery. */
function checkServerlessOptions(options: ClientOptions): void {
  if (options.tls === false) {
    throw optionError(
      "MemcacheClient",
      "tls",
      "must be true or node:tls options when elastiCacheServerless is true: ElastiCache Serverless takes TLS connections only",
    );
  }
  if (options.configEndpoint !== undefined) {
    throw optionError(
      "MemcacheClient",
      "configEndpoint",
      'cannot be used with elastiCacheServerless: ElastiCache Serverless has no Auto Discovery ("config get cluster" answers ERROR); give its endpoint as servers',
    );
  }
}

function textFlagsOf(serde: Serde): number | undefined {
  if (serde !== defaultSerde) return undefined;
  const sample = "x\u00e9\u{1f600}";
  const encoded = serde.encode(sample);
  return encoded.data.equals(Buffer.from(sample, "utf8")) ? encoded.flags : undefined;
}

const SET_OPTION_NAMES = ["ttlSeconds", "flags"] as const;

/** A typo in a command's options (`{ ttl: 60 }`) would silently store without a TTL: refuse it. */
function assertSetOptions(verb: string, options: SetOptions): void {
  const unknown = unknownOption(options, SET_OPTION_NAMES);
  if (unknown !== undefined) {
    throw new MemcacheIllegalInputError(`${verb} option "${unknown.name}" ${unknown.complaint}`);
  }
}

function assertMetaFlags(flags: readonly string[]): void {
  for (const flag of flags) {
    if (!META_FLAG.test(flag) || REFUSED_META_FLAGS.has(flag[0]!)) {
      throw new MemcacheIllegalInputError(
        `meta flag "${flag}" refused: flags are a letter plus printable ASCII; q and b are not supported`,
      );
    }
  }
}

/** The connection options out of the client's (the rest are the client's own). */
function pickConnectionOptions(options: ClientOptions): ConnectionOptions {
  const picked = {} as Record<string, unknown>;
  for (const name of Object.keys(connectionDefaults)) {
    picked[name] = options[name as keyof ConnectionOptions];
  }
  return picked as unknown as ConnectionOptions;
}

/** Runs an address parser; its error becomes the option's TypeError. */
function parsedOption<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw optionError("MemcacheClient", name, `has ${(error as Error).message}`);
  }
}
