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
  type RetrievedValue,
  type SendOptions,
} from "./connection.ts";
import {
  AutoDiscovery,
  type DiscoveryOptions,
  discoveryDefaults,
  discoveryRules,
} from "./discovery.ts";
import { MemcacheIllegalInputError, MemcacheUnknownCommandError } from "./errors.ts";
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
  encodeStorage,
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

const MAX_GET_LINE = 2000; // keep multi-key get lines under memcached's 2048-byte line guard

// What each command may answer; anything else is a protocol violation and resets the socket.
const READ: SendOptions = { retryIfStale: true };
const WITH_DATA: SendOptions = { hasData: true };
const oneOf = (...lines: string[]): SendOptions => {
  const allowed = new Set(lines);
  return { accept: (line) => allowed.has(line) };
};
const DELETE_REPLY = oneOf("DELETED", "NOT_FOUND");
const TOUCH_REPLY = oneOf("TOUCHED", "NOT_FOUND");
const OK_REPLY = oneOf("OK");
const VERSION_REPLY: SendOptions = { accept: (line) => line.startsWith("VERSION ") };
const NUMBER_REPLY: SendOptions = {
  accept: (line) => line === "NOT_FOUND" || /^[0-9]{1,20}$/.test(line),
};

const STORAGE_REPLIES: Record<string, StorageResult> = {
  STORED: "stored",
  NOT_STORED: "not_stored",
  EXISTS: "exists",
  NOT_FOUND: "not_found",
};
const STORAGE_REPLY: SendOptions = {
  hasData: true,
  accept: (line) => Object.hasOwn(STORAGE_REPLIES, line),
};

// Read-only stats groups with a STAT...END reply ("reset" and "detail" answer differently).
const STATS_GROUPS = new Set(["settings", "items", "slabs", "sizes", "conns"]);

const MAX_CAS = 2n ** 64n - 1n;

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

  constructor(options: Partial<ClientOptions>) {
    const checked = checkOptions("MemcacheClient", options, clientRules, clientDefaults);
    const { servers, configEndpoint, serde, checksums, maxValueBytes, refreshIntervalMs } = checked;
    const connectionOptions = pickConnectionOptions(checked);
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
  }

  /** The node connections (for health checks and tests). */
  get nodes(): readonly Connection[] {
    return this.cluster.nodes;
  }

  /** Undefined when commands can go out now; else the first discovery to wait for. */
  private ready(): Promise<void> | undefined {
    return this.discovery?.beforeCommand();
  }

  /** The node for `key`, once the node list is known. */
  private async route(key: string): Promise<Connection> {
    await this.ready();
    return this.cluster.nodeFor(key);
  }

  // ---- retrieval ----

  /** The value, or undefined on a miss (also when the stored bytes cannot be decoded). */
  get<T = unknown>(key: string): Promise<T | undefined> {
    // The hot path: no async wrapper, one promise from send() plus one then().
    const pending = this.ready();
    if (pending !== undefined) return pending.then(() => this.getNow<T>(key));
    return this.getNow<T>(key);
  }

  private getNow<T>(key: string): Promise<T | undefined> {
    let node: Connection;
    try {
      assertValidKey(key);
      node = this.cluster.nodeFor(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return node
      .send<RetrievedValue[]>(`get ${key}\r\n`, Reply.VALUES, "get", READ)
      .then(this.decodeFirst) as Promise<T | undefined>;
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
  async gets<T = unknown>(key: string): Promise<CasItem<T> | undefined> {
    const [item] = await this.fetch("gets", [key]);
    return this.casItem<T>(item);
  }

  /** Get and touch: the value, with its TTL reset to `ttlSeconds`. */
  async gat<T = unknown>(key: string, ttlSeconds: number): Promise<T | undefined> {
    const [item] = await this.fetch("gat", [key], ttlSeconds);
    return item === undefined ? undefined : (this.decode(item) as T | undefined);
  }

  /** gat with the CAS token. */
  async gats<T = unknown>(key: string, ttlSeconds: number): Promise<CasItem<T> | undefined> {
    const [item] = await this.fetch("gats", [key], ttlSeconds);
    return this.casItem<T>(item);
  }

  // ---- storage ----

  /** Stores unconditionally. Resolves true when stored. */
  async set(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return (await this.storage("set", key, value, options)) === "stored";
  }

  /** Stores only if the key is absent. Resolves false when it exists. */
  async add(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return (await this.storage("add", key, value, options)) === "stored";
  }

  /** Stores only if the key exists. Resolves false when it is absent. */
  async replace(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    return (await this.storage("replace", key, value, options)) === "stored";
  }

  /** Appends raw bytes to an existing value (flags and TTL unchanged). False when absent. */
  async append(key: string, data: string | Buffer): Promise<boolean> {
    return (await this.storage("append", key, Buffer.from(data), { flags: 0 })) === "stored";
  }

  /** Prepends raw bytes to an existing value (flags and TTL unchanged). False when absent. */
  async prepend(key: string, data: string | Buffer): Promise<boolean> {
    return (await this.storage("prepend", key, Buffer.from(data), { flags: 0 })) === "stored";
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
    return this.storage("cas", key, value, options, cas) as Promise<CasResult>;
  }

  // ---- other keyed commands ----

  /** Resolves true when the key existed. */
  async delete(key: string): Promise<boolean> {
    return (
      (await this.simple(key, encodeLine("delete", key), "delete", DELETE_REPLY)) === "DELETED"
    );
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
  async touch(key: string, ttlSeconds: number): Promise<boolean> {
    const line = encodeLine("touch", key, toWireExptime(ttlSeconds));
    return (await this.simple(key, line, "touch", TOUCH_REPLY)) === "TOUCHED";
  }

  // ---- whole-server commands (sent to every node) ----

  /** Invalidates every item on every node, optionally after `delaySeconds`. */
  async flushAll(delaySeconds = 0): Promise<void> {
    if (!Number.isSafeInteger(delaySeconds) || delaySeconds < 0) {
      throw new MemcacheIllegalInputError(
        `flushAll delaySeconds must be a whole number >= 0, got ${delaySeconds}`,
      );
    }
    const line = delaySeconds > 0 ? encodeLine("flush_all", delaySeconds) : "flush_all\r\n";
    await this.eachNode(async (node) => {
      await node.send<string>(line, Reply.LINE, "flush_all", OK_REPLY);
    });
  }

  /** Server version per node endpoint, e.g. `{ "10.0.0.5:11211": "1.6.22" }`. */
  version(): Promise<Record<string, string>> {
    return this.eachNode(async (node) => {
      const line = await node.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY);
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
      nodes.map((node) => node.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY)),
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
    if (group !== undefined && !STATS_GROUPS.has(group)) {
      return Promise.reject(
        new MemcacheIllegalInputError(
          `stats group must be one of ${[...STATS_GROUPS].join(", ")}; got "${group}"`,
        ),
      );
    }
    const line = group === undefined ? "stats\r\n" : encodeLine("stats", group);
    return this.eachNode((node) => node.send<Record<string, string>>(line, Reply.STATS, "stats"));
  }

  // ---- meta protocol (memcached >= 1.6.10: HD/VA/EN replies) ----

  /**
   * Whether the node holding `key` speaks the meta protocol as this client expects (answers `mn`
   * with MN and runs 1.6.10 or later, where replies are HD/VA/EN). Probed once per connection.
   */
  async hasMeta(key = ""): Promise<boolean> {
    const node = await this.route(key);
    if (node.metaSupport !== undefined) return node.metaSupport;
    const versionLine = node.send<string>("version\r\n", Reply.LINE, "version", VERSION_REPLY);
    const noop = node.send<MetaReply>("mn\r\n", Reply.META, "mn");
    const [version, probe] = await Promise.allSettled([versionLine, noop]);
    if (version.status === "rejected") throw version.reason;
    if (probe.status === "rejected" && !(probe.reason instanceof MemcacheUnknownCommandError)) {
      throw probe.reason;
    }
    const supported =
      probe.status === "fulfilled" &&
      probe.value.code === "MN" &&
      versionAtLeast(version.value.slice(8), [1, 6, 10]);
    node.metaSupport = supported;
    return supported;
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
  async metaSet(key: string, value: unknown, flags: readonly string[] = []): Promise<MetaReply> {
    assertValidKey(key);
    assertMetaFlags(flags);
    const encoded = this.encode(value);
    const all = flags.some((f) => f[0] === "F") ? flags : [...flags, `F${encoded.flags}`];
    const payload = encodeMetaSet(key, encoded.data, all);
    return (await this.route(key)).send<MetaReply>(payload, Reply.META, "ms", WITH_DATA);
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
    return (await this.route(key)).send<MetaReply>("mn\r\n", Reply.META, "mn");
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
   * server answered END alone. Plain memcached answers ERROR (MemcacheUnknownCommandError).
   */
  async configGet(name = "cluster", key = ""): Promise<Buffer | undefined> {
    if (!/^[a-z_]{1,32}$/.test(name)) {
      throw new MemcacheIllegalInputError(`config name must be a lowercase word, got "${name}"`);
    }
    const node = await this.route(key);
    return node.send<Buffer | undefined>(encodeLine("config", "get", name), Reply.CONFIG, "config");
  }

  /** Closes every socket. The client stays usable: the next call reconnects. */
  close(): void {
    this.cluster.close();
    this.discovery?.close();
  }

  // ---- the three protocol helpers ----

  /** get/gets/gat/gats of many keys: one pipelined round trip per node, lines under 2 KB. */
  private async fetch(
    verb: "get" | "gets" | "gat" | "gats",
    keys: readonly string[],
    ttlSeconds?: number,
  ): Promise<RetrievedValue[]> {
    const prefix = ttlSeconds === undefined ? verb : `${verb} ${toWireExptime(ttlSeconds)}`;
    if (keys.length === 1) {
      const key = keys[0]!;
      assertValidKey(key);
      return (await this.route(key)).send<RetrievedValue[]>(
        `${prefix} ${key}\r\n`,
        Reply.VALUES,
        verb,
        READ,
      );
    }
    await this.ready();
    const byNode = new Map<Connection, string[]>();
    for (const key of new Set(keys)) {
      assertValidKey(key);
      const node = this.cluster.nodeFor(key);
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [key]);
      else list.push(key);
    }
    const requests: Promise<RetrievedValue[]>[] = [];
    for (const [node, nodeKeys] of byNode) {
      let line = prefix;
      for (const key of nodeKeys) {
        if (line.length + key.length + 1 > MAX_GET_LINE) {
          requests.push(node.send(`${line}\r\n`, Reply.VALUES, verb, READ));
          line = prefix;
        }
        line += ` ${key}`;
      }
      requests.push(node.send(`${line}\r\n`, Reply.VALUES, verb, READ));
    }
    // One failing node does not sink the others' hits: its keys read as misses. Only when every
    // node failed does the whole call fail.
    const settled = await Promise.allSettled(requests);
    const items: RetrievedValue[] = [];
    let failure: PromiseRejectedResult | undefined;
    for (const result of settled) {
      if (result.status === "fulfilled") items.push(...result.value);
      else failure ??= result;
    }
    if (
      failure !== undefined &&
      items.length === 0 &&
      settled.every((r) => r.status === "rejected")
    ) {
      throw failure.reason;
    }
    return items;
  }

  /** set/add/replace/append/prepend/cas. */
  private async storage(
    verb: StorageVerb,
    key: string,
    value: unknown,
    options: SetOptions | undefined,
    cas?: string,
  ): Promise<StorageResult> {
    assertValidKey(key);
    if (options !== undefined) assertSetOptions(verb, options);
    const encoded = this.encode(value);
    const flags = options?.flags ?? encoded.flags;
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
      throw new MemcacheIllegalInputError(`flags must be a 32-bit unsigned integer, got ${flags}`);
    }
    const exptime = toWireExptime(options?.ttlSeconds ?? 0);
    const payload = encodeStorage(verb, key, flags, exptime, encoded.data, cas);
    const line = await (await this.route(key)).send<string>(
      payload,
      Reply.LINE,
      verb,
      STORAGE_REPLY,
    );
    return STORAGE_REPLIES[line]!;
  }

  /** Any keyed command with a one-line reply. */
  private async simple(
    key: string,
    line: string,
    verb: string,
    options: SendOptions,
  ): Promise<string> {
    assertValidKey(key);
    return (await this.route(key)).send<string>(line, Reply.LINE, verb, options);
  }

  private async arithmetic(
    verb: "incr" | "decr",
    key: string,
    delta: number | bigint,
  ): Promise<number | bigint | undefined> {
    if (
      (typeof delta === "number" && !(Number.isSafeInteger(delta) && delta >= 0)) ||
      (typeof delta === "bigint" && (delta < 0n || delta >= 2n ** 64n))
    ) {
      throw new MemcacheIllegalInputError(
        `${verb} delta must be an integer in 0..2^64-1, got ${delta}`,
      );
    }
    const line = await this.simple(
      key,
      encodeLine(verb, key, delta.toString()),
      verb,
      NUMBER_REPLY,
    );
    if (line === "NOT_FOUND") return undefined;
    const n = Number(line);
    return Number.isSafeInteger(n) ? n : BigInt(line);
  }

  private async meta(
    verb: "mg" | "md" | "ma",
    key: string,
    flags: readonly string[],
  ): Promise<MetaReply> {
    assertValidKey(key);
    assertMetaFlags(flags);
    const line =
      flags.length === 0 ? `${verb} ${key}\r\n` : `${verb} ${key} ${flags.join(" ")}\r\n`;
    return (await this.route(key)).send<MetaReply>(line, Reply.META, verb);
  }

  private encode(value: unknown) {
    const encoded = this.serde.encode(value);
    if (encoded.data.length > this.maxValueBytes) {
      throw new MemcacheIllegalInputError(
        `value is ${encoded.data.length} bytes, over maxValueBytes (${this.maxValueBytes}); raise it only if the server runs with a larger -I`,
      );
    }
    return encoded;
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

function versionAtLeast(version: string, minimum: readonly number[]): boolean {
  const parts = version.split(/[.-]/).map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < minimum.length; i++) {
    const part = parts[i] ?? 0;
    if (Number.isNaN(part)) return false;
    if (part !== minimum[i]) return part > minimum[i]!;
  }
  return true;
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
