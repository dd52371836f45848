// Starts real memcached processes on loopback (tests, benchmarks and the local stack): free
// ports, readiness, pause/resume to simulate a hung server, restart on the same port, and cleanup
// of every process this module spawned when the parent process exits.

import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { ensureMemcached } from "./binaries.ts";
import { bindProblem, freePort } from "./ports.ts";
import { settlesWithin } from "./timing.ts";

export interface MemcachedProcess {
  host: "127.0.0.1";
  port: number;
  /** PID of the current process; changes after restart(). */
  pid: number;
  /** "127.0.0.1:port" */
  endpoint: string;
  /** SIGTERM, then SIGKILL after 2 s; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal; for a terminating signal, resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the port keeps accepting connections but nothing is answered. */
  /** SIGSTOP, resolving once every thread has stopped (a running thread could answer once more). */
  pause(): Promise<void>;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Stops the process if it runs, then starts it again on the same port with the same args. */
  restart(): Promise<void>;
}

export interface StartMemcachedOptions {
  /** Port to listen on; default a free port picked on 127.0.0.1. */
  port?: number;
  /** Extra command-line arguments, appended last. */
  args?: string[];
  /** Serve TLS only (memcached -Z) with this certificate chain and key. */
  tls?: { certFile: string; keyFile: string };
  /** Memory limit in megabytes (-m); default 64. */
  memoryMb?: number;
  /** Maximum item size (-I), e.g. "1m"; default memcached's own (1m). */
  itemSizeLimit?: string;
}

const host = "127.0.0.1";
const readyTimeoutMs = 5_000;
const readyPollMs = 20;
const stopGraceMs = 2_000;
const exitTimeoutMs = 5_000;
const startAttempts = 5;
const stderrKeepChars = 4_096;
const addressInUse = /address already in use/i;
// memcached ends on these (SIGUSR1 is its graceful shutdown); it survives SIGHUP.
const terminatingSignals = new Set<NodeJS.Signals>([
  "SIGTERM",
  "SIGKILL",
  "SIGINT",
  "SIGQUIT",
  "SIGABRT",
  "SIGUSR1",
]);

/** Every memcached this module spawned and that has not exited yet. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts memcached on loopback and resolves once its port accepts TCP connections. */
export async function startMemcached(opts: StartMemcachedOptions = {}): Promise<MemcachedProcess> {
  const binary = await ensureMemcached();
  const args = baseArgs(opts);
  let current = await spawnReady(binary, args, opts.port);
  const port = current.port;

  return {
    host,
    port,
    endpoint: `${host}:${port}`,
    get pid() {
      return current.child.pid!;
    },
    stop: () => stopChild(current),
    async kill(signal = "SIGTERM") {
      if (!isRunning(current.child)) return;
      current.child.kill(signal);
      if (!terminatingSignals.has(signal)) return;
      // A stopped process only acts on a pending SIGTERM/SIGINT/... once it is continued.
      if (signal !== "SIGKILL") current.child.kill("SIGCONT");
      await waitForExit(current, exitTimeoutMs, `did not exit after ${signal}`);
    },
    async pause() {
      if (!isRunning(current.child)) return;
      current.child.kill("SIGSTOP");
      const pid = current.child.pid!;
      const deadline = Date.now() + 2_000;
      while (!allThreadsStopped(pid) && Date.now() < deadline) await delay(2);
    },
    resume() {
      if (isRunning(current.child)) current.child.kill("SIGCONT");
    },
    async restart() {
      await stopChild(current);
      current = await spawnReady(binary, args, port);
    },
  };
}

function baseArgs(opts: StartMemcachedOptions): string[] {
  const args = ["-l", host, "-U", "0", "-m", String(opts.memoryMb ?? 64), "-t", "2"];
  // memcached refuses to run as root unless told which user to run as.
  if (process.getuid?.() === 0) args.push("-u", "root");
  if (opts.itemSizeLimit) args.push("-I", opts.itemSizeLimit);
  if (opts.tls) {
    args.push("-Z", "-o", `ssl_chain_cert=${opts.tls.certFile},ssl_key=${opts.tls.keyFile}`);
  }
  args.push(...(opts.args ?? []));
  return args;
}

interface Spawned {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
  stderr: () => string;
  exitDescription: () => string;
}

/**
 * Spawns memcached and waits until it listens. A port taken between freePort() and the
 * bind is retried with a new free port; a fixed port is retried a little later.
 */
async function spawnReady(binary: string, args: string[], fixedPort?: number): Promise<Spawned> {
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= startAttempts; attempt++) {
    if (attempt > 1 && fixedPort !== undefined) await delay(50 * attempt);
    const port = fixedPort ?? (await freePort(host));
    // Readiness is "the port accepts connections", so a port someone else already listens
    // on would look ready at once: check a fixed port is free before memcached binds it.
    if (fixedPort !== undefined && !(await isFree(port))) {
      lastError = new Error(`memcached cannot listen on ${host}:${port}: Address already in use`);
      continue;
    }
    const spawned = spawnOne(binary, [...args, "-p", String(port)], port);
    try {
      await waitUntilListening(spawned);
      return spawned;
    } catch (error) {
      lastError = error as Error;
      if (isRunning(spawned.child)) spawned.child.kill("SIGKILL");
      await spawned.exited;
      if (!addressInUse.test(spawned.stderr())) throw error;
    }
  }
  throw lastError;
}

async function isFree(port: number): Promise<boolean> {
  const problem = await bindProblem(host, port);
  if (problem === undefined) return true;
  if (problem === "EADDRINUSE") return false;
  throw new Error(`memcached cannot listen on ${host}:${port}: ${problem}`);
}

function spawnOne(binary: string, args: string[], port: number): Spawned {
  installExitHook();
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  let spawnError: Error | undefined;
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-stderrKeepChars);
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      running.delete(child);
      resolve();
    });
    child.once("error", (error) => {
      spawnError = error;
      // Without a pid the process never started, so no 'exit' will follow.
      if (child.pid === undefined) resolve();
    });
  });
  if (child.pid !== undefined) running.add(child);
  // A test file that forgets stop() must not keep its worker alive: the exit hook kills it.
  child.unref();
  (child.stderr as net.Socket | null)?.unref?.();

  return {
    child,
    port,
    exited,
    stderr: () => stderr.trim(),
    exitDescription: () => {
      if (spawnError) return `failed to spawn (${spawnError.message})`;
      if (child.signalCode) return `killed by ${child.signalCode}`;
      return `exited with code ${child.exitCode}`;
    },
  };
}

async function waitUntilListening(spawned: Spawned): Promise<void> {
  const { child, port } = spawned;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (!isRunning(child)) {
      await spawned.exited;
      throw startError(spawned, `memcached on port ${port} ${spawned.exitDescription()}`);
    }
    // The exit check after connecting keeps us from taking another listener for ours.
    if ((await canConnect(port)) && isRunning(child)) return;
    if (Date.now() >= deadline) {
      throw startError(
        spawned,
        `memcached on port ${port} did not accept connections within ${readyTimeoutMs} ms`,
      );
    }
    await delay(readyPollMs);
  }
}

function startError(spawned: Spawned, message: string): Error {
  const stderr = spawned.stderr();
  return new Error(stderr ? `${message}; stderr: ${stderr}` : message);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(readyPollMs * 10);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

async function stopChild(spawned: Spawned): Promise<void> {
  const { child } = spawned;
  if (!isRunning(child)) return spawned.exited;
  child.kill("SIGTERM");
  child.kill("SIGCONT"); // a paused process would otherwise hold the SIGTERM forever
  // memcached acts on SIGTERM at its next clock tick, so a clean stop takes up to ~1 s.
  if (!(await settlesWithin(spawned.exited, stopGraceMs)) && isRunning(child)) {
    child.kill("SIGKILL");
  }
  await waitForExit(spawned, exitTimeoutMs, "did not exit after SIGKILL");
}

async function waitForExit(spawned: Spawned, timeoutMs: number, what: string): Promise<void> {
  if (!(await settlesWithin(spawned.exited, timeoutMs))) {
    throw new Error(`memcached pid ${spawned.child.pid} on port ${spawned.port} ${what}`);
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) {
      if (isRunning(child)) child.kill("SIGKILL");
    }
  });
}

/**
 * Whether every thread of `pid` is stopped (state "T" in /proc). SIGSTOP is delivered
 * asynchronously; without /proc (not Linux) there is nothing to check, so it reports true.
 */
function allThreadsStopped(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return true;
  }
  return tasks.every((task) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
    } catch {
      return true; // the thread is gone
    }
  });
}
