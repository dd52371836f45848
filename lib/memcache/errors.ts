// Every error class of lambda-memcache, in one place. One base class; each subclass names a
// failure the caller may want to tell apart (the cache layer treats the client's as "cache
// unavailable"). Naming rule: `Memcache<Something>Error`, and `name` equals the class name, set
// as a literal so a minifying bundler (esbuild renames classes) cannot change it. So a cache
// timeout (`MemcacheTimeoutError`) is never mistaken for the DOMException `TimeoutError` that
// `AbortSignal.timeout()` raises (e.g. in a fetch to the origin).
//
// Bad options are not among them: they throw TypeError (see options.ts), as Middy does.

/** Base class of every error lambda-memcache raises at run time. */
export class MemcacheError extends Error {
  override readonly name: string = "MemcacheError";
}

// ---- the wire client ----

/** The server answered `CLIENT_ERROR <message>`: it rejected the command as malformed. */
export class MemcacheClientError extends MemcacheError {
  override readonly name = "MemcacheClientError";
}

/** The server answered `SERVER_ERROR <message>` (e.g. "object too large for cache", out of memory). */
export class MemcacheServerError extends MemcacheError {
  override readonly name = "MemcacheServerError";
}

/** The server answered `ERROR`: it does not know the command (old memcached, ElastiCache Serverless). */
export class MemcacheUnknownCommandError extends MemcacheError {
  override readonly name = "MemcacheUnknownCommandError";
}

/** The connection closed, reset or failed to open before the reply arrived. */
export class MemcacheConnectionClosedError extends MemcacheError {
  override readonly name = "MemcacheConnectionClosedError";
}

/** No reply (or no connection) within the configured time (timeoutMs / connectTimeoutMs). */
export class MemcacheTimeoutError extends MemcacheError {
  override readonly name = "MemcacheTimeoutError";
}

/** The node failed repeatedly and is skipped until its retry time; nothing was sent. */
export class MemcacheNodeDeadError extends MemcacheError {
  override readonly name = "MemcacheNodeDeadError";
}

/** The server sent bytes that are not valid memcached protocol; the connection was destroyed. */
export class MemcacheProtocolError extends MemcacheError {
  override readonly name = "MemcacheProtocolError";
}

/** The caller passed a key, value or argument the client refuses to send; nothing was sent. */
export class MemcacheIllegalInputError extends MemcacheError {
  override readonly name = "MemcacheIllegalInputError";
}

// ---- clusters and Auto Discovery ----

/** The cluster has no nodes yet (Auto Discovery has not answered). */
export class MemcacheNoNodesError extends MemcacheError {
  override readonly name = "MemcacheNoNodesError";
}

/** An Auto Discovery reply was malformed or older than the configuration in use; nothing changed. */
export class MemcacheDiscoveryError extends MemcacheError {
  override readonly name = "MemcacheDiscoveryError";
}

// ---- counters (lib/cache/counters.ts) ----

/** The CAS loop gave up: too many concurrent writers for maxAttempts. Nothing was lost. */
export class MemcacheCasConflictError extends MemcacheError {
  override readonly name = "MemcacheCasConflictError";
}

/**
 * The stored counter value could not be decoded, so it was not updated: guessing (treating it as
 * absent) could drop a count that a damaged reply merely hid.
 */
export class MemcacheCounterValueError extends MemcacheError {
  override readonly name = "MemcacheCounterValueError";
}

// ---- the cache layer (lib/cache) ----

/**
 * An invalidation that did not reach every cluster a reader could find the key in, even after
 * its retries: a reader may still get the value from before it. `clusters` names where it failed
 * ("cache" for a single cluster, "new" or "old" during a cutover); the cause is the last failure.
 */
export class MemcacheIncompleteInvalidationError extends MemcacheError {
  override readonly name = "MemcacheIncompleteInvalidationError";
  readonly clusters: readonly string[];

  constructor(message: string, options: ErrorOptions & { clusters?: readonly string[] } = {}) {
    super(message, options);
    this.clusters = options.clusters ?? [];
  }
}
