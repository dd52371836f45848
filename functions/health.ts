// GET /health: the cutover phase, each cluster's nodes and whether each answers right now.

import type { MemcacheClient, NodeHealth } from "../lib/memcache/client.ts";
import { cacheConfig, newClient, oldClient } from "./shared/cache.ts";
import { json, type Result } from "./shared/http.ts";

async function probe(client: MemcacheClient): Promise<Array<NodeHealth & { endpoint: string }>> {
  const nodes = await client.ping();
  return Object.entries(nodes).map(([endpoint, health]) => ({ endpoint, ...health }));
}

export const handler = async (): Promise<Result> => {
  const [newNodes, oldNodes] = await Promise.all([
    probe(newClient),
    oldClient === undefined ? Promise.resolve(undefined) : probe(oldClient),
  ]);
  const clusters: Record<string, { servers: string[]; nodes: unknown[] }> = {
    new: { servers: cacheConfig.newServers, nodes: newNodes },
  };
  if (oldNodes !== undefined) clusters.old = { servers: cacheConfig.oldServers, nodes: oldNodes };
  const ok = newNodes.every((node) => node.ok);
  return json(ok ? 200 : 503, { phase: cacheConfig.phase, ok, clusters });
};
