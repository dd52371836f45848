// The package's root entry (`lambda-memcache`): the memcached client, its options and result
// types, every error it raises, key helpers and value formats. This file is the public API of
// lib/memcache: what is not exported here is internal and may change without notice.
// The cache layer is `lambda-memcache/cache`, the Middy middleware `lambda-memcache/middleware`.

export type {
  CasItem,
  CasResult,
  ClientOptions,
  NodeHealth,
  SetOptions,
  StoreResult,
} from "./memcache/client.ts";
export { MemcacheClient } from "./memcache/client.ts";
export { NoNodesError } from "./memcache/cluster.ts";
export { DiscoveryError } from "./memcache/discovery.ts";
export {
  ConnectionClosedError,
  IllegalInputError,
  MemcacheClientError,
  MemcacheError,
  MemcacheServerError,
  NodeDeadError,
  ProtocolError,
  TimeoutError,
  UnknownCommandError,
} from "./memcache/errors.ts";
export { assertValidKey, MAX_KEY_BYTES, safeKey } from "./memcache/keys.ts";
export type { MetaReply } from "./memcache/protocol.ts";
export type { Encoded, Serde } from "./memcache/serde.ts";
export {
  defaultSerde,
  FLAG_BYTES,
  FLAG_CHECKSUM,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_STRING,
  withChecksum,
} from "./memcache/serde.ts";
