// GET /health: the cutover phase, each cluster's nodes and whether each answers right now.

import { type ClusterEndpoint, clusterAddresses } from "../lib/cache/config.ts";
import { formatAddress } from "../lib/memcache/address.ts";
import type { MemcacheClient, NodeHealth } from "../lib/memcache/client.ts";
import { cacheConfig, newClient, oldClient } from "./shared/cache.ts";
import { json, type Result } from "./shared/http.ts";

async function probe(client: MemcacheClient): Promise<Array<NodeHealth & { endpoint: string }>> {
  const nodes = await client.ping();
  return Object.entries(nodes).map(([endpoint, health]) => ({ endpoint, ...health }));
}

/** The configured addresses as `host:port` text (a configuration endpoint is one). */
function servers(cluster: ClusterEndpoint): string[] {
  return clusterAddresses(cluster).map(formatAddress);
}

export const handler = async (): Promise<Result> => {
  const [newNodes, oldNodes] = await Promise.all([
    probe(newClient),
    oldClient === undefined ? Promise.resolve(undefined) : probe(oldClient),
  ]);
  const clusters: Record<string, { servers: string[]; nodes: unknown[] }> = {
    new: { servers: servers(cacheConfig.newCluster), nodes: newNodes },
  };
  if (oldNodes !== undefined && cacheConfig.oldCluster !== undefined) {
    clusters.old = { servers: servers(cacheConfig.oldCluster), nodes: oldNodes };
  }
  const ok = newNodes.every((node) => node.ok);
  return json(ok ? 200 : 503, { phase: cacheConfig.phase, ok, clusters });
};
