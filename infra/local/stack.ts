// `npm run dev`: the whole reference app on loopback — memcached "new" (11211) and "old"
// (11212), the demo origin (4000), serverless-offline (3000, its Lambda endpoint on 3002) and the
// live view of the cutover (3003; infra/local/live/).
//
//   CACHE_NEW_ENDPOINT   use this cluster as "new" instead of starting memcached on 11211
//   CACHE_OLD_ENDPOINT   use this cluster as "old"; set but empty = one cluster, no "old"
//   CACHE_CUTOVER_PHASE  the functions' cutover phase (single: on old when there is one;
//                        prepare, fallback, new; default none)
//   ORIGIN_URL           use this origin instead of starting the demo origin
//   ORIGIN_DELAY_MS      latency of the demo origin (default 50)
//   CACHE_TLS=1          TLS to both caches: memcached with -Z and a CA made for this run,
//                        which the functions trust (CACHE_TLS_CA_FILE: trust this CA instead)
//   CACHE_NEW_KIND=serverless   the ElastiCache Serverless stand-in (tools/serverless-standin.ts,
//                        TLS, the service's limits) in front of the new cache
//   HTTP_PORT, LAMBDA_PORT, ORIGIN_PORT, LIVE_PORT   ports (default 3000, 3002, 4000, 3003)
//   MEMCACHED_NEW_PORT, MEMCACHED_OLD_PORT   ports of the memcached it starts (11211, 11212; 0: free)
//   npm run dev -- <args>                 extra arguments for `serverless offline start`
//
// Every port is checked before anything starts. Ctrl+C / SIGTERM stops every process this
// launcher started, by the PIDs it holds; if the launcher dies without stopping them (SIGKILL),
// its reaper (reaper.ts) does. End-to-end tests use startStack() with free ports.

import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { toAddressList } from "../../lib/memcache/address.ts";
import { type MemcachedProcess, startMemcached } from "../../tools/memcached.ts";
import { bindProblem, freePort, loopback } from "../../tools/ports.ts";
import { type ServerlessStandIn, startServerlessStandIn } from "../../tools/serverless-standin.ts";
import { settlesWithin } from "../../tools/timing.ts";
import { makeTestCertificates } from "../../tools/tls.ts";
import { EventSeries, lineSplitter } from "./live/events.ts";
import { type LiveView, startLiveView } from "./live/server.ts";
import { type Origin, startOrigin } from "./origin.ts";
import { startReaper } from "./reaper.ts";

export interface StackPorts {
  /** serverless-offline HTTP API; default 3000. 0 = a free port. */
  http?: number;
  /** serverless-offline's Lambda invoke endpoint (it always opens one); default 3002. */
  lambda?: number;
  /** The demo origin; default 4000. */
  origin?: number;
  /** memcached "new"; default 11211. */
  memcachedNew?: number;
  /** memcached "old"; default 11212. */
  memcachedOld?: number;
  /** The live view's page (with `liveView`); default 3003. */
  live?: number;
}

export interface StackOptions {
  /** "host:port[,host:port...]" of the new cluster; undefined or "" starts memcached. */
  newEndpoint?: string;
  /** The old cluster; undefined starts memcached, "" runs with one cluster (no old). */
  oldEndpoint?: string;
  /** CACHE_CUTOVER_PHASE of the functions ("prepare", "fallback", "new"); default none. */
  cutoverPhase?: string;
  /** An origin to use instead of starting the demo origin. */
  originUrl?: string;
  /** Latency of the demo origin in ms; default 50. */
  originDelayMs?: number;
  /**
   * TLS to both caches (CACHE_TLS=1): the memcached processes this stack starts serve TLS only,
   * with `certificates` (default: a CA and certificate made for this stack, removed on stop),
   * and the functions trust `caFile` (default: that CA). External endpoints must serve TLS too.
   */
  tls?: boolean;
  /**
   * "serverless" (CACHE_NEW_KIND=serverless): the ElastiCache Serverless stand-in, TLS with the
   * same certificates, in front of the new cache (one endpoint), and the functions treat new as
   * a serverless cache. Default "nodes".
   */
  newKind?: "nodes" | "serverless";
  /** The CA and server certificate to use instead of making them (e.g. a test's). */
  certificates?: { caFile: string; certFile: string; keyFile: string };
  /** The CA file the functions trust (CACHE_TLS_CA_FILE); default: the certificates' CA. */
  caFile?: string;
  ports?: StackPorts;
  /** Extra arguments for `serverless offline start` (e.g. ["--httpPort", "3001"]). */
  serverlessArgs?: string[];
  /**
   * Environment for serverless-offline on top of this process's own; the offline stage of
   * serverless.yml (and only it) passes CACHE_TIMEOUT_MS, CACHE_CONNECT_TIMEOUT_MS,
   * CACHE_METRICS, CACHE_LEASE_MODE, CACHE_TOMBSTONE_SECONDS, ORIGIN_TIMEOUT_MS and
   * PRODUCT_TTL_SECONDS on to the functions (tests give a loaded machine longer cache timeouts
   * this way).
   */
  env?: Record<string, string>;
  /** serverless-offline output: the terminal ("inherit", default) or captured ("pipe"). */
  stdio?: "inherit" | "pipe";
  /**
   * Serve the live view (infra/local/live/): the functions' cache events are then read from
   * serverless-offline's output (still shown on the terminal with "inherit"). Off unless asked
   * for; the `npm run dev` command line turns it on.
   */
  liveView?: boolean;
  /** How long serverless-offline may take to answer HTTP; default 60 s. */
  readyTimeoutMs?: number;
  /** Aborting during startup stops what was started and rejects. */
  signal?: AbortSignal;
  /**
   * Rebuild the functions when lib/ or functions/ change (serverless-esbuild watch). A rebuild
   * restarts the workers and drops requests in flight, so it is off unless asked for; the
   * `npm run dev` command line turns it on.
   */
  watch?: boolean;
}

export interface ServerlessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Stack {
  /** e.g. "http://127.0.0.1:3000" (no stage prefix, no trailing slash). */
  httpUrl: string;
  originUrl: string;
  newEndpoint: string;
  /** "" in single-cluster mode. */
  oldEndpoint: string;
  /** The live view's page, with `liveView`. */
  liveView?: LiveView;
  /** The cache events counted from the functions' output, with `liveView`. */
  events?: EventSeries;
  /** CACHE_CUTOVER_PHASE of the functions; "" when none was given. */
  cutoverPhase: string;
  /** What this stack started itself (external ones are absent). */
  started: {
    memcachedNew?: MemcachedProcess;
    memcachedOld?: MemcachedProcess;
    origin?: Origin;
    /** The ElastiCache Serverless stand-in in front of new (newKind "serverless"). */
    standIn?: ServerlessStandIn;
  };
  /** Whether the functions speak TLS to each cache, and the CA file they trust. */
  tls: { newCache: boolean; oldCache: boolean; caFile?: string };
  /** PIDs of the processes this stack started; serverless is also its process group id. */
  pids: { serverless: number; memcachedNew?: number; memcachedOld?: number; reaper?: number };
  /** Resolves when serverless-offline exits, whatever the reason (stop() included). */
  exited: Promise<ServerlessExit>;
  /** The last 64 KiB of serverless-offline's stdout and stderr, when stdio is "pipe". */
  output(): string;
  /** Stops everything this stack started; idempotent. */
  stop(): Promise<void>;
}

/** A configured port is taken; `message` is one line meant for the user. */
export class PortInUseError extends Error {
  override name = "PortInUseError";
}

export const defaultPorts = {
  http: 3000,
  lambda: 3002,
  origin: 4000,
  memcachedNew: 11211,
  memcachedOld: 11212,
  live: 3003,
} as const;
const defaultReadyTimeoutMs = 60_000;
const readyPollMs = 250;
const termGraceMs = 5_000;
const killWaitMs = 2_000;
const outputKeepChars = 64 * 1024;
const projectRoot = path.resolve(import.meta.dirname, "../..");
/** Stacks started by this process (names the work folder of a stack on a free HTTP port). */
let stackCount = 0;

/** The one way a value reaches serverless as "": osls trims the end of every --param value. */
const emptyParamValue = " ";

/** Reads the stack's knobs from the environment (and extra serverless arguments). */
export function optionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  serverlessArgs: string[] = [],
): StackOptions {
  const opts: StackOptions = { serverlessArgs, ports: {} };
  if (env.CACHE_NEW_ENDPOINT?.trim()) opts.newEndpoint = env.CACHE_NEW_ENDPOINT.trim();
  if (env.CACHE_OLD_ENDPOINT !== undefined) opts.oldEndpoint = env.CACHE_OLD_ENDPOINT.trim();
  if (env.CACHE_CUTOVER_PHASE?.trim()) opts.cutoverPhase = env.CACHE_CUTOVER_PHASE.trim();
  if (env.ORIGIN_URL?.trim()) opts.originUrl = env.ORIGIN_URL.trim();
  const tls = env.CACHE_TLS?.trim() ?? "";
  if (!["", "0", "1", "false", "true"].includes(tls)) {
    throw new Error(`CACHE_TLS must be 1 (TLS to the caches) or 0, got "${env.CACHE_TLS}"`);
  }
  if (tls === "1" || tls === "true") opts.tls = true;
  const kind = env.CACHE_NEW_KIND?.trim() ?? "";
  if (kind !== "" && kind !== "nodes" && kind !== "serverless") {
    throw new Error(`CACHE_NEW_KIND must be "nodes" or "serverless", got "${env.CACHE_NEW_KIND}"`);
  }
  if (kind !== "") opts.newKind = kind;
  if (env.CACHE_TLS_CA_FILE?.trim()) opts.caFile = env.CACHE_TLS_CA_FILE.trim();
  if (env.ORIGIN_DELAY_MS?.trim()) {
    const ms = Number(env.ORIGIN_DELAY_MS);
    if (!Number.isFinite(ms) || ms < 0) {
      throw new Error(
        `ORIGIN_DELAY_MS must be a number of milliseconds >= 0, got "${env.ORIGIN_DELAY_MS}"`,
      );
    }
    opts.originDelayMs = ms;
  }
  for (const [variable, key] of [
    ["HTTP_PORT", "http"],
    ["LAMBDA_PORT", "lambda"],
    ["ORIGIN_PORT", "origin"],
    ["LIVE_PORT", "live"],
    ["MEMCACHED_NEW_PORT", "memcachedNew"],
    ["MEMCACHED_OLD_PORT", "memcachedOld"],
  ] as const) {
    const value = env[variable]?.trim();
    if (value) opts.ports![key] = parsePort(value, variable);
  }
  return opts;
}

function parsePort(value: string | number, what: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`${what} must be a port number (0-65535), got "${value}"`);
  }
  return port;
}

/** The value of `--name value` or `--name=value` in `args` (the last one wins), if any. */
function optionValue(args: string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === `--${name}`) value = args[i + 1];
    else if (arg.startsWith(`--${name}=`)) value = arg.slice(name.length + 3);
  }
  return value;
}

interface PortClaim {
  port: number;
  host: string;
  what: string;
  hint: string;
}

/** Checks every fixed port is free; throws one PortInUseError naming all that are not. */
async function checkPorts(claims: PortClaim[]): Promise<void> {
  const fixed = claims.filter((claim) => claim.port !== 0);
  const seen = new Map<number, PortClaim>();
  for (const claim of fixed) {
    const other = seen.get(claim.port);
    if (other) {
      throw new PortInUseError(
        `port ${claim.port} is configured for both ${other.what} and ${claim.what}: ${claim.hint}`,
      );
    }
    seen.set(claim.port, claim);
  }
  const busy: PortClaim[] = [];
  for (const claim of fixed) {
    const problem = await bindProblem(claim.host, claim.port);
    if (problem === "EADDRINUSE") busy.push(claim);
    else if (problem) {
      throw new PortInUseError(
        `cannot listen on ${claim.host}:${claim.port} (${claim.what}): ${problem}; ${claim.hint}`,
      );
    }
  }
  const [first] = busy;
  if (!first) return;
  if (busy.length === 1) {
    throw new PortInUseError(
      `port ${first.port} is already in use (${first.what}): stop what uses it or ${first.hint}`,
    );
  }
  throw new PortInUseError(
    `ports ${busy.map((c) => `${c.port} (${c.what})`).join(", ")} are already in use: ` +
      `stop what uses them or ${busy.map((c) => c.hint).join("; ")}`,
  );
}

function serverlessBin(): string {
  const dir = path.join(projectRoot, "node_modules", "serverless");
  const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as {
    bin?: string | Record<string, string>;
  };
  const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.serverless;
  if (!bin) throw new Error(`no "serverless" bin in ${dir}/package.json: run npm install`);
  return path.join(dir, bin);
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("stack startup aborted");
}

/** Starts the local stack; resolves once serverless-offline answers HTTP. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const ports = { ...defaultPorts, ...opts.ports };
  const extraArgs = opts.serverlessArgs ?? [];
  const userHttpPort = optionValue(extraArgs, "httpPort");
  const userLambdaPort = optionValue(extraArgs, "lambdaPort");
  const userHost = optionValue(extraArgs, "host");
  if (userHttpPort !== undefined) ports.http = parsePort(userHttpPort, "--httpPort");
  if (userLambdaPort !== undefined) ports.lambda = parsePort(userLambdaPort, "--lambdaPort");
  const listenHost = userHost ?? loopback;
  const callHost = listenHost === "0.0.0.0" || listenHost === "::" ? loopback : listenHost;

  const startNew = !opts.newEndpoint;
  const startOld = opts.oldEndpoint === undefined;
  const startOriginHere = !opts.originUrl;

  const claims: PortClaim[] = [];
  if (startNew) {
    claims.push({
      port: ports.memcachedNew,
      host: loopback,
      what: 'memcached "new"',
      hint: "set CACHE_NEW_ENDPOINT=host:port to use a running memcached",
    });
  }
  if (startOld) {
    claims.push({
      port: ports.memcachedOld,
      host: loopback,
      what: 'memcached "old"',
      hint: "set CACHE_OLD_ENDPOINT=host:port (or empty for one cluster)",
    });
  }
  if (startOriginHere) {
    claims.push({
      port: ports.origin,
      host: loopback,
      what: "demo origin",
      hint: "set ORIGIN_PORT (or ORIGIN_URL)",
    });
  }
  if (opts.liveView) {
    claims.push({ port: ports.live, host: loopback, what: "live view", hint: "set LIVE_PORT" });
  }
  claims.push(
    { port: ports.http, host: listenHost, what: "serverless-offline", hint: "set HTTP_PORT" },
    {
      port: ports.lambda,
      host: listenHost,
      what: "serverless-offline Lambda endpoint",
      hint: "set LAMBDA_PORT",
    },
  );
  await checkPorts(claims);

  const started: Stack["started"] = {};
  let serverless: ServerlessHandle | undefined;
  let liveView: LiveView | undefined;
  // Cleans up after this launcher if it dies without stop() (SIGKILL): see reaper.ts.
  const reaper = startReaper();
  const workFolder = `.esbuild-stack-${ports.http === 0 ? `${process.pid}-${++stackCount}` : ports.http}`;
  reaper.watchDir(path.join(projectRoot, workFolder));
  let certificateDir: string | undefined;
  const stopAll = async (): Promise<void> => {
    const problems: unknown[] = [];
    await liveView?.close();
    if (serverless) await serverless.stop().catch((error) => problems.push(error));
    const rest = await Promise.allSettled([
      started.origin?.close(),
      started.standIn?.close(),
      started.memcachedNew?.stop(),
      started.memcachedOld?.stop(),
    ]);
    for (const result of rest) if (result.status === "rejected") problems.push(result.reason);
    if (certificateDir !== undefined) {
      await rm(certificateDir, { recursive: true, force: true }).catch((e) => problems.push(e));
    }
    if (problems.length > 0) {
      throw new AggregateError(problems, `stopping the local stack: ${String(problems[0])}`);
    }
    reaper.release();
  };
  const checkAborted = () => {
    if (opts.signal?.aborted) throw abortError(opts.signal);
  };

  const serverlessNew = opts.newKind === "serverless";
  if (serverlessNew && opts.newEndpoint && toAddressList(opts.newEndpoint).length !== 1) {
    throw new Error(
      `CACHE_NEW_KIND=serverless puts the stand-in in front of one endpoint; CACHE_NEW_ENDPOINT lists several: ${opts.newEndpoint}`,
    );
  }

  try {
    checkAborted();
    let certificates = opts.certificates;
    if (certificates === undefined && (opts.tls === true || serverlessNew)) {
      certificateDir = await mkdtemp(path.join(os.tmpdir(), "lambda-memcache-stack-tls-"));
      reaper.watchDir(certificateDir);
      certificates = await makeTestCertificates(certificateDir);
    }
    // The memcached processes serve TLS themselves, except behind the stand-in (which does).
    const serveTls = (tls: boolean) =>
      tls && certificates
        ? { tls: { certFile: certificates.certFile, keyFile: certificates.keyFile } }
        : {};
    // Both at once; when one fails, the other is still recorded so that it is stopped.
    const [memcachedNew, memcachedOld] = await Promise.allSettled([
      startNew
        ? startMemcached({
            ...memcachedOptions(ports.memcachedNew),
            ...serveTls(opts.tls === true && !serverlessNew),
          })
        : undefined,
      startOld
        ? startMemcached({
            ...memcachedOptions(ports.memcachedOld),
            ...serveTls(opts.tls === true),
          })
        : undefined,
    ]);
    if (memcachedNew.status === "fulfilled" && memcachedNew.value) {
      started.memcachedNew = memcachedNew.value;
      reaper.watchPid(memcachedNew.value.pid);
    }
    if (memcachedOld.status === "fulfilled" && memcachedOld.value) {
      started.memcachedOld = memcachedOld.value;
      reaper.watchPid(memcachedOld.value.pid);
    }
    for (const [result, which] of [
      [memcachedNew, "new"],
      [memcachedOld, "old"],
    ] as const) {
      if (result.status === "rejected") {
        throw new Error(`memcached "${which}" did not start: ${(result.reason as Error).message}`);
      }
    }
    checkAborted();
    if (startOriginHere) {
      started.origin = await startOrigin({
        port: ports.origin,
        host: loopback,
        delayMs: opts.originDelayMs ?? 50,
      });
    }
    checkAborted();

    let newEndpoint = opts.newEndpoint || started.memcachedNew!.endpoint;
    if (serverlessNew) {
      const [target] = toAddressList(newEndpoint);
      started.standIn = await startServerlessStandIn({ target: target!, tls: certificates! });
      newEndpoint = started.standIn.endpoint;
    }
    const oldEndpoint = startOld ? started.memcachedOld!.endpoint : opts.oldEndpoint!;
    const tls = {
      newCache: opts.tls === true || serverlessNew,
      oldCache: opts.tls === true && oldEndpoint !== "",
      caFile: opts.caFile ?? certificates?.caFile,
    };
    const originUrl = (opts.originUrl || started.origin!.url).replace(/\/+$/, "");
    if (ports.http === 0) ports.http = await freePort(listenHost);
    if (ports.lambda === 0) ports.lambda = await freePort(listenHost);
    const httpHost = callHost.includes(":") ? `[${callHost}]` : callHost;
    const httpUrl = `http://${httpHost}:${ports.http}`;

    const args = [serverlessBin(), "offline", "start"];
    if (optionValue(extraArgs, "stage") === undefined && !extraArgs.includes("-s")) {
      args.push("--stage", "offline");
    }
    if (userHttpPort === undefined) args.push("--httpPort", String(ports.http));
    if (userLambdaPort === undefined) args.push("--lambdaPort", String(ports.lambda));
    if (userHost === undefined) args.push("--host", listenHost);
    args.push(
      `--param=cacheNewEndpoint=${newEndpoint}`,
      `--param=cacheOldEndpoint=${oldEndpoint || emptyParamValue}`,
      // As in AWS: without an old cluster the one cluster is new, whatever the phase says.
      `--param=keepOldCluster=${oldEndpoint !== ""}`,
      // The stack needs a phase while an old cluster is kept: the local default is fallback.
      `--param=cutoverPhase=${opts.cutoverPhase || (oldEndpoint !== "" ? "fallback" : emptyParamValue)}`,
      `--param=originUrl=${originUrl}`,
      `--param=cacheNewTls=${tls.newCache}`,
      `--param=cacheOldTls=${tls.oldCache}`,
      `--param=newCacheKind=${serverlessNew ? "serverless" : "nodes"}`,
    );
    if ((tls.newCache || tls.oldCache) && tls.caFile !== undefined) {
      args.push(`--param=cacheTlsCaFile=${tls.caFile}`);
    }
    args.push(...extraArgs);
    // Each stack builds into its own folder: serverless-esbuild deletes its work folder on exit,
    // which would pull the bundles from under another stack running at the same time.
    // The functions' cache events, counted from their output for the live view.
    const events = opts.liveView ? new EventSeries() : undefined;
    const lines = events && lineSplitter((line) => events.addLine(line));
    serverless = spawnServerless(
      args,
      opts.stdio ?? "inherit",
      {
        ...process.env,
        ...opts.env,
        STACK_WATCH: opts.watch === true ? "on" : "off",
        SLS_ESBUILD_WORK_FOLDER: workFolder,
      },
      lines?.push,
    );
    if (serverless.child.pid !== undefined) reaper.watchGroup(serverless.child.pid);
    await waitUntilAnswering(
      httpUrl,
      serverless,
      opts.readyTimeoutMs ?? defaultReadyTimeoutMs,
      opts.signal,
    );
    checkAborted();
    if (events) {
      liveView = await startLiveView({
        host: loopback,
        port: ports.live,
        events,
        newEndpoint,
        oldEndpoint,
        tls: await probeTls(tls),
        originUrl,
        appUrl: httpUrl,
      });
    }

    let stopping: Promise<void> | undefined;
    const handle = serverless;
    return {
      httpUrl,
      originUrl,
      newEndpoint,
      oldEndpoint,
      ...(liveView && { liveView }),
      ...(events && { events }),
      cutoverPhase: opts.cutoverPhase ?? "",
      started,
      tls,
      pids: {
        serverless: handle.child.pid!,
        ...(started.memcachedNew && { memcachedNew: started.memcachedNew.pid }),
        ...(started.memcachedOld && { memcachedOld: started.memcachedOld.pid }),
        ...(reaper.pid !== undefined && { reaper: reaper.pid }),
      },
      exited: handle.exited,
      output: handle.output,
      stop: () => {
        stopping ??= stopAll();
        return stopping;
      },
    };
  } catch (error) {
    await stopAll().catch(() => {});
    throw error;
  }
}

/** How the live view reaches each cluster for its stats: as the functions do. */
async function probeTls(tls: Stack["tls"]) {
  const ca = tls.caFile === undefined ? undefined : await readFile(tls.caFile, "utf8");
  const options = (on: boolean) => (on ? (ca === undefined ? true : { ca }) : false);
  return { newCache: options(tls.newCache), oldCache: options(tls.oldCache) };
}

function memcachedOptions(port: number): { port?: number } {
  return port === 0 ? {} : { port };
}

interface ServerlessHandle {
  child: ChildProcess;
  exited: Promise<ServerlessExit>;
  output(): string;
  isRunning(): boolean;
  stop(): Promise<void>;
}

/** Process groups of running serverless-offline children, killed if this process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/**
 * Starts serverless-offline. With `onStdout`, its stdout is read through a pipe and handed over
 * chunk by chunk — and with stdio "inherit" still shown: both streams are passed on to this
 * process's own, byte for byte.
 */
function spawnServerless(
  args: string[],
  stdio: "inherit" | "pipe",
  env: NodeJS.ProcessEnv,
  onStdout?: (chunk: Buffer) => void,
): ServerlessHandle {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const pgid of liveGroups) signalGroup(pgid, "SIGKILL");
    });
  }
  // Its own process group: the esbuild service and anything else it spawns go with it, and a
  // terminal's Ctrl+C reaches only this launcher, which then shuts the stack down in order.
  const piped = stdio === "pipe" || onStdout !== undefined;
  const child = spawn(process.execPath, args, {
    cwd: projectRoot,
    env,
    stdio: ["ignore", piped ? "pipe" : stdio, piped ? "pipe" : stdio],
    detached: process.platform !== "win32",
  });
  if (onStdout) child.stdout?.on("data", onStdout);
  if (piped && stdio === "inherit") {
    child.stdout?.on("data", (chunk: Buffer) => process.stdout.write(chunk));
    child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(chunk));
  }
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-outputKeepChars);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const pid = child.pid;
  if (pid !== undefined) liveGroups.add(pid);
  const exited = new Promise<ServerlessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      keep(Buffer.from(`\nspawn failed: ${error.message}\n`));
      if (child.pid === undefined) resolve({ code: 127, signal: null });
    });
  });
  const isRunning = () => child.exitCode === null && child.signalCode === null && pid !== undefined;

  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    if (pid === undefined) return;
    if (isRunning()) {
      signalGroup(pid, "SIGTERM");
      if (!(await settlesWithin(exited, termGraceMs))) {
        signalGroup(pid, "SIGKILL");
        if (!(await settlesWithin(exited, killWaitMs))) {
          throw new Error(`serverless-offline (pid ${pid}) did not exit after SIGKILL`);
        }
      }
    }
    // Whatever it spawned into its group (esbuild's service) goes too.
    if (groupAlive(pid)) {
      signalGroup(pid, "SIGTERM");
      if (!(await groupGoneWithin(pid, 1_000))) {
        signalGroup(pid, "SIGKILL");
        await groupGoneWithin(pid, 1_000);
      }
    }
    liveGroups.delete(pid);
  };
  return {
    child,
    exited,
    isRunning,
    output: () => output,
    stop: () => {
      stopping ??= stop();
      return stopping;
    },
  };
}

/** Signals the whole process group `pgid` (falling back to the single process). */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(process.platform === "win32" ? pgid : -pgid, signal);
  } catch {
    try {
      process.kill(pgid, signal);
    } catch {
      // already gone
    }
  }
}

/** Whether any process of group `pgid` still runs (zombies awaiting their reaper do not). */
function groupAlive(pgid: number): boolean {
  if (process.platform === "win32") return false;
  if (process.platform === "linux") {
    const members = liveGroupMembers(pgid);
    if (members !== undefined) return members.length > 0;
  }
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Linux: PIDs in process group `pgid` that are not zombies, from /proc; undefined if unreadable. */
function liveGroupMembers(pgid: number): number[] | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") {
      members.push(Number(entry));
    }
  }
  return members;
}

/** Whether the group has no process left within `ms` . */
async function groupGoneWithin(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await delay(25);
  }
  return true;
}

/** Polls `GET <httpUrl>/health` until any HTTP answer; fails if serverless exits first. */
async function waitUntilAnswering(
  httpUrl: string,
  serverless: ServerlessHandle,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: ServerlessExit | undefined;
  void serverless.exited.then((result) => {
    exit = result;
  });
  for (;;) {
    if (signal?.aborted) throw abortError(signal);
    if (exit) {
      const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
      const tail = serverless.output().trim().split("\n").slice(-20).join("\n");
      throw new Error(`serverless-offline ${how} before answering HTTP${tail ? `:\n${tail}` : ""}`);
    }
    if (await answers(`${httpUrl}/health`)) return;
    if (Date.now() >= deadline) {
      throw new Error(`serverless-offline did not answer ${httpUrl} within ${timeoutMs} ms`);
    }
    await delay(readyPollMs);
  }
}

/** Whether anything answers HTTP at `url` (any status counts). */
function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(false));
  });
}

/** The table `npm run dev` prints once everything answers. */
export function describeStack(stack: Stack, originDelayMs: number): string {
  const { started } = stack;
  const pad = (label: string) => `  ${label.padEnd(16)}`;
  const memcached = (endpoint: string, proc: MemcachedProcess | undefined, tls: boolean) =>
    `${endpoint}  (${proc ? `memcached pid ${proc.pid}` : "external"}${tls ? ", TLS" : ""})`;
  const base = stack.httpUrl;
  const newCache = started.standIn
    ? `${stack.newEndpoint}  (ElastiCache Serverless stand-in, TLS, in front of ${
        started.memcachedNew
          ? `memcached ${started.memcachedNew.endpoint} pid ${started.memcachedNew.pid}`
          : "the external endpoint"
      })`
    : memcached(stack.newEndpoint, started.memcachedNew, stack.tls.newCache);
  const lines = [
    "",
    "local stack is up:",
    `${pad("memcached new")}${newCache}`,
    `${pad("memcached old")}${
      stack.oldEndpoint
        ? memcached(stack.oldEndpoint, started.memcachedOld, stack.tls.oldCache)
        : "(none: one cluster)"
    }`,
    `${pad("origin")}${stack.originUrl}  ${
      started.origin ? `(demo origin, delay ${originDelayMs} ms)` : "(external)"
    }`,
    `${pad("cutover phase")}${stack.cutoverPhase || "(none: single with one cluster, else fallback)"}`,
    `${pad("HTTP API")}${base}  (serverless-offline pid ${stack.pids.serverless})`,
    ...(stack.liveView
      ? [`${pad("live view")}${stack.liveView.url}  (open it in a browser: the cutover, live)`]
      : []),
  ];
  if (stack.tls.caFile !== undefined && (stack.tls.newCache || stack.tls.oldCache)) {
    lines.push(`${pad("TLS")}the functions trust the CA in ${stack.tls.caFile}`);
  }
  lines.push(
    "",
    "try:",
    `  curl -i ${base}/health`,
    `  curl -i ${base}/products/1          # twice: x-cache MISS, then HIT`,
    `  curl -i -X PUT -H 'content-type: application/json' -d '{"name":"Renamed","price":9.99}' ${base}/products/1`,
    `  curl -i ${base}/counters/visits`,
    `  curl -i -X POST ${base}/counters/visits`,
  );
  if (started.origin) lines.push(`  curl ${stack.originUrl}/_stats        # origin reads/writes`);
  lines.push("", `Ctrl+C stops everything this launcher started (pid ${process.pid}).`, "");
  return lines.join("\n");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--") args.shift();
  let opts: StackOptions;
  try {
    opts = { watch: true, liveView: true, ...optionsFromEnv(process.env, args) };
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }

  const startup = new AbortController();
  let stack: Stack | undefined;
  let signalled: NodeJS.Signals | undefined;
  let shuttingDown = false;

  const shutdown = async (code: number): Promise<never> => {
    shuttingDown = true;
    try {
      await stack?.stop();
    } catch (error) {
      console.error(`local stack: ${(error as Error).message}`);
      process.exit(1);
    }
    process.exit(code);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      // A second Ctrl+C: no more waiting. The exit hooks SIGKILL what is still running.
      console.error(`local stack: ${signal} again, killing everything now`);
      process.exit(1);
    }
    signalled = signal;
    console.error(`local stack: ${signal}, stopping everything it started...`);
    if (!stack) startup.abort(new Error(`interrupted by ${signal}`));
    else void shutdown(0);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);
  // `npm run dev` does not pass a SIGTERM sent to npm on to this process: when the parent goes
  // away (this process is re-parented), treat it as that signal.
  const parent = process.ppid;
  const orphanWatch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(orphanWatch);
    if (!signalled) onSignal("SIGTERM");
  }, 250).unref();

  try {
    stack = await startStack({ ...opts, stdio: "inherit", signal: startup.signal });
  } catch (error) {
    if (signalled) process.exit(0);
    const message = (error as Error).message;
    console.error(error instanceof PortInUseError ? message : `local stack: ${message}`);
    process.exit(1);
  }
  if (signalled) return void shutdown(0);
  console.log(describeStack(stack, opts.originDelayMs ?? 50));

  const exit = await stack.exited;
  if (shuttingDown) return;
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  console.error(`local stack: serverless-offline ${how}; stopping the rest`);
  await shutdown(exit.code ?? 1);
}

if (import.meta.main) await main();
