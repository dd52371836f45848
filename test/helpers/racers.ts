// Processes that race on one key: each prints "ready" once connected, waits for a line on stdin,
// runs, and prints one JSON line with its tallies. Released together, so they contend from the
// same moment (Node workers in test/fixtures/counter-worker.ts, Python ones in
// test/fixtures/python/agent.py).

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

export interface Racer<T> {
  child: ChildProcessWithoutNullStreams;
  /** Resolves once the process printed "ready" (or ended before that: see `result`). */
  ready: Promise<void>;
  /** The JSON line the process printed last; rejects when it failed. */
  result: Promise<T>;
}

export function startRacer<T>(command: string, args: readonly string[]): Racer<T> {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    if (stdout.startsWith("ready\n")) onReady();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const result = new Promise<T>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const last = stdout.trim().split("\n").pop() ?? "";
      if (code !== 0 || !last.startsWith("{")) {
        reject(
          new Error(`${args[0] ?? command} exited with ${code ?? signal}: ${stderr || stdout}`),
        );
        return;
      }
      resolve(JSON.parse(last) as T);
    });
  });
  // A racer that dies before "ready" must not leave the test waiting for it; one killed after
  // another failed must not add an unhandled rejection.
  result.catch(() => {});
  return { child, ready: Promise.race([ready, result.then(() => {})]), result };
}

/** Waits until every racer is ready, releases them together, and collects their tallies. */
export async function race<T>(racers: readonly Racer<T>[]): Promise<T[]> {
  try {
    await Promise.all(racers.map((racer) => racer.ready));
    for (const racer of racers) racer.child.stdin.write("go\n");
    return await Promise.all(racers.map((racer) => racer.result));
  } finally {
    for (const racer of racers) {
      if (racer.child.exitCode === null && racer.child.signalCode === null) {
        racer.child.kill("SIGKILL");
      }
    }
  }
}
