// GET /health: the cutover phase, each cluster's nodes and whether each answers right now.

import type { MemcacheClient } from "../lib/memcache/client.ts";
import { cacheConfig, newClient, oldClient } from "./shared/cache.ts";
import { json, type Result } from "./shared/http.ts";

interface NodeHealth {
  endpoint: string;
  ok: boolean;
  version?: string;
  error?: string;
}

async function probe(client: MemcacheClient): Promise<NodeHealth[]> {
  try {
    const versions = await client.version();
    return Object.entries(versions).map(([endpoint, version]) => ({ endpoint, ok: true, version }));
  } catch (error) {
    return client.nodes.map((node) => ({
      endpoint: node.endpoint,
      ok: false,
      error: (error as Error).message,
    }));
  }
}

export const handler = async (): Promise<Result> => {
  const [newNodes, oldNodes] = await Promise.all([
    probe(newClient),
    oldClient === undefined ? Promise.resolve(undefined) : probe(oldClient),
  ]);
  const clusters: Record<string, { servers: string[]; nodes: NodeHealth[] }> = {
    new: { servers: cacheConfig.newServers, nodes: newNodes },
  };
  if (oldNodes !== undefined) clusters.old = { servers: cacheConfig.oldServers, nodes: oldNodes };
  const ok = newNodes.every((node) => node.ok);
  return json(ok ? 200 : 503, { phase: cacheConfig.phase, ok, clusters });
};
