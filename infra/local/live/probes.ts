// What the live view asks the running stack while a page is open (and never otherwise): each
// memcached node's `stats` (one client per node, so a dead node does not hide the others), the
// demo origin's GET /_stats, and the app's GET /health (the phase the functions run).

import { formatAddress, toAddressList } from "../../../lib/memcache/address.ts";
import { type ClientOptions, MemcacheClient } from "../../../lib/memcache/client.ts";
import { type StatsTotals, statsCount, statsTotals, sumStats } from "../../cutover.ts";

/** One node's `stats`, or why there are none. */
export interface NodeSample {
  endpoint: string;
  up: boolean;
  error?: string;
  items?: number;
  getHits?: number;
  getMisses?: number;
  /** Of getHits, the misses that vivified a meta-lease placeholder (see WarmthRule). */
  vivified?: number;
  evictions?: number;
  connections?: number;
}

export interface ClusterSample {
  endpoint: string;
  /** Every node answered. */
  up: boolean;
  nodes: NodeSample[];
  /**
   * Sums over the nodes that answered (hit ratio since each node started, vivified misses not
   * counted as hits: the warmth rule's, as `status` reads it).
   */
  items: number;
  getHits: number;
  getMisses: number;
  vivified: number;
  hitRatio: number | null;
  evictions: number;
  connections: number;
}

/** Clients of one cluster's nodes, for `stats` only; short timeouts so a dead node shows fast. */
export class ClusterProbe {
  readonly endpoint: string;
  readonly #clients: Array<{ endpoint: string; client: MemcacheClient }>;

  /** `tls`: how the functions reach this cluster (false, or TLS options with the stack's CA). */
  constructor(endpoint: string, timeoutMs = 500, tls: ClientOptions["tls"] = false) {
    this.endpoint = endpoint;
    this.#clients = toAddressList(endpoint).map((address) => ({
      endpoint: formatAddress(address),
      client: new MemcacheClient({
        servers: [address],
        timeoutMs,
        connectTimeoutMs: timeoutMs,
        deadRetryMs: 1_000,
        tls,
      }),
    }));
  }

  async sample(): Promise<ClusterSample> {
    const nodes = await Promise.all(
      this.#clients.map(async ({ endpoint, client }): Promise<NodeSample> => {
        try {
          const stats = Object.values(await client.stats())[0];
          if (stats === undefined) throw new Error("empty stats reply");
          return { endpoint, up: true, ...nodeNumbers(stats) };
        } catch (error) {
          return { endpoint, up: false, error: (error as Error).message };
        }
      }),
    );
    const sum = (field: "evictions" | "connections") =>
      nodes.reduce((total, node) => total + (node[field] ?? 0), 0);
    const totals = sumStats(
      nodes.flatMap(({ up, items, getHits, getMisses, vivified }) =>
        up
          ? [{ currItems: items!, getHits: getHits!, getMisses: getMisses!, vivified: vivified! }]
          : [],
      ),
    );
    return {
      endpoint: this.endpoint,
      up: nodes.every((node) => node.up),
      nodes,
      items: totals.currItems,
      getHits: totals.getHits,
      getMisses: totals.getMisses,
      vivified: totals.vivified,
      hitRatio: totals.hitRatio,
      evictions: sum("evictions"),
      connections: sum("connections"),
    };
  }

  close(): void {
    for (const { client } of this.#clients) client.close();
  }
}

function nodeNumbers(stats: Record<string, string>) {
  const totals = statsTotals(stats);
  return {
    items: totals.currItems,
    getHits: totals.getHits,
    getMisses: totals.getMisses,
    vivified: totals.vivified,
    evictions: statsCount(stats, "evictions"),
    connections: statsCount(stats, "curr_connections"),
  };
}

/** The totals the warmth rule judges, when every node of the cluster answered. */
export function warmthTotals(sample: ClusterSample | undefined): StatsTotals | undefined {
  if (sample === undefined || !sample.up) return undefined;
  const { items: currItems, getHits, getMisses, vivified, hitRatio } = sample;
  return { currItems, getHits, getMisses, vivified, hitRatio };
}

export interface OriginSample {
  /** GET /_stats's reads, or undefined when the origin has no such endpoint or is down. */
  reads?: number;
  error?: string;
}

/** The demo origin's read count (an external origin answers 404: no count). */
export async function sampleOrigin(originUrl: string, timeoutMs = 1_000): Promise<OriginSample> {
  try {
    const response = await fetch(`${originUrl}/_stats`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) return { error: `GET /_stats answered ${response.status}` };
    const body = (await response.json()) as { reads?: unknown };
    if (typeof body.reads !== "number") return { error: "GET /_stats has no reads count" };
    return { reads: body.reads };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

export interface HealthSample {
  phase?: string;
  error?: string;
}

/** The phase the functions run, from the app's GET /health (any status: 503 still names it). */
export async function sampleHealth(appUrl: string, timeoutMs = 3_000): Promise<HealthSample> {
  try {
    const response = await fetch(`${appUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.json()) as { phase?: unknown };
    if (typeof body.phase !== "string") return { error: `GET /health answered ${response.status}` };
    return { phase: body.phase };
  } catch (error) {
    return { error: (error as Error).message };
  }
}
