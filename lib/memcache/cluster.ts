// The nodes of one cluster: a connection per node, keyed by host:port, and the consistent-hash
// ring over them. An update (from Auto Discovery) keeps the connections of nodes that stay,
// adds new ones (they connect lazily) and closes removed ones.

import { formatAddress, type NodeAddress } from "./address.ts";
import { Connection, type ConnectionOptions } from "./connection.ts";
import { MemcacheNoNodesError } from "./errors.ts";
import { HashRing } from "./hashring.ts";

export class NodeSet {
  private byId = new Map<string, Connection>();
  private ring: HashRing<Connection> = new HashRing([]);
  private single: Connection | undefined;
  private readonly options: ConnectionOptions;

  /** `options` must be complete and checked (the client does that). */
  constructor(options: ConnectionOptions, addresses: readonly NodeAddress[] = []) {
    this.options = options;
    if (addresses.length > 0) this.update(addresses);
  }

  get nodes(): Connection[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * The node that owns `key`. Keys of a dead node are NOT moved to another node: the caller gets
   * the dead node, which refuses at once (MemcacheNodeDeadError), so the cache reads as a miss and the
   * origin answers. Remapping would put a second copy of the key on another node, and after the
   * dead node returns its stale copy would be read again, missing every invalidation since.
   */
  nodeFor(key: string): Connection {
    if (this.single !== undefined) return this.single;
    const node = this.ring.get(key);
    if (node === undefined)
      throw new MemcacheNoNodesError("the cluster has no nodes (discovery pending or empty)");
    return node;
  }

  /** Replaces the node list; returns what changed. */
  update(addresses: readonly NodeAddress[]): { added: string[]; removed: string[] } {
    const next = new Map<string, Connection>();
    const added: string[] = [];
    for (const address of addresses) {
      const id = formatAddress(address);
      if (next.has(id)) continue;
      let node = this.byId.get(id);
      if (node !== undefined && node.address !== (address.ip ?? address.host)) {
        node.close(); // same name, new IP (node replaced): reconnect to the new address
        node = undefined;
      }
      if (node === undefined) {
        node = new Connection(address, this.options);
        added.push(id);
      }
      next.set(id, node);
    }
    const removed: string[] = [];
    for (const [id, node] of this.byId) {
      if (next.get(id) !== node) {
        node.retire();
        if (!next.has(id)) removed.push(id);
      }
    }
    this.byId = next;
    const nodes = [...next.values()];
    this.single = nodes.length === 1 ? nodes[0] : undefined;
    this.ring = new HashRing(
      nodes.map((node) => ({ host: node.host, port: node.port, value: node })),
    );
    return { added, removed };
  }

  close(): void {
    for (const node of this.byId.values()) node.close();
  }
}
