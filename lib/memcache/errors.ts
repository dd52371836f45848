// Typed errors of the memcached client. One base class; each subclass names a failure the
// caller may want to tell apart (a cache layer treats all of them as "cache unavailable").

/** Base class of every error the memcached client raises. */
export class MemcacheError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The server answered `CLIENT_ERROR <message>`: it rejected the command as malformed. */
export class MemcacheClientError extends MemcacheError {}

/** The server answered `SERVER_ERROR <message>` (e.g. "object too large for cache", out of memory). */
export class MemcacheServerError extends MemcacheError {}

/** The server answered `ERROR`: it does not know the command (old memcached, ElastiCache Serverless). */
export class UnknownCommandError extends MemcacheError {}

/** The connection closed, reset or failed to open before the reply arrived. */
export class ConnectionClosedError extends MemcacheError {}

/** No reply (or no connection) within the configured time. */
export class TimeoutError extends MemcacheError {}

/** The node failed repeatedly and is skipped until its retry time; nothing was sent. */
export class NodeDeadError extends MemcacheError {}

/** The server sent bytes that are not valid memcached protocol; the connection was destroyed. */
export class ProtocolError extends MemcacheError {}

/** The caller passed a key, value or option the client refuses to send; nothing was sent. */
export class IllegalInputError extends MemcacheError {}
