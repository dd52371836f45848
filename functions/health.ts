// GET /health: the cutover phase, each cluster's nodes and whether each answers right now.
// Why a node does not answer goes to the log, never into the body; a 503 (new does not answer)
// carries the phase and no addresses, like every 5xx of the app.

import { type ClusterEndpoint, clusterAddresses } from "../lib/cache/index.ts";
import { formatAddress, type MemcacheClient, type NodeHealth } from "../lib/index.ts";
import { cacheConfig, newClient, oldClient } from "./shared/cache.ts";
import { json, type Result, serverError } from "./shared/http.ts";

type NodeReport = Omit<NodeHealth, "error"> & { endpoint: string };

/** Each node's health; why a node failed is kept apart (`failures`) for the log. */
async function probe(
  client: MemcacheClient,
  failures: Record<string, string>,
): Promise<NodeReport[]> {
  const nodes = await client.ping();
  return Object.entries(nodes).map(([endpoint, { error, ...health }]) => {
    if (error !== undefined) failures[endpoint] = error;
    return { endpoint, ...health };
  });
}

/** The configured addresses as `host:port` text (a configuration endpoint is one). */
function servers(cluster: ClusterEndpoint): string[] {
  return clusterAddresses(cluster).map(formatAddress);
}

export const handler = async (): Promise<Result> => {
  const failures: Record<string, string> = {};
  const [newNodes, oldNodes] = await Promise.all([
    probe(newClient, failures),
    oldClient === undefined ? Promise.resolve(undefined) : probe(oldClient, failures),
  ]);
  const clusters: Record<string, { servers: string[]; nodes: unknown[] }> = {
    new: { servers: servers(cacheConfig.newCluster), nodes: newNodes },
  };
  if (oldNodes !== undefined && cacheConfig.oldCluster !== undefined) {
    clusters.old = { servers: servers(cacheConfig.oldCluster), nodes: oldNodes };
  }
  const ok = newNodes.every((node) => node.ok);
  if (!ok) {
    // The phase is no internal detail (the live view reads it from a 503 too); addresses are.
    return serverError(
      503,
      "cache unavailable",
      { phase: cacheConfig.phase, clusters, failures },
      { phase: cacheConfig.phase },
    );
  }
  if (Object.keys(failures).length > 0) {
    console.log(JSON.stringify({ level: "WARN", message: "old cluster nodes down", failures }));
  }
  return json(200, { phase: cacheConfig.phase, ok, clusters });
};
