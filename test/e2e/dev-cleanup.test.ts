// `npm run dev` leaves nothing behind however it ends: the launcher (infra/local/stack.ts) is
// started as a child process — over TLS with the ElastiCache Serverless stand-in, so that every
// kind of thing it makes is there: memcached processes, serverless-offline in its own process
// group with esbuild under it, the reaper, a certificate folder, an esbuild work folder — and
// killed with SIGKILL, which it cannot catch. Every process it started must be gone by PID, every
// port it listened on free, and both folders removed, within a few seconds.
//
// Linux only (it reads /proc for the launcher's descendants).
//
// Load: the bounds hold on a loaded machine — the suite's other files plus two CPU-bound
// processes on 2 cores: the stack gets 90 s to come up, the cleanup 10 s.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { bindProblem, freePort, loopback } from "../../tools/ports.ts";
import { appCacheTimeoutMs } from "../helpers/app.ts";

const projectRoot = path.resolve(import.meta.dirname, "../..");
const upTimeoutMs = 90_000;
const goneTimeoutMs = 10_000;

const launchers: ChildProcess[] = [];
afterEach(() => {
  for (const launcher of launchers.splice(0)) launcher.kill("SIGKILL");
});

/** pid -> ppid of every process, from /proc. */
function parentsByPid(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  return parents;
}

/** Every process below `root` (children, their children, ...). */
function descendants(root: number): number[] {
  const parents = parentsByPid();
  const found = new Set<number>([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (found.has(ppid) && !found.has(pid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  found.delete(root);
  return [...found];
}

/** Whether `pid` still runs (a zombie does not: it holds nothing but its table entry). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  } catch {
    return false;
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() >= deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await delay(100);
  }
}

describe.runIf(process.platform === "linux")("npm run dev, killed with SIGKILL", () => {
  it("leaves no process, port or folder behind", { timeout: upTimeoutMs + 30_000 }, async () => {
    const ports = {
      HTTP_PORT: await freePort(),
      LAMBDA_PORT: await freePort(),
      ORIGIN_PORT: await freePort(),
      MEMCACHED_NEW_PORT: await freePort(),
      MEMCACHED_OLD_PORT: await freePort(),
      LIVE_PORT: await freePort(),
    };
    const launcher = spawn(process.execPath, [path.join(projectRoot, "infra/local/stack.ts")], {
      cwd: projectRoot,
      env: {
        ...process.env,
        ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
        CACHE_TLS: "1",
        CACHE_NEW_KIND: "serverless",
        CACHE_TIMEOUT_MS: String(appCacheTimeoutMs),
        CACHE_CONNECT_TIMEOUT_MS: String(appCacheTimeoutMs),
        CACHE_METRICS: "off",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    launchers.push(launcher);
    let output = "";
    launcher.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    launcher.stderr!.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    await until("the stack is up", () => output.includes("local stack is up:"), upTimeoutMs);
    await until("the table is printed", () => output.includes("Ctrl+C stops"), 5_000);

    const standInPort = Number(
      /memcached new\s+127\.0\.0\.1:([0-9]+)\s+\(ElastiCache/.exec(output)?.[1],
    );
    const caFile = /the functions trust the CA in (\S+)/.exec(output)?.[1];
    const serverlessPid = Number(/serverless-offline pid ([0-9]+)/.exec(output)?.[1]);
    const memcachedPids = [
      ...output.matchAll(/memcached (?:127\.0\.0\.1:[0-9]+ )?pid ([0-9]+)/g),
    ].map((match) => Number(match[1]));
    const workFolders = () =>
      readdirSync(projectRoot).filter((name) =>
        name.startsWith(`.esbuild-stack-${ports.HTTP_PORT}`),
      );
    expect(standInPort).toBeGreaterThan(0);
    expect(caFile).toBeDefined();
    expect(existsSync(caFile!)).toBe(true);
    expect(workFolders()).not.toEqual([]);
    const pids = descendants(launcher.pid!);
    expect(pids).toContain(serverlessPid);
    expect(memcachedPids).toHaveLength(2);
    for (const pid of memcachedPids) expect(pids).toContain(pid);
    const listening = [...Object.values(ports), standInPort];
    for (const port of listening)
      expect(await bindProblem(loopback, port), String(port)).toBe("EADDRINUSE");

    launcher.kill("SIGKILL");

    await until(
      `processes ${pids.join(", ")} gone`,
      () => pids.every((pid) => !running(pid)),
      goneTimeoutMs,
    );
    await until(
      `ports ${listening.join(", ")} free`,
      async () =>
        (await Promise.all(listening.map((port) => bindProblem(loopback, port)))).every(
          (problem) => problem === undefined,
        ),
      goneTimeoutMs,
    );
    await until(
      "the certificate and work folders removed",
      () => !existsSync(path.dirname(caFile!)) && workFolders().length === 0,
      goneTimeoutMs,
    );
  });
});
