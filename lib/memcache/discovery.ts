// ElastiCache Auto Discovery: `config get cluster` on the configuration endpoint returns
//   CONFIG cluster 0 <bytes>\r\n<version>\n<host>|<ip>|<port> <host>|<ip>|<port>...\n\r\nEND\r\n
// The reply parser checks the byte count; this file parses the block and keeps the node set in
// step. Refreshes are lazy (on the first command after refreshIntervalMs) because a frozen
// Lambda runs no timers; only a higher config version is applied. A server that answers ERROR
// (plain memcached, ElastiCache Serverless) puts the client in static mode: the endpoint itself
// is the only node.

import { isIP } from "node:net";
import type { NodeAddress } from "./address.ts";
import type { NodeSet } from "./cluster.ts";
import { type Connection, Reply } from "./connection.ts";
import { MemcacheDiscoveryError, MemcacheUnknownCommandError } from "./errors.ts";
import { msRule, type OptionRules } from "./options.ts";

export interface ClusterConfig {
  version: number;
  nodes: NodeAddress[];
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses the data block of `config get cluster`; throws MemcacheDiscoveryError saying what is wrong. */
export function parseClusterConfig(data: Buffer): ClusterConfig {
  const text = data.toString("latin1");
  const lines = text.split("\n");
  // "<version>\n<nodes>\n" splits into [version, nodes, ""]
  if (lines.length !== 3 || lines[2] !== "") {
    throw new MemcacheDiscoveryError(
      `malformed Auto Discovery reply: expected "<version>\\n<nodes>\\n", got ${JSON.stringify(text.slice(0, 120))}`,
    );
  }
  const [versionText, nodesText] = lines as [string, string, string];
  if (!/^[0-9]{1,15}$/.test(versionText)) {
    throw new MemcacheDiscoveryError(
      `malformed Auto Discovery reply: bad config version ${JSON.stringify(versionText)}`,
    );
  }
  const entries = nodesText.split(" ").filter((entry) => entry.length > 0);
  if (entries.length === 0) throw new MemcacheDiscoveryError("Auto Discovery reply lists no nodes");
  const nodes = entries.map((entry) => {
    const parts = entry.split("|");
    const [host, ip, portText] = parts as [string, string, string];
    const port = Number(portText);
    if (
      parts.length !== 3 ||
      !HOSTNAME.test(host) ||
      (ip !== "" && isIP(ip) === 0) ||
      !/^[0-9]{1,5}$/.test(portText ?? "") ||
      port < 1 ||
      port > 65535
    ) {
      throw new MemcacheDiscoveryError(
        `malformed Auto Discovery node entry ${JSON.stringify(entry.slice(0, 120))}`,
      );
    }
    return ip === "" ? { host, port } : { host, port, ip };
  });
  return { version: Number(versionText), nodes };
}

export interface DiscoveryOptions {
  /** How old the node list may get before the next command refreshes it. Default 60,000 ms. */
  refreshIntervalMs: number;
}

export const discoveryDefaults: DiscoveryOptions = { refreshIntervalMs: 60_000 };

export const discoveryRules: OptionRules<DiscoveryOptions> = { refreshIntervalMs: msRule(1) };

export class AutoDiscovery {
  /** The configuration version in use (-1 before the first answer). */
  version = -1;
  /** "static" once the endpoint answered ERROR: it is the only node, never refreshed. */
  mode: "discovering" | "static" = "discovering";
  /** The last refresh failure (kept for health checks); the node list stayed as it was. */
  lastError: Error | undefined;
  private lastRefreshAt = 0;
  private inflight: Promise<void> | undefined;
  private readonly endpoint: Connection;
  private readonly nodes: NodeSet;
  private readonly options: DiscoveryOptions;

  /** `options` must be complete and checked (the client does that). */
  constructor(endpoint: Connection, nodes: NodeSet, options: DiscoveryOptions) {
    this.endpoint = endpoint;
    this.nodes = nodes;
    this.options = options;
  }

  /**
   * Called before every command. Resolves nothing (undefined) when the node list is usable; the
   * first command waits for the first discovery. A due refresh runs in the background.
   */
  beforeCommand(now: number = Date.now()): Promise<void> | undefined {
    if (this.mode === "static") return undefined;
    if (this.nodes.size === 0) return this.refresh();
    if (this.inflight === undefined && now - this.lastRefreshAt >= this.options.refreshIntervalMs) {
      this.refresh().catch(() => {
        // Recorded in lastError; the current node list stays in use.
      });
    }
    return undefined;
  }

  /** Asks the configuration endpoint now (one request at a time). */
  refresh(): Promise<void> {
    this.inflight ??= this.ask().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async ask(): Promise<void> {
    this.lastRefreshAt = Date.now();
    try {
      const data = await this.endpoint.send<Buffer | undefined>(
        "config get cluster\r\n",
        Reply.CONFIG,
        "config",
        undefined,
        0, // keys named, for diagnostics
      );
      if (data === undefined)
        throw new MemcacheDiscoveryError("config get cluster answered END without a CONFIG block");
      const config = parseClusterConfig(data);
      if (config.version < this.version) {
        throw new MemcacheDiscoveryError(
          `Auto Discovery reply has config version ${config.version}, older than ${this.version} in use; ignored`,
        );
      }
      if (config.version > this.version) {
        this.nodes.update(config.nodes);
        this.version = config.version;
      }
      this.lastError = undefined;
    } catch (error) {
      if (error instanceof MemcacheUnknownCommandError && this.nodes.size === 0) {
        this.mode = "static";
        this.endpoint.close();
        this.nodes.update([this.endpoint.node]);
        return;
      }
      this.lastError = error as Error;
      throw error;
    }
  }

  close(): void {
    this.endpoint.close();
  }
}
