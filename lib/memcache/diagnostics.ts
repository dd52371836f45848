// Per-request observability through node:diagnostics_channel, the Node convention for libraries
// (undici, node:http and pg publish the same way): a tracing channel that costs one boolean check
// per request when nobody subscribes. Subscribe to turn the events into spans or metrics;
// otelAttributes() names the fields as OpenTelemetry's database semantic conventions do.
//
//   import { tracingChannel } from "node:diagnostics_channel";
//   tracingChannel("lambda-memcache:command").subscribe({
//     start(ctx) {}, end(ctx) {}, asyncStart(ctx) {}, error(ctx) {},
//     asyncEnd(ctx) { console.log(ctx.command, ctx.node, ctx.outcome, ctx.durationMs); },
//   });

import { tracingChannel } from "node:diagnostics_channel";

/** The name to subscribe to with `tracingChannel(name)`. */
export const COMMAND_CHANNEL = "lambda-memcache:command";

/**
 * One request on the wire to one node (a getMany over three nodes is three events). The
 * tracing channel adds `result` or `error` when the request settles.
 */
export interface CommandContext {
  /** The command as sent: get, gets, set, add, delete, incr, cas, mg, ms, version, ... */
  command: string;
  /** `host:port` of the node. */
  node: string;
  serverAddress: string;
  serverPort: number;
  /** Keys the request names (0 for whole-server commands such as version or stats). */
  keyCount: number;
  /**
   * How the server answered, set when the request settles: "hit" / "miss" for get-style reads;
   * the reply word in lower case for one-line replies ("stored", "not_stored", "exists",
   * "not_found", "deleted", "touched"; "ok" for numbers and VERSION); the meta code in lower case
   * ("va", "hd", "en", "nf", "ns", "ex", "mn"); "error" when it rejected (see `error`).
   */
  outcome: string;
  /** From the call to the settled reply, in ms (queueing, the write and the round trip). */
  durationMs: number;
  result?: unknown;
  error?: unknown;
}

export const commandChannel = tracingChannel<unknown, CommandContext>(COMMAND_CHANNEL);

/**
 * The event's fields under OpenTelemetry's database client semantic conventions
 * (`db.system.name` memcached, `db.operation.name`, `server.address`, `server.port`,
 * `db.operation.batch.size` for requests naming several keys, `error.type` on failure), ready for
 * `span.setAttributes()` (OpenTelemetry, or Powertools Tracer's underlying segment metadata).
 */
export function otelAttributes(context: CommandContext): Record<string, string | number> {
  const attributes: Record<string, string | number> = {
    "db.system.name": "memcached",
    "db.operation.name": context.command,
    "server.address": context.serverAddress,
    "server.port": context.serverPort,
    "lambda_memcache.outcome": context.outcome,
  };
  if (context.keyCount > 1) attributes["db.operation.batch.size"] = context.keyCount;
  if (context.error !== undefined) {
    attributes["error.type"] =
      context.error instanceof Error ? context.error.name : typeof context.error;
  }
  return attributes;
}
