// Python services for the interop tests: test/fixtures/python/agent.py under Debian's
// /usr/bin/python3 with the real pymemcache and pylibmc, as one long-lived process answering JSON
// requests line by line, or as racing processes released together.

import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { ensurePythonClients, PYTHON } from "../../tools/binaries.ts";
import { type Racer, startRacer } from "./racers.ts";

const AGENT = path.join(import.meta.dirname, "../fixtures/python/agent.py");

/** The Python clients the agent runs (see agent.py). */
export type PythonClient = "pymemcache" | "pymemcache-serde" | "pymemcache-json" | "pylibmc";

/** A value as the agent sends and receives it: Python's type plus its content. */
export type PyValue =
  | { type: "bytes"; base64: string }
  | { type: "str"; text: string }
  | { type: "int"; decimal: string }
  | { type: "bool"; value: boolean }
  | { type: "float"; value: number }
  | { type: "none" }
  | { type: "json"; value: unknown }
  | { type: "dict" | "list"; value: unknown };

export const py = {
  bytes: (data: Buffer | string): PyValue => ({
    type: "bytes",
    base64: Buffer.from(data).toString("base64"),
  }),
  str: (text: string): PyValue => ({ type: "str", text }),
  int: (value: number | bigint): PyValue => ({ type: "int", decimal: value.toString() }),
  bool: (value: boolean): PyValue => ({ type: "bool", value }),
  float: (value: number): PyValue => ({ type: "float", value }),
  none: (): PyValue => ({ type: "none" }),
  /** A dict or list, written by Python as what the client makes of it. */
  json: (value: unknown): PyValue => ({ type: "json", value }),
};

/** What a Python get returned, or the exception it raised. */
export type PyResult = PyValue | { raised: string; message: string };

export interface PythonAgent {
  /** Sends one request; resolves with the agent's result or rejects with its exception. */
  request<T = unknown>(request: Record<string, unknown>): Promise<T>;
  /** A get through `client`: the value, or `{ raised }` when Python raised. */
  get(client: PythonClient, servers: string[], key: string): Promise<PyResult>;
  set(
    client: PythonClient,
    servers: string[],
    key: string,
    value: PyValue,
    extra?: { flags?: number; min_compress_len?: number },
  ): Promise<boolean>;
  /** Server indexes pylibmc (libmemcached) picks for `keys`, for servers "host:port[:weight]". */
  ring(servers: string[], keys: string[], behaviors?: Record<string, unknown>): Promise<number[]>;
  close(): Promise<void>;
}

export async function startPythonAgent(): Promise<PythonAgent> {
  await ensurePythonClients();
  const child = spawn(PYTHON, [AGENT, "serve"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const waiting: Array<{ resolve: (line: string) => void; reject: (error: Error) => void }> = [];
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => waiting.shift()?.resolve(line));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", (code, signal) => {
    for (const pending of waiting.splice(0)) {
      pending.reject(new Error(`python agent exited (${code ?? signal}): ${stderr}`));
    }
  });

  const request = <T>(body: Record<string, unknown>): Promise<T> =>
    new Promise<string>((resolve, reject) => {
      waiting.push({ resolve, reject });
      child.stdin.write(`${JSON.stringify(body)}\n`);
    }).then((line) => {
      const reply = JSON.parse(line) as
        | { ok: true; result: T }
        | { ok: false; error: string; message: string };
      if (!reply.ok) {
        throw Object.assign(new Error(`${reply.error}: ${reply.message}`), { raised: reply.error });
      }
      return reply.result;
    });

  return {
    request,
    get: (client, servers, key) =>
      request<PyValue>({ op: "get", client, servers, key }).catch((error: Error) => ({
        raised: (error as Error & { raised: string }).raised,
        message: error.message,
      })),
    set: (client, servers, key, value, extra = {}) =>
      request<boolean>({ op: "set", client, servers, key, value, ...extra }),
    ring: (servers, keys, behaviors) =>
      request<number[]>({ op: "ring", servers, keys, ...(behaviors ? { behaviors } : {}) }),
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

/** Starts `agent.py race ...` (see racers.ts): adds 1 to `key` `count` times, by CAS or incr. */
export function startPythonRacer(
  client: PythonClient,
  server: string,
  key: string,
  count: number,
  mode: "cas" | "incr",
): Racer<{ ok: number; casLost: number }> {
  return startRacer(PYTHON, [AGENT, "race", client, server, key, String(count), mode]);
}
