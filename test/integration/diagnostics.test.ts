// The per-request diagnostics_channel events (lib/memcache/diagnostics.ts) against a real
// memcached: what a subscriber sees for reads, writes, multi-key reads and failures, and the
// events turned into OpenTelemetry spans with the database semantic conventions' attribute names.

import { type TracingChannelSubscribers, tracingChannel } from "node:diagnostics_channel";
import { type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect } from "vitest";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  COMMAND_CHANNEL,
  type CommandContext,
  commandChannel,
  otelAttributes,
} from "../../lib/memcache/diagnostics.ts";
import type { MemcachedProcess } from "../../tools/memcached.ts";
import { blackHole, type FakeServer, startFakeServer } from "../helpers/fake-server.ts";
import { it } from "../helpers/fixtures.ts";

/** The file's memcached and a client of it (fixtures). */
let server: MemcachedProcess;
let client: MemcacheClient;
const channel = tracingChannel<unknown, CommandContext>(COMMAND_CHANNEL);
let unsubscribe: (() => void) | undefined;

/** Subscribes for the rest of the test; returns the settled events, in order. */
function collect(): CommandContext[] {
  const settled: CommandContext[] = [];
  const subscribers: TracingChannelSubscribers<CommandContext> = {
    start() {},
    end() {},
    asyncStart() {},
    asyncEnd(context) {
      settled.push({ ...context });
    },
    error() {},
  };
  channel.subscribe(subscribers);
  unsubscribe = () => channel.unsubscribe(subscribers);
  return settled;
}

it.beforeAll(async ({ memcached, client: fileClient }) => {
  server = memcached;
  client = fileClient;
});

afterEach(() => {
  unsubscribe?.();
  unsubscribe = undefined;
});

describe("the lambda-memcache:command tracing channel", () => {
  it("has no subscribers unless someone subscribes (then the client builds no event)", () => {
    expect(commandChannel.hasSubscribers).toBe(false);
    const events = collect();
    expect(commandChannel.hasSubscribers).toBe(true);
    unsubscribe?.();
    unsubscribe = undefined;
    expect(commandChannel.hasSubscribers).toBe(false);
    expect(events).toEqual([]);
  });

  it("reports command, node, key count, outcome and duration of every request", async () => {
    const events = collect();

    expect(await client.set("diag:a", "1")).toBe(true);
    expect(await client.add("diag:a", "2")).toBe(false);
    expect(await client.get("diag:a")).toBe("1");
    expect(await client.get("diag:absent")).toBeUndefined();
    expect(await client.incr("diag:absent")).toBeUndefined();
    expect(await client.delete("diag:a")).toBe(true);
    expect((await client.metaGet("diag:absent")).code).toBe("EN");

    const node = `${server.host}:${server.port}`;
    expect(events.map((e) => [e.command, e.node, e.keyCount, e.outcome])).toEqual([
      ["set", node, 1, "stored"],
      ["add", node, 1, "not_stored"],
      ["get", node, 1, "hit"],
      ["get", node, 1, "miss"],
      ["incr", node, 1, "not_found"],
      ["delete", node, 1, "deleted"],
      ["mg", node, 1, "en"],
    ]);
    for (const event of events) {
      expect(event.durationMs).toBeGreaterThan(0);
      expect(event.durationMs).toBeLessThan(1_000);
      expect(event.serverPort).toBe(server.port);
    }
    // The channel adds the result: what the caller got.
    expect(events[2]!.result).toBe("1");
  });

  it("counts the keys of a multi-key request", async () => {
    await client.set("diag:m1", "x");
    const events = collect();

    await client.getMany(["diag:m1", "diag:m2", "diag:m3"]);

    expect(events.map((e) => [e.command, e.keyCount, e.outcome])).toEqual([["get", 3, "hit"]]);
  });

  it("reports a failed request with outcome error and the error", async () => {
    const fake: FakeServer = await startFakeServer(blackHole);
    const silent = new MemcacheClient({ servers: fake.endpoint, timeoutMs: 30 });
    const events = collect();
    try {
      await expect(silent.get("diag:k")).rejects.toThrow(/did not answer/);
    } finally {
      silent.close();
      await fake.close();
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ command: "get", keyCount: 1, outcome: "error" });
    expect((events[0]!.error as Error).message).toMatch(/timeoutMs/);
    expect(events[0]!.durationMs).toBeGreaterThanOrEqual(25);
  });
});

describe("feeding OpenTelemetry spans", () => {
  it("turns each request into a client span with db.* and server.* attributes", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const tracer = provider.getTracer("lambda-memcache-test");
    const spans = new WeakMap<CommandContext, Span>();
    const subscribers: TracingChannelSubscribers<CommandContext> = {
      start(context) {
        spans.set(
          context,
          tracer.startSpan(`memcached ${context.command}`, { kind: SpanKind.CLIENT }),
        );
      },
      end() {},
      asyncStart() {},
      asyncEnd(context) {
        const span = spans.get(context)!;
        span.setAttributes(otelAttributes(context));
        if (context.error !== undefined) {
          span.recordException(context.error as Error);
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      },
      error() {},
    };
    channel.subscribe(subscribers);
    unsubscribe = () => channel.unsubscribe(subscribers);

    await client.set("diag:otel", { id: 7 });
    await client.getMany(["diag:otel", "diag:otel-2"]);
    await expect(client.cas("diag:otel", 1, "1")).resolves.toBe("exists");

    const finished = exporter.getFinishedSpans();
    expect(finished.map((span) => span.name)).toEqual([
      "memcached set",
      "memcached get",
      "memcached cas",
    ]);
    expect(finished.every((span) => span.kind === SpanKind.CLIENT)).toBe(true);
    expect(finished[1]!.attributes).toEqual({
      "db.system.name": "memcached",
      "db.operation.name": "get",
      "server.address": server.host,
      "server.port": server.port,
      "db.operation.batch.size": 2,
      "lambda_memcache.outcome": "hit",
    });
    expect(finished[2]!.attributes["lambda_memcache.outcome"]).toBe("exists");
    await provider.shutdown();
  });
});
