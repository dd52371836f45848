// Node addresses, parsed once at the edge (pymemcache's normalize_server_spec is the model):
// whatever the caller wrote — `host:port`, `[v6]:port`, `host` (port 11211), a comma-separated
// list, an array of those or of NodeAddress objects — becomes NodeAddress values here, and
// everything after (the client, the node set, discovery, the cache config) takes only those.

import { isIP } from "node:net";
import { MemcacheIllegalInputError } from "./errors.ts";

/** memcached's port when an address gives none. */
export const DEFAULT_PORT = 11211;

/** One memcached node (or an ElastiCache configuration endpoint). */
export interface NodeAddress {
  /** The node's name: hashed onto the ring, verified against its TLS certificate, shown in errors. */
  readonly host: string;
  readonly port: number;
  /** Where to connect when it differs from host: a discovered IP address. Default: host. */
  readonly ip?: string;
}

/** What a caller may pass for one node or a list of them. */
export type AddressInput = string | NodeAddress;
export type AddressListInput = string | readonly AddressInput[];

const ADDRESS = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+))(?::(\d{1,5}))?$/;
const EXAMPLES = '(examples: "127.0.0.1:11211", "[::1]:11211", "cache.local")';

/** Parses `host:port`, `[v6]:port` or `host`; throws MemcacheIllegalInputError naming the text. */
export function parseAddress(text: string): NodeAddress {
  const match = ADDRESS.exec(text.trim());
  const port = match?.[3] === undefined ? DEFAULT_PORT : Number(match[3]);
  if (match === null || port < 1 || port > 65535) {
    throw new MemcacheIllegalInputError(`"${text.trim()}" is not host:port ${EXAMPLES}`);
  }
  const v6 = match[1];
  if (v6 !== undefined && isIP(v6) !== 6) {
    throw new MemcacheIllegalInputError(`"${text.trim()}" has no valid IPv6 address in brackets`);
  }
  return { host: v6 ?? match[2]!, port };
}

/** Checks a NodeAddress given as an object; returns it as a fresh, frozen value. */
export function checkAddress(address: NodeAddress): NodeAddress {
  const { host, port, ip } = address;
  const extra = Object.keys(address).filter((k) => k !== "host" && k !== "port" && k !== "ip");
  if (
    typeof host !== "string" ||
    host === "" ||
    /[\s[\]]/.test(host) ||
    !Number.isInteger(port) ||
    port < 1 ||
    port > 65535 ||
    (ip !== undefined && (typeof ip !== "string" || isIP(ip) === 0)) ||
    extra.length > 0
  ) {
    throw new MemcacheIllegalInputError(
      `${JSON.stringify(address)} is not a node address { host, port (1..65535), ip? (an IP address) }`,
    );
  }
  return Object.freeze(ip === undefined ? { host, port } : { host, port, ip });
}

/** One address from text or an object. */
export function toAddress(input: AddressInput): NodeAddress {
  if (typeof input === "string") return parseAddress(input);
  if (typeof input === "object" && input !== null) return checkAddress(input);
  throw new MemcacheIllegalInputError(`a node address must be "host:port" or { host, port }`);
}

/**
 * A list of addresses: a comma-separated string, or an array of strings and NodeAddress
 * objects. Every entry must parse (an empty entry is an error, not skipped).
 */
export function toAddressList(input: AddressListInput): NodeAddress[] {
  const entries = typeof input === "string" ? input.split(",") : input;
  return entries.map(toAddress);
}

/** `host:port`, or `[v6]:port` for an IPv6 address: the form parseAddress reads back. */
export function formatAddress(address: NodeAddress): string {
  return isIP(address.host) === 6
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}

/** True when two addresses name the same node (host names compared without letter case). */
export function sameAddress(a: NodeAddress, b: NodeAddress): boolean {
  return a.port === b.port && a.host.toLowerCase() === b.host.toLowerCase();
}
