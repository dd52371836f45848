// `npm run dev` (until the local serverless stack lands): starts memcached on 127.0.0.1:11211
// (or uses CACHE_NEW_ENDPOINT), runs the client through a few commands and prints what it sees.

import { MemcacheClient } from "../lib/memcache/client.ts";
import { safeKey } from "../lib/memcache/keys.ts";
import { type MemcachedProcess, startMemcached } from "../infra/local/memcached.ts";

let server: MemcachedProcess | undefined;
let endpoint = process.env.CACHE_NEW_ENDPOINT;
if (!endpoint) {
  server = await startMemcached({ port: 11211 }).catch((error: Error) => {
    console.error(`could not start memcached on 127.0.0.1:11211: ${error.message.split("\n")[0]}`);
    console.error("set CACHE_NEW_ENDPOINT=host:port to use a memcached that is already running");
    process.exit(1);
  });
  endpoint = server.endpoint;
}
const client = new MemcacheClient({ servers: endpoint });
try {
  console.log(`memcached ${endpoint}:`, await client.version());
  console.log("meta protocol:", await client.hasMeta());
  const key = safeKey("product 42 ✓", "demo:");
  await client.set(key, { id: 42, name: "demo product" }, { ttlSeconds: 60 });
  console.log(`get ${key} ->`, await client.get(key));
  await client.set("demo:counter", 0);
  await Promise.all(Array.from({ length: 10 }, () => client.incr("demo:counter")));
  console.log("demo:counter after 10 concurrent incr ->", await client.get("demo:counter"));
  console.log("hostile key is refused:", await client.get("a\r\ndelete x").catch((e: Error) => e.message));
} finally {
  client.close();
  await server?.stop();
}
