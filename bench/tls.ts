// TLS benchmark (`npm run bench:tls`): what in-transit encryption costs this client, and how
// getMany keeps within ElastiCache Serverless's 16 KB get lines. Written to bench/results/tls.json:
//
//   tlsGetVsPlain            sequential get throughput over TLS / over plain text, paired per
//                            round in the same run (memcached -Z vs plain memcached, same value;
//                            the four subjects take turns of 100 gets within each round)
//   rawTlsGetVsPlain         the same ratio for a bare socket (tls.connect / net.connect writing
//                            `get` and waiting for `END`, one at a time) against the same two
//                            memcached processes: what the platform allows any client. Below the
//                            target, the output says tlsGetVsPlain is bounded by the platform
//   tlsGetVsRawTls           this client over TLS / the bare TLS socket (plainGetVsRawPlain beside
//                            it); cpuUsPerGet: CPU µs per get of this process and of memcached
//   tlsConnectMs             median time to a usable new TLS connection (tls.connect to
//                            secureConnect, with the client's options), beside plainConnectMs
//   tlsFirstGetMs            median first get of a fresh client over TLS (connect, handshake and
//                            one round trip), beside plainFirstGetMs
//   getManyLinesFor5000Keys  get lines one getMany of 5,000 keys of 200 bytes sends, counted by
//                            the ElastiCache Serverless stand-in, and the longest of them
//
// Target: tlsGetVsPlain >= 0.80, every get line <= 16,000 bytes. A missed target is reported as
// MISSED and still exits 0; a wrong value or a refused line exits 1.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { MemcacheClient, maxGetLineBytes } from "../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { type ServerlessStandIn, startServerlessStandIn } from "../tools/serverless-standin.ts";
import { formatTable, median, pairedRatio, rotated, round, verdict } from "../tools/stats.ts";
import { makeTestCertificates } from "../tools/tls.ts";
import { runMain, writeResults } from "./run.ts";

const settings = {
  /** Interleaved rounds of plain and TLS sequential gets. */
  rounds: 9,
  /** Sequential gets per subject and round. */
  getsPerRound: 4_000,
  /** Sequential gets a subject makes before the next one takes its turn. */
  getsPerTurn: 100,
  /** Bytes of the value read. */
  valueBytes: 100,
  /** New connections timed, per kind. */
  connects: 50,
  /** Keys and key length of the getMany measured through the stand-in. */
  manyKeys: 5_000,
  keyBytes: 200,
  timeoutMs: 2_000,
};

const targets = { tlsGetVsPlain: 0.8, maxGetLineBytes };

/** USER_HZ: the unit of /proc/<pid>/stat times (100 on Linux everywhere it is not built otherwise). */
const clockTicksPerSecond = 100;

const resultsFile = new URL("./results/tls.json", import.meta.url);

class WrongValueError extends Error {
  override name = "WrongValueError";
}

/** ms taken by `count` sequential gets on `client`, checking every value. */
async function sequentialGets(
  client: MemcacheClient,
  expected: string,
  count: number,
): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const value = await client.get<string>("bench:tls");
    if (value !== expected) throw new WrongValueError(`get returned ${String(value)}`);
  }
  return performance.now() - started;
}

/**
 * The baseline: a bare socket (plain or TLS, connected as the client connects: setNoDelay, the
 * client's TLS options) writing `get bench:tls\r\n` and waiting for `END\r\n`, one at a time. What
 * the platform (Node's TLS stream, memcached's TLS) costs with no client around it.
 */
class RawGetter {
  private socket: net.Socket;
  private received = "";
  private answered: () => void = () => {};
  private readonly expected: string;

  private constructor(socket: net.Socket, valueBytes: number) {
    this.socket = socket;
    this.expected = ` ${valueBytes}\r\n${"v".repeat(valueBytes)}\r\nEND\r\n`;
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.received += chunk;
      if (this.received.endsWith("END\r\n")) this.answered();
    });
  }

  static async open(
    port: number,
    secure: tls.ConnectionOptions | undefined,
    valueBytes: number,
  ): Promise<RawGetter> {
    return new Promise((resolve, reject) => {
      const socket =
        secure === undefined
          ? net.connect({ host: "127.0.0.1", port })
          : tls.connect({ ...secure, host: "127.0.0.1", port });
      socket.setNoDelay(true);
      socket.once(secure === undefined ? "connect" : "secureConnect", () =>
        resolve(new RawGetter(socket, valueBytes)),
      );
      socket.once("error", reject);
    });
  }

  /** ms taken by `count` sequential gets, checking every reply. */
  async sequentialGets(count: number): Promise<number> {
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve) => {
        this.answered = resolve;
        this.socket.write("get bench:tls\r\n");
      });
      if (!this.received.startsWith("VALUE bench:tls ") || !this.received.endsWith(this.expected)) {
        throw new WrongValueError(`raw get returned ${JSON.stringify(this.received.slice(0, 40))}`);
      }
      this.received = "";
    }
    return performance.now() - started;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** CPU time (user + system, all threads) process `pid` has used, in µs: /proc, 10 ms ticks. */
async function processCpuUs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "latin1");
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / clockTicksPerSecond;
}

/** ms from connect() to a usable socket (TLS: secureConnect), `count` times. */
async function connectTimes(
  port: number,
  count: number,
  secure: tls.ConnectionOptions | undefined,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const socket =
        secure === undefined
          ? net.connect({ host: "127.0.0.1", port })
          : tls.connect({ ...secure, host: "127.0.0.1", port });
      socket.setNoDelay(true);
      socket.once(secure === undefined ? "connect" : "secureConnect", () => {
        times.push(performance.now() - started);
        socket.destroy();
        resolve();
      });
      socket.once("error", reject);
    });
  }
  return times;
}

/** ms of a fresh client's first get (connect, handshake, one round trip), `count` times. */
async function firstGetTimes(
  endpoint: string,
  count: number,
  tlsOption: { ca: string } | false,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const client = new MemcacheClient({
      servers: endpoint,
      tls: tlsOption,
      timeoutMs: settings.timeoutMs,
      connectTimeoutMs: settings.timeoutMs,
    });
    const started = performance.now();
    await client.get("bench:tls");
    times.push(performance.now() - started);
    client.close();
  }
  return times;
}

/** The get lines of one getMany of 5,000 keys of 200 bytes, seen by the stand-in. */
async function getManyLines(
  standIn: ServerlessStandIn,
  plainEndpoint: string,
  ca: string,
): Promise<{ lines: number; longestBytes: number; values: number }> {
  const keys = Array.from({ length: settings.manyKeys }, (_, i) =>
    `bench:many:${i}:`.padEnd(settings.keyBytes, "k"),
  );
  const direct = new MemcacheClient({ servers: plainEndpoint, timeoutMs: settings.timeoutMs });
  const client = new MemcacheClient({
    servers: standIn.endpoint,
    elastiCacheServerless: true,
    tls: { ca },
    timeoutMs: settings.timeoutMs,
    connectTimeoutMs: settings.timeoutMs,
  });
  try {
    for (let i = 0; i < keys.length; i += 500) {
      await Promise.all(keys.slice(i, i + 500).map((key, j) => direct.set(key, i + j)));
    }
    standIn.resetLog();
    const values = await client.getMany<number>(keys);
    if (values.size !== keys.length || values.get(keys[4_999]!) !== 4_999) {
      throw new WrongValueError(`getMany returned ${values.size} of ${keys.length} values`);
    }
    if (standIn.refused.length > 0) {
      throw new WrongValueError(`the stand-in refused: ${standIn.refused[0]!.reply}`);
    }
    return {
      lines: standIn.getLineBytes.length,
      longestBytes: Math.max(...standIn.getLineBytes),
      values: values.size,
    };
  } finally {
    direct.close();
    client.close();
  }
}

async function main(): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bench-tls-"));
  const servers: MemcachedProcess[] = [];
  const clients: MemcacheClient[] = [];
  const raws: RawGetter[] = [];
  let standIn: ServerlessStandIn | undefined;
  try {
    const certs = await makeTestCertificates(dir);
    const plainServer = await startMemcached();
    servers.push(plainServer);
    const tlsServer = await startMemcached({
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    });
    servers.push(tlsServer);
    standIn = await startServerlessStandIn({
      target: plainServer,
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    });

    const value = "v".repeat(settings.valueBytes);
    const plain = new MemcacheClient({
      servers: plainServer.endpoint,
      timeoutMs: settings.timeoutMs,
    });
    const secure = new MemcacheClient({
      servers: tlsServer.endpoint,
      tls: { ca: certs.caPem },
      timeoutMs: settings.timeoutMs,
      connectTimeoutMs: settings.timeoutMs,
    });
    clients.push(plain, secure);
    await plain.set("bench:tls", value);
    await secure.set("bench:tls", value);
    const rawPlain = await RawGetter.open(plainServer.port, undefined, settings.valueBytes);
    raws.push(rawPlain);
    const rawTls = await RawGetter.open(tlsServer.port, { ca: certs.caPem }, settings.valueBytes);
    raws.push(rawTls);
    const run = {
      plain: (count: number) => sequentialGets(plain, value, count),
      tls: (count: number) => sequentialGets(secure, value, count),
      rawPlain: (count: number) => rawPlain.sequentialGets(count),
      rawTls: (count: number) => rawTls.sequentialGets(count),
    };
    const subjects = Object.keys(run) as Array<keyof typeof run>;
    // Warm up all four (JIT, connections) before timing.
    for (const subject of subjects) await run[subject](settings.getsPerRound);

    // Within a round the subjects take short turns, so a slow spell of the shared machine hits
    // all four alike; each round gives one ops/s per subject.
    const opsPerSecond = { plain: [] as number[], tls: [] as number[] };
    const rawOpsPerSecond = { plain: [] as number[], tls: [] as number[] };
    const turns = settings.getsPerRound / settings.getsPerTurn;
    // CPU time spent per subject over all rounds: this process's, and the memcached it talks to.
    const cpuUs = { plain: [0, 0], tls: [0, 0], rawPlain: [0, 0], rawTls: [0, 0] };
    const serverOf = (subject: keyof typeof run) =>
      subject === "plain" || subject === "rawPlain" ? plainServer : tlsServer;
    for (let r = 0; r < settings.rounds; r++) {
      if (process.stderr.isTTY) process.stderr.write(`round ${r + 1}/${settings.rounds}\r`);
      const ms = { plain: 0, tls: 0, rawPlain: 0, rawTls: 0 };
      for (let t = 0; t < turns; t++) {
        for (const subject of rotated(subjects, r + t)) {
          const serverBefore = await processCpuUs(serverOf(subject).pid);
          const before = process.cpuUsage();
          ms[subject] += await run[subject](settings.getsPerTurn);
          const used = process.cpuUsage(before);
          cpuUs[subject][0]! += used.user + used.system;
          cpuUs[subject][1]! += (await processCpuUs(serverOf(subject).pid)) - serverBefore;
        }
      }
      const ops = (subject: keyof typeof ms) => settings.getsPerRound / (ms[subject] / 1000);
      opsPerSecond.plain.push(ops("plain"));
      opsPerSecond.tls.push(ops("tls"));
      rawOpsPerSecond.plain.push(ops("rawPlain"));
      rawOpsPerSecond.tls.push(ops("rawTls"));
    }

    const tlsConnect = await connectTimes(tlsServer.port, settings.connects, {
      ca: certs.caPem,
    });
    const plainConnect = await connectTimes(plainServer.port, settings.connects, undefined);
    const tlsFirstGet = await firstGetTimes(tlsServer.endpoint, settings.connects, {
      ca: certs.caPem,
    });
    const plainFirstGet = await firstGetTimes(plainServer.endpoint, settings.connects, false);
    const many = await getManyLines(standIn, plainServer.endpoint, certs.caPem);

    const figures = {
      tlsGetVsPlain: pairedRatio(opsPerSecond.tls, opsPerSecond.plain),
      rawTlsGetVsPlain: pairedRatio(rawOpsPerSecond.tls, rawOpsPerSecond.plain),
      tlsGetVsRawTls: pairedRatio(opsPerSecond.tls, rawOpsPerSecond.tls),
      plainGetVsRawPlain: pairedRatio(opsPerSecond.plain, rawOpsPerSecond.plain),
      /** CPU µs per get, [this process, memcached], over every round (memcached's in 10 ms ticks). */
      cpuUsPerGet: Object.fromEntries(
        subjects.map((subject) => [
          subject,
          cpuUs[subject].map((us) => round(us / (settings.rounds * settings.getsPerRound), 1)),
        ]),
      ) as Record<keyof typeof run, number[]>,
      tlsConnectMs: round(median(tlsConnect), 2),
      plainConnectMs: round(median(plainConnect), 2),
      tlsFirstGetMs: round(median(tlsFirstGet), 2),
      plainFirstGetMs: round(median(plainFirstGet), 2),
      getManyLinesFor5000Keys: many.lines,
      getManyLongestLineBytes: many.longestBytes,
    };
    // A bare socket below the target means no client can reach it on this machine: the cost is
    // Node's TLS stream and memcached's TLS, not the client.
    const platformBound = figures.rawTlsGetVsPlain < targets.tlsGetVsPlain;
    const met = {
      tlsGetVsPlain: figures.tlsGetVsPlain >= targets.tlsGetVsPlain,
      getManyLines: figures.getManyLongestLineBytes <= targets.maxGetLineBytes,
    };

    const memcachedVersion = Object.values(await plain.version())[0];
    console.log(`\nnode ${process.version}, memcached ${memcachedVersion}\n`);
    console.log(
      formatTable([
        ["figure", "value", "target", "verdict"],
        [
          "tlsGetVsPlain (sequential gets, TLS / plain)",
          figures.tlsGetVsPlain.toFixed(3),
          `>= ${targets.tlsGetVsPlain}`,
          verdict(met.tlsGetVsPlain),
        ],
        [
          "  plain / TLS gets per second (median)",
          `${Math.round(median(opsPerSecond.plain))} / ${Math.round(median(opsPerSecond.tls))}`,
          "",
          "",
        ],
        [
          "rawTlsGetVsPlain (bare socket: TLS / plain)",
          figures.rawTlsGetVsPlain.toFixed(3),
          "",
          figures.rawTlsGetVsPlain < targets.tlsGetVsPlain ? "platform bound" : "",
        ],
        [
          "  raw plain / raw TLS gets per second (median)",
          `${Math.round(median(rawOpsPerSecond.plain))} / ${Math.round(median(rawOpsPerSecond.tls))}`,
          "",
          "",
        ],
        ["tlsGetVsRawTls (client / bare socket, TLS)", figures.tlsGetVsRawTls.toFixed(3), "", ""],
        [
          "plainGetVsRawPlain (client / bare socket, plain)",
          figures.plainGetVsRawPlain.toFixed(3),
          "",
          "",
        ],
        ...subjects.map((subject) => [
          `  CPU µs per get, ${subject}: node + memcached`,
          `${figures.cpuUsPerGet[subject][0]} + ${figures.cpuUsPerGet[subject][1]}`,
          "",
          "",
        ]),
        ["tlsConnectMs (to secureConnect, median)", String(figures.tlsConnectMs), "", ""],
        ["  plainConnectMs", String(figures.plainConnectMs), "", ""],
        ["tlsFirstGetMs (fresh client, median)", String(figures.tlsFirstGetMs), "", ""],
        ["  plainFirstGetMs", String(figures.plainFirstGetMs), "", ""],
        [
          `getManyLinesFor5000Keys (${settings.keyBytes}-byte keys)`,
          String(figures.getManyLinesFor5000Keys),
          "",
          "",
        ],
        [
          "  longest get line, bytes",
          String(figures.getManyLongestLineBytes),
          `<= ${targets.maxGetLineBytes}`,
          verdict(met.getManyLines),
        ],
      ]),
    );

    if (platformBound) {
      console.log(
        `\ntlsGetVsPlain is bounded by the platform in this run: a bare TLS socket made ` +
          `${figures.rawTlsGetVsPlain} of a bare plain socket's gets (target ${targets.tlsGetVsPlain}), ` +
          `and this client over TLS made ${figures.tlsGetVsRawTls} of the bare TLS socket's.`,
      );
    }

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      settings,
      ...figures,
      opsPerSecond: {
        plain: opsPerSecond.plain.map((ops) => Math.round(ops)),
        tls: opsPerSecond.tls.map((ops) => Math.round(ops)),
        rawPlain: rawOpsPerSecond.plain.map((ops) => Math.round(ops)),
        rawTls: rawOpsPerSecond.tls.map((ops) => Math.round(ops)),
      },
      targets,
      pass: met,
      platformBound,
    };
    await writeResults(resultsFile, results);
    return 0;
  } finally {
    for (const client of clients) client.close();
    for (const raw of raws) raw.close();
    await standIn?.close();
    await Promise.all(servers.map((server) => server.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

runMain(main, (error) => (error instanceof WrongValueError ? `WRONG: ${error.message}` : error));
