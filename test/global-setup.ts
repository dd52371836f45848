// Vitest global setup: find (or install) memcached, openssl and the Python clients of the
// interop tests once, before any test file, so a machine without them fails with one actionable
// line instead of in every test.

import { ensureMemcached, ensureOpenssl, ensurePythonClients } from "../tools/binaries.ts";

export default async function setup(): Promise<void> {
  await ensureMemcached();
  await ensureOpenssl();
  await ensurePythonClients();
}
