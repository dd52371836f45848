// The live view of the local stack: a page (page.html + page.ts bundled with uPlot by esbuild when
// the view starts: nothing is fetched from the internet) that follows the running stack over
// server-sent events. Two sources, never a bookkeeping of its own:
//   - the functions' cache events (EMF lines, counted per second by events.ts), always counted:
//     parsing a line in the launcher costs the request path nothing;
//   - memcached `stats` per node, the demo origin's /_stats and the app's /health, asked once a
//     second (health every few) only while at least one page is open.
//
//   GET /            the page           GET /app.js, /uplot.css   its script and the chart's CSS
//   GET /events      text/event-stream: a full update on connect, then one every second
//   GET /state.json  the same update once (for curl, and for tests)

import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { CacheStatus } from "../../../lib/cache/cacheAside.ts";
import type { ClientOptions } from "../../../lib/memcache/client.ts";
import type { EventSeries, SecondCounts } from "./events.ts";
import {
  ClusterProbe,
  type ClusterSample,
  type OriginSample,
  sampleHealth,
  sampleOrigin,
  warmthTotals,
} from "./probes.ts";
import { clusterRole, type Recommendation, type Role, recommendStep } from "./recommend.ts";

export interface LiveViewOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The cache events, counted by the stack from serverless-offline's output. */
  events: EventSeries;
  newEndpoint: string;
  /** "" with one cluster. */
  oldEndpoint: string;
  /** How to reach each cluster for its stats: plain text (default), or TLS with these options. */
  tls?: { newCache: ClientOptions["tls"]; oldCache: ClientOptions["tls"] };
  originUrl: string;
  /** The app (serverless-offline's HTTP API), for GET /health. */
  appUrl: string;
  /** How often stats and the origin are sampled while a page is open; default 1,000 ms. */
  sampleMs?: number;
  /** How often the app's /health is asked for the phase while a page is open; default 5,000 ms. */
  healthMs?: number;
  /** Seconds of history a page gets on connect; default 300. */
  historySeconds?: number;
}

export interface LiveView {
  /** e.g. "http://127.0.0.1:3003/" */
  url: string;
  /** Pages connected right now. */
  viewers(): number;
  /** Sampling rounds run since the start (0 while nobody ever looked). */
  samplingRounds(): number;
  close(): Promise<void>;
}

/** One second of the charts: the events' counts and what was sampled in that second. */
export interface LiveRow extends SecondCounts {
  /** Origin reads in this second (GET /_stats delta); null where not sampled. */
  origin: number | null;
  /** curr_items per cluster at this second's sample; null where not sampled or down. */
  items: Record<Role, number | null>;
}

export interface ClusterPanel {
  endpoint: string;
  /** What the cluster does in the current phase. */
  role: string | undefined;
  /** Latest stats; undefined before the first sample. */
  sample: ClusterSample | undefined;
}

/** What a page gets: on connect with the whole history, then each second with the last few. */
export interface LiveUpdate {
  nowMs: number;
  rows: LiveRow[];
  phase: string | undefined;
  phaseError: string | undefined;
  recommendation: Recommendation;
  clusters: { new: ClusterPanel; old?: ClusterPanel };
  origin: { url: string; known: boolean; error?: string };
  events: { total: number; lastMs: number };
  readStatuses: CacheStatus[];
}

/** Rows re-sent every second: events can arrive a little after their second ended. */
const trailingSeconds = 5;

interface Sampled {
  origin: number | null;
  items: Record<Role, number | null>;
}

export async function startLiveView(opts: LiveViewOptions): Promise<LiveView> {
  const sampleMs = opts.sampleMs ?? 1_000;
  const healthMs = opts.healthMs ?? 5_000;
  const historySeconds = opts.historySeconds ?? 300;
  const assets = buildAssets();
  assets.catch(() => {}); // reported when the page asks for them

  const viewers = new Set<http.ServerResponse>();
  const sampled = new Map<number, Sampled>();
  let rounds = 0;
  let timer: NodeJS.Timeout | undefined;
  let probes: { new: ClusterProbe; old: ClusterProbe | undefined } | undefined;
  let latest: { new?: ClusterSample; old?: ClusterSample } = {};
  let origin: OriginSample & { previousReads?: number } = {};
  let phase: string | undefined;
  let phaseError: string | undefined;
  let lastHealthMs = 0;
  let sampling = false;

  const sampleOnce = async (): Promise<void> => {
    if (probes === undefined) return;
    rounds++;
    const nowMs = Date.now();
    const askHealth = nowMs - lastHealthMs >= healthMs;
    const [newSample, oldSample, originSample, health] = await Promise.all([
      probes.new.sample(),
      probes.old?.sample(),
      sampleOrigin(opts.originUrl),
      askHealth ? sampleHealth(opts.appUrl) : undefined,
    ]);
    latest = { new: newSample, ...(oldSample && { old: oldSample }) };
    if (health !== undefined) {
      lastHealthMs = nowMs;
      if (health.phase !== undefined) phase = health.phase;
      phaseError = health.error;
    }
    let originReads: number | null = null;
    if (originSample.reads !== undefined) {
      const before = origin.previousReads;
      // A reset of the origin's counter (POST /_stats/reset) starts the count again from 0.
      if (before !== undefined) originReads = Math.max(0, originSample.reads - before);
      origin = { ...originSample, previousReads: originSample.reads };
    } else {
      origin = { ...originSample };
    }
    const t = Math.floor(nowMs / 1000);
    const itemsOf = (sample: ClusterSample | undefined) => (sample?.up ? sample.items : null);
    const previous = sampled.get(t);
    sampled.set(t, {
      origin:
        originReads === null ? (previous?.origin ?? null) : (previous?.origin ?? 0) + originReads,
      items: { new: itemsOf(newSample), old: itemsOf(oldSample) },
    });
    for (const second of sampled.keys()) {
      if (second <= t - opts.events.keepSeconds) sampled.delete(second);
    }
    broadcast(update(trailingSeconds));
  };

  const startSampling = () => {
    probes = {
      new: new ClusterProbe(opts.newEndpoint, undefined, opts.tls?.newCache),
      old: opts.oldEndpoint
        ? new ClusterProbe(opts.oldEndpoint, undefined, opts.tls?.oldCache)
        : undefined,
    };
    lastHealthMs = 0;
    origin = {};
    const round = () => {
      // One round at a time: a slow probe (a hung node) skips ticks rather than piling them up.
      if (sampling) return;
      sampling = true;
      sampleOnce()
        .catch((error: Error) => console.error(`live view: sampling failed: ${error.message}`))
        .finally(() => {
          sampling = false;
        });
    };
    round();
    timer = setInterval(round, sampleMs);
    timer.unref();
  };

  const stopSampling = () => {
    clearInterval(timer);
    timer = undefined;
    probes?.new.close();
    probes?.old?.close();
    probes = undefined;
  };

  const update = (seconds: number): LiveUpdate => {
    const nowMs = Date.now();
    const to = Math.floor(nowMs / 1000);
    const rows = opts.events.range(to - seconds + 1, to).map((counts): LiveRow => {
      const sample = sampled.get(counts.t);
      return {
        ...counts,
        origin: sample?.origin ?? null,
        items: sample?.items ?? { new: null, old: null },
      };
    });
    const panel = (role: Role, endpoint: string): ClusterPanel => ({
      endpoint,
      role: phase === undefined ? undefined : clusterRole(phase, role),
      sample: latest[role],
    });
    return {
      nowMs,
      rows,
      phase,
      phaseError,
      recommendation: recommendStep(
        {
          phase,
          ...(phaseError !== undefined && { phaseError }),
          oldEndpoint: opts.oldEndpoint,
          oldTls: Boolean(opts.tls?.oldCache),
        },
        {
          new: warmthTotals(latest.new),
          old: warmthTotals(latest.old),
        },
      ),
      clusters: {
        new: panel("new", opts.newEndpoint),
        ...(opts.oldEndpoint ? { old: panel("old", opts.oldEndpoint) } : {}),
      },
      origin: {
        url: opts.originUrl,
        known: origin.reads !== undefined,
        ...(origin.error !== undefined && { error: origin.error }),
      },
      events: { total: opts.events.events, lastMs: opts.events.lastEventMs },
      readStatuses: ["HIT", "HIT-FALLBACK", "MISS", "BYPASS"],
    };
  };

  const broadcast = (message: LiveUpdate) => {
    const data = `data: ${JSON.stringify(message)}\n\n`;
    for (const viewer of viewers) viewer.write(data);
  };

  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://live").pathname;
    if (req.method !== "GET") return send(res, 405, "text/plain", "method not allowed\n");
    switch (pathname) {
      case "/":
      case "/index.html":
        return void assets.then(
          (built) => send(res, 200, "text/html; charset=utf-8", built.html),
          (error: Error) => send(res, 500, "text/plain", `live view: ${error.message}\n`),
        );
      case "/app.js":
        return void assets.then(
          (built) => send(res, 200, "text/javascript; charset=utf-8", built.script),
          (error: Error) => send(res, 500, "text/plain", `live view: ${error.message}\n`),
        );
      case "/uplot.css":
        return void assets.then(
          (built) => send(res, 200, "text/css; charset=utf-8", built.css),
          (error: Error) => send(res, 500, "text/plain", `live view: ${error.message}\n`),
        );
      case "/state.json":
        return send(res, 200, "application/json", JSON.stringify(update(historySeconds)));
      case "/events": {
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-store",
          connection: "keep-alive",
        });
        res.write(`retry: 1000\ndata: ${JSON.stringify(update(historySeconds))}\n\n`);
        viewers.add(res);
        if (viewers.size === 1) startSampling();
        const leave = () => {
          if (!viewers.delete(res)) return;
          if (viewers.size === 0) stopSampling();
        };
        req.once("close", leave);
        res.once("close", leave);
        return;
      }
      default:
        return send(res, 404, "text/plain", "not found\n");
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = opts.host.includes(":") ? `[${opts.host}]` : opts.host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}/`,
    viewers: () => viewers.size,
    samplingRounds: () => rounds,
    close() {
      closing ??= new Promise<void>((resolve) => {
        stopSampling();
        for (const viewer of viewers) viewer.end();
        viewers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  res.end(body);
}

interface Assets {
  html: string;
  script: string;
  css: string;
}

/** The page, its script bundled with uPlot (esbuild, from node_modules) and uPlot's CSS. */
async function buildAssets(): Promise<Assets> {
  const here = import.meta.dirname;
  const uplotCss = path.join(
    path.dirname(fileURLToPath(import.meta.resolve("uplot"))),
    "uPlot.min.css",
  );
  const [html, css, bundle] = await Promise.all([
    readFile(path.join(here, "page.html"), "utf8"),
    readFile(uplotCss, "utf8"),
    build({
      entryPoints: [path.join(here, "page.ts")],
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      target: "es2022",
      minify: true,
      logLevel: "silent",
    }),
  ]);
  return { html, css, script: bundle.outputFiles[0]!.text };
}
