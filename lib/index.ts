// The package's root entry (`lambda-memcache`): the memcached client, its options and result
// types, node addresses, the diagnostics_channel name and event of every request, every error
// the package raises, key helpers and value formats. This
// file is the public API of lib/memcache: what is not exported here is internal and may change
// without notice. The cache layer is `lambda-memcache/cache`, the Middy middleware
// `lambda-memcache/middleware`.

export type { AddressInput, AddressListInput, NodeAddress } from "./memcache/address.ts";
export { formatAddress, parseAddress } from "./memcache/address.ts";
export type {
  CasItem,
  CasResult,
  ClientOptions,
  NodeHealth,
  SetOptions,
  StorageResult,
  UndecodableValue,
} from "./memcache/client.ts";
export { MemcacheClient } from "./memcache/client.ts";
export type { CommandContext } from "./memcache/diagnostics.ts";
export { COMMAND_CHANNEL, otelAttributes } from "./memcache/diagnostics.ts";
export {
  MemcacheCasConflictError,
  MemcacheClientError,
  MemcacheConnectionClosedError,
  MemcacheCounterValueError,
  MemcacheDiscoveryError,
  MemcacheError,
  MemcacheIllegalInputError,
  MemcacheIncompleteInvalidationError,
  MemcacheNodeDeadError,
  MemcacheNoNodesError,
  MemcacheProtocolError,
  MemcacheServerError,
  MemcacheTimeoutError,
  MemcacheUnknownCommandError,
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
  FLAG_LONG,
  FLAG_PICKLE,
  FLAG_STRING,
  FLAG_ZLIB,
  withChecksum,
} from "./memcache/serde.ts";
