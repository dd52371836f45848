// Vitest global setup: find (or install) memcached, openssl, the Python clients of the interop
// tests and Chromium (the live view's browser test) once, before any test file, so a machine
// without them fails with one actionable line instead of in every test.

import {
  ensureChromium,
  ensureMemcached,
  ensureOpenssl,
  ensurePythonClients,
} from "../tools/binaries.ts";

export default async function setup(): Promise<void> {
  await ensureMemcached();
  await ensureOpenssl();
  await ensurePythonClients();
  await ensureChromium();
}
