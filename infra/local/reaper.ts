// The local stack's reaper: a small process that outlives its launcher and cleans up after it
// when the launcher dies without doing so itself (SIGKILL, a crash, an OOM kill), so that
// `npm run dev` leaves nothing behind however it ends.
//
// The launcher starts it (startReaper) with a pipe on its stdin and tells it, one line each, what
// to clean: `pid <n>` (a process), `group <n>` (a process group: serverless-offline and what it
// spawned), `dir <path>` (a folder: certificates, the esbuild work folder). When the pipe closes
// — which the kernel does when the launcher dies, however it dies — it SIGKILLs those processes,
// removes those folders and exits. A launcher that stopped everything itself says `release`
// first, and the reaper exits without touching anything (no PID that may be reused is signalled).
//
// It runs in its own process group and ignores SIGINT/SIGTERM/SIGHUP: a terminal's Ctrl+C or a
// signal to the launcher's group must not end it before the launcher has cleaned up.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import type net from "node:net";
import { setTimeout as delay } from "node:timers/promises";

/** The launcher's handle on its reaper. */
export interface Reaper {
  /** Kill this process if the launcher dies. */
  watchPid(pid: number): void;
  /** Kill this process group if the launcher dies. */
  watchGroup(pgid: number): void;
  /** Remove this folder if the launcher dies. */
  watchDir(dir: string): void;
  /** Everything was cleaned up by the launcher: the reaper exits and cleans nothing. */
  release(): void;
  /** The reaper's PID (tests check it is gone too). */
  readonly pid: number | undefined;
}

/** Starts a reaper for this process; it never keeps this process alive. */
export function startReaper(): Reaper {
  const child: ChildProcess = spawn(process.execPath, [import.meta.filename], {
    stdio: ["pipe", "ignore", "inherit"],
    detached: process.platform !== "win32",
  });
  child.unref();
  const input = child.stdin as net.Socket;
  input.on("error", () => {}); // the reaper gone: nothing left to tell it
  input.unref?.();
  let open = true;
  const send = (line: string) => {
    if (open && !input.destroyed) input.write(`${line}\n`);
  };
  return {
    pid: child.pid,
    watchPid: (pid) => send(`pid ${pid}`),
    watchGroup: (pgid) => send(`group ${pgid}`),
    watchDir: (dir) => send(`dir ${dir}`),
    release: () => {
      send("release");
      open = false;
      input.end();
    },
  };
}

// ---- the reaper process itself ----

async function reap(pids: Set<number>, groups: Set<number>, dirs: Set<string>): Promise<void> {
  for (const pgid of groups) signal(-pgid);
  for (const pid of [...groups, ...pids]) signal(pid);
  // Folders go once their writers are gone (or after 2 s: remove what can be removed).
  const deadline = Date.now() + 2_000;
  while ([...pids, ...groups].some(isAlive) && Date.now() < deadline) await delay(25);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

function signal(target: number): void {
  try {
    process.kill(target, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Whether `pid` runs (a zombie waiting for its reaper does not). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

function runReaper(): void {
  const pids = new Set<number>();
  const groups = new Set<number>();
  const dirs = new Set<string>();
  let released = false;
  for (const name of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(name, () => {});
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffered += chunk;
    for (let end = buffered.indexOf("\n"); end !== -1; end = buffered.indexOf("\n")) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      const space = line.indexOf(" ");
      const verb = space === -1 ? line : line.slice(0, space);
      const argument = space === -1 ? "" : line.slice(space + 1);
      if (verb === "release") released = true;
      else if (verb === "dir" && argument !== "") dirs.add(argument);
      else if ((verb === "pid" || verb === "group") && /^[1-9][0-9]*$/.test(argument)) {
        (verb === "pid" ? pids : groups).add(Number(argument));
      }
    }
  });
  const finish = () => {
    if (released) process.exit(0);
    void reap(pids, groups, dirs).finally(() => process.exit(0));
  };
  process.stdin.once("end", finish);
  process.stdin.once("error", finish);
}

if (import.meta.main) runReaper();
