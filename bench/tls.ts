// TLS benchmark (`npm run bench:tls`): what in-transit encryption costs this client, and how
// getMany keeps within ElastiCache Serverless's 16 KB get lines. Written to bench/results/tls.json:
//
//   tlsGetVsPlain            sequential get throughput over TLS / over plain text, paired per
//                            round in the same run (memcached -Z vs plain memcached, same value)
//   tlsConnectMs             median time to a usable new TLS connection (tls.connect to
//                            secureConnect, with the client's options), beside plainConnectMs
//   tlsFirstGetMs            median first get of a fresh client over TLS (connect, handshake and
//                            one round trip), beside plainFirstGetMs
//   getManyLinesFor5000Keys  get lines one getMany of 5,000 keys of 200 bytes sends, counted by
//                            the ElastiCache Serverless stand-in, and the longest of them
//
// Target: tlsGetVsPlain >= 0.80, every get line <= 16,000 bytes. A missed target is reported as
// MISSED and still exits 0; a wrong value or a refused line exits 1.

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { MemcacheClient, maxGetLineBytes } from "../lib/memcache/client.ts";
import { type MemcachedProcess, startMemcached } from "../tools/memcached.ts";
import { type ServerlessStandIn, startServerlessStandIn } from "../tools/serverless-standin.ts";
import { formatTable, median, pairedRatio, rotated, round, verdict } from "../tools/stats.ts";
import { makeTestCertificates } from "../tools/tls.ts";

const settings = {
  /** Interleaved rounds of plain and TLS sequential gets. */
  rounds: 9,
  /** Sequential gets per subject and round. */
  getsPerRound: 4_000,
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

const resultsFile = new URL("./results/tls.json", import.meta.url);

class WrongValueError extends Error {
  override name = "WrongValueError";
}

/** Sequential gets per second on `client`, checking every value. */
async function sequentialGets(client: MemcacheClient, expected: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < settings.getsPerRound; i++) {
    const value = await client.get<string>("bench:tls");
    if (value !== expected) throw new WrongValueError(`get returned ${String(value)}`);
  }
  return settings.getsPerRound / ((performance.now() - started) / 1000);
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
    // Warm up both (JIT, connections) before timing.
    await sequentialGets(plain, value);
    await sequentialGets(secure, value);

    const opsPerSecond = { plain: [] as number[], tls: [] as number[] };
    for (let r = 0; r < settings.rounds; r++) {
      if (process.stderr.isTTY) process.stderr.write(`round ${r + 1}/${settings.rounds}\r`);
      for (const subject of rotated(["plain", "tls"] as const, r)) {
        opsPerSecond[subject].push(
          await sequentialGets(subject === "plain" ? plain : secure, value),
        );
      }
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
      tlsConnectMs: round(median(tlsConnect), 2),
      plainConnectMs: round(median(plainConnect), 2),
      tlsFirstGetMs: round(median(tlsFirstGet), 2),
      plainFirstGetMs: round(median(plainFirstGet), 2),
      getManyLinesFor5000Keys: many.lines,
      getManyLongestLineBytes: many.longestBytes,
    };
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

    const results = {
      date: new Date().toISOString(),
      node: process.version,
      memcachedVersion,
      settings,
      ...figures,
      opsPerSecond: {
        plain: opsPerSecond.plain.map((ops) => Math.round(ops)),
        tls: opsPerSecond.tls.map((ops) => Math.round(ops)),
      },
      targets,
      pass: met,
    };
    await mkdir(new URL(".", resultsFile), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwrote ${resultsFile.pathname}`);
    return 0;
  } finally {
    for (const client of clients) client.close();
    await standIn?.close();
    await Promise.all(servers.map((server) => server.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof WrongValueError ? `WRONG: ${error.message}` : error);
    process.exitCode = 1;
  },
);
