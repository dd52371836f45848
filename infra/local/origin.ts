// The demo origin API: stands in for the user's slow database or REST API behind the cache.
// node:http only. Products 1..100000 exist from the start (generated, deterministic); PUT
// replaces or creates any id. Every response waits `delayMs` first (except stats and health),
// and /_stats counts how often the origin was hit so tests and benchmarks can see the cache work.
//
//   GET  /products/:id   200 { id, name, price, version, updatedAt } | 404 { error, id }
//   PUT  /products/:id   JSON object body (<= 64 KiB) -> stored with version + 1
//   GET  /_stats         { reads, writes }      POST /_stats/reset -> zeroes both
//   GET  /_health        { ok: true }
//
// Run directly: `node infra/local/origin.ts` (ORIGIN_PORT, default 4000; ORIGIN_DELAY_MS).

import http from "node:http";
import type { AddressInfo } from "node:net";

export interface OriginOptions {
  /** Port to listen on; default 4000, 0 picks a free port. */
  port?: number;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Artificial latency of every product read and write; default ORIGIN_DELAY_MS or 50. */
  delayMs?: number;
}

export interface Origin {
  /** Base URL, e.g. "http://127.0.0.1:4000" (no trailing slash). */
  url: string;
  port: number;
  /** Stops listening, drops open connections and pending delayed replies. Idempotent. */
  close(): Promise<void>;
  stats(): OriginStats;
}

export interface OriginStats {
  reads: number;
  writes: number;
}

export interface Product {
  /** The URL-decoded path segment the product was requested or written under. */
  id: string;
  name?: unknown;
  price?: unknown;
  version: number;
  updatedAt: string;
  [field: string]: unknown;
}

export const defaultOriginPort = 4000;
/** Ids that exist without ever being written: the integers 1..generatedProducts. */
export const generatedProducts = 100_000;
/** Largest accepted PUT body. */
export const maxBodyBytes = 64 * 1024;
/** Past this many bytes, an oversized body is no longer drained: the connection is cut. */
const maxDrainBytes = 8 * 1024 * 1024;
/** updatedAt of every generated product, so that their JSON is the same in every run. */
const generatedAt = "2024-01-01T00:00:00.000Z";
const productPath = /^\/products\/([^/]+)$/;
const canonicalInteger = /^[1-9][0-9]{0,5}$/;

/** The product every origin serves for `id` until it is written, or undefined. */
export function generatedProduct(id: string): Product | undefined {
  if (!canonicalInteger.test(id)) return undefined;
  const n = Number(id);
  if (n > generatedProducts) return undefined;
  // A spread of prices between 1.00 and 99.99 that depends only on the id.
  const price = Number((1 + ((n * 7_919) % 9_900) / 100).toFixed(2));
  return { id, name: `Product ${id}`, price, version: 1, updatedAt: generatedAt };
}

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const host = opts.host ?? "127.0.0.1";
  const delayMs = opts.delayMs ?? Number(process.env.ORIGIN_DELAY_MS ?? 50);
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    throw new Error(`origin delay must be a number of milliseconds >= 0, got ${delayMs}`);
  }
  const written = new Map<string, Product>();
  const counts: OriginStats = { reads: 0, writes: 0 };
  const pending = new Set<NodeJS.Timeout>();

  /** Runs `fn` after the artificial delay, unless the origin was closed meanwhile. */
  const later = (fn: () => void): void => {
    const timer = setTimeout(() => {
      pending.delete(timer);
      fn();
    }, delayMs);
    pending.add(timer);
  };

  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://origin").pathname;
    const method = req.method ?? "GET";

    const match = productPath.exec(pathname);
    if (match) {
      if (method !== "GET" && method !== "PUT") {
        return send(res, 405, { error: "method not allowed" }, { allow: "GET, PUT" });
      }
      let id: string;
      try {
        id = decodeURIComponent(match[1]!);
      } catch {
        if (method === "GET") counts.reads++;
        return send(res, 400, { error: "malformed id", id: match[1] });
      }
      if (method === "GET") {
        counts.reads++;
        return later(() => {
          const product = written.get(id) ?? generatedProduct(id);
          if (product) send(res, 200, product);
          else send(res, 404, { error: "product not found", id });
        });
      }
      return readJson(req, res, (body) => {
        if (body === null || typeof body !== "object" || Array.isArray(body)) {
          return send(res, 400, { error: "body must be a JSON object" });
        }
        later(() => {
          const previous = written.get(id) ?? generatedProduct(id);
          const product: Product = {
            ...(body as Record<string, unknown>),
            id,
            version: (previous?.version ?? 0) + 1,
            updatedAt: new Date().toISOString(),
          };
          written.set(id, product);
          counts.writes++;
          send(res, 200, product);
        });
      });
    }

    switch (`${method} ${pathname}`) {
      case "GET /_stats":
        return send(res, 200, { ...counts });
      case "POST /_stats/reset":
        counts.reads = 0;
        counts.writes = 0;
        return send(res, 200, { ...counts });
      case "GET /_health":
        return send(res, 200, { ok: true });
      default:
        return send(res, 404, { error: "not found", path: pathname });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port: opts.port ?? defaultOriginPort }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    stats: () => ({ ...counts }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const timer of pending) clearTimeout(timer);
        pending.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * Collects a JSON request body of at most maxBodyBytes. Too large: 413 once the body has
 * been read (so the client sees the reply, not a reset), or a cut connection for a huge one.
 */
function readJson(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  onBody: (body: unknown) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const declared = Number(req.headers["content-length"]);
  if (declared > maxDrainBytes) {
    res.setHeader("connection", "close");
    send(res, 413, { error: "body too large", limit: maxBodyBytes });
    req.destroy();
    return;
  }
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size <= maxBodyBytes) chunks.push(chunk);
    else if (size > maxDrainBytes) req.destroy();
  });
  req.on("error", () => {}); // a cut connection has nobody left to answer
  req.on("end", () => {
    if (size > maxBodyBytes) {
      return send(res, 413, { error: "body too large", limit: maxBodyBytes });
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return send(res, 400, { error: "invalid JSON body" });
    }
    onBody(body);
  });
}

function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(payload),
  });
  res.end(payload);
}

if (import.meta.main) {
  const port = Number(process.env.ORIGIN_PORT || defaultOriginPort);
  try {
    const origin = await startOrigin({ port });
    const delay = Number(process.env.ORIGIN_DELAY_MS ?? 50);
    console.log(`demo origin listening on ${origin.url} (delay ${delay} ms); Ctrl+C stops it`);
    const stop = () => void origin.close().then(() => process.exit(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    console.error(
      e.code === "EADDRINUSE"
        ? `port ${port} is already in use (demo origin): stop what uses it or set ORIGIN_PORT`
        : `demo origin could not start: ${e.message}`,
    );
    process.exit(1);
  }
}
