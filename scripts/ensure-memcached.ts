// `npm run ensure-memcached`: finds (or installs) memcached, openssl and the Python clients the
// way the tests and the local stack do, and prints their paths and memcached's version.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ensureMemcached, ensureOpenssl, ensurePythonClients } from "../tools/binaries.ts";

const execFileAsync = promisify(execFile);

try {
  const memcached = await ensureMemcached();
  const openssl = await ensureOpenssl();
  const python = await ensurePythonClients();
  const { stdout } = await execFileAsync(memcached, ["-V"]);
  console.log(memcached);
  console.log(stdout.trim());
  console.log(openssl);
  console.log(`${python} (pymemcache, pylibmc)`);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
}
