// Vitest global setup: find (or install) memcached and openssl once, before any test file,
// so a machine without them fails with one actionable line instead of in every test.

import { ensureMemcached, ensureOpenssl } from "../scripts/ensure-memcached.ts";

export default async function setup(): Promise<void> {
  await ensureMemcached();
  await ensureOpenssl();
}
