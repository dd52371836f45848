// Vitest fixtures for tests against real memcached processes. A test names what it needs in its
// context — `it("...", async ({ client }) => ...)` — and gets it started on free ports; whatever
// a fixture started is stopped by PID (or closed) in its teardown, also when the test fails.
//
// For the file (started on first use, shared by the file's tests and hooks, ended with the file):
//   memcached, client                  one memcached, a client of it
//   newMemcached, newClient,
//   oldMemcached, oldClient            two clusters for the cutover, a client of each
//   certs, tlsMemcached                a throwaway CA + server certificate, memcached serving TLS
//   serverlessStandIn                  the ElastiCache Serverless stand-in (TLS) before `memcached`
//   spawnFileMemcached(options?)       more memcached processes (for setup in beforeAll)
//   python                             the Python agent: pymemcache and pylibmc in one process
//   origin                             the demo origin (infra/local/origin.ts) on a free port
// For one test (ended with it):
//   faultProxy                         a fault proxy in front of `memcached`
//   spawnMemcached(options?)           more memcached processes
//   openClient(servers, options?)      more clients
//   extraClient(options?)              another client of `memcached`
//   tlsClient(options)                 a client of `tlsMemcached` (the TLS options are the test's)
//   startStandIn(options?)             more stand-ins before `memcached` (e.g. a lower line limit)
//   serverlessClient(options?)         a client of `serverlessStandIn` trusting the test CA
//
// Every client gets the patient timeouts below unless the test passes its own.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test as base } from "vitest";
import { startOrigin } from "../../infra/local/origin.ts";
import { type ClientOptions, MemcacheClient } from "../../lib/memcache/client.ts";
import { type FaultProxy, startFaultProxy } from "../../tools/fault-proxy.ts";
import {
  type MemcachedProcess,
  type StartMemcachedOptions,
  startMemcached,
} from "../../tools/memcached.ts";
import {
  type ServerlessStandIn,
  type ServerlessStandInOptions,
  startServerlessStandIn,
} from "../../tools/serverless-standin.ts";
import { makeTestCertificates } from "../../tools/tls.ts";
import { startPythonAgent } from "./python.ts";

/**
 * The cache timeout for tests that check what happens rather than how fast: long enough that a
 * request is answered, not timed out, on a machine whose every core is busy (other test files,
 * other work). Tests of timeouts set their own, shorter ones and say what load they assume.
 */
export const patientTimeoutMs = 2_000;

/** Options of every client the fixtures open, before the test's own. */
const patientClient = { timeoutMs: patientTimeoutMs, connectTimeoutMs: patientTimeoutMs };

// Vitest reads a fixture's dependencies from its first parameter, which must be a destructuring
// pattern: `{}` is how a fixture says it needs none. A fixture registers one cleanup at most.
type Cleanup = { onCleanup: (fn: () => void | Promise<void>) => void };

/** Starts memcached processes; the fixture's cleanup stops every one of them by PID. */
function memcachedStarter({ onCleanup }: Cleanup) {
  const processes: MemcachedProcess[] = [];
  onCleanup(async () => {
    await Promise.all(processes.map((memcached) => memcached.stop()));
  });
  return async (options?: StartMemcachedOptions): Promise<MemcachedProcess> => {
    const memcached = await startMemcached(options);
    processes.push(memcached);
    return memcached;
  };
}

/** Opens clients with the patient timeouts; the fixture's cleanup closes every one of them. */
function clientOpener({ onCleanup }: Cleanup) {
  const clients: MemcacheClient[] = [];
  onCleanup(() => {
    for (const client of clients) client.close();
  });
  return (servers: string, options: Partial<ClientOptions> = {}): MemcacheClient => {
    const client = new MemcacheClient({ ...patientClient, ...options, servers });
    clients.push(client);
    return client;
  };
}

/** Starts stand-ins before `target` with the test certificate; the cleanup closes every one. */
function standInStarter(
  target: MemcachedProcess,
  tls: { certFile: string; keyFile: string },
  { onCleanup }: Cleanup,
) {
  const standIns: ServerlessStandIn[] = [];
  onCleanup(async () => {
    await Promise.all(standIns.map((standIn) => standIn.close()));
  });
  return async (options: Partial<ServerlessStandInOptions> = {}): Promise<ServerlessStandIn> => {
    const standIn = await startServerlessStandIn({ target, tls, ...options });
    standIns.push(standIn);
    return standIn;
  };
}

// biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
const oneMemcached = async ({}, cleanup: Cleanup) => memcachedStarter(cleanup)();

export const test = base
  .extend("memcached", { scope: "file" }, oneMemcached)
  .extend("client", { scope: "file" }, async ({ memcached }, cleanup) =>
    clientOpener(cleanup)(memcached.endpoint),
  )
  .extend("newMemcached", { scope: "file" }, oneMemcached)
  .extend("oldMemcached", { scope: "file" }, oneMemcached)
  .extend("newClient", { scope: "file" }, async ({ newMemcached }, cleanup) =>
    clientOpener(cleanup)(newMemcached.endpoint),
  )
  .extend("oldClient", { scope: "file" }, async ({ oldMemcached }, cleanup) =>
    clientOpener(cleanup)(oldMemcached.endpoint),
  )
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("certs", { scope: "file" }, async ({}, { onCleanup }) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "memcached-tls-"));
    onCleanup(() => rm(dir, { recursive: true, force: true }));
    return makeTestCertificates(dir);
  })
  .extend("tlsMemcached", { scope: "file" }, async ({ certs }, cleanup) =>
    memcachedStarter(cleanup)({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } }),
  )
  .extend("serverlessStandIn", { scope: "file" }, async ({ memcached, certs }, cleanup) =>
    standInStarter(memcached, certs, cleanup)(),
  )
  .extend("faultProxy", async ({ memcached }, { onCleanup }): Promise<FaultProxy> => {
    const proxy = await startFaultProxy(memcached);
    onCleanup(() => proxy.close());
    return proxy;
  })
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("python", { scope: "file" }, async ({}, { onCleanup }) => {
    const python = await startPythonAgent();
    onCleanup(() => python.close());
    return python;
  })
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("origin", { scope: "file" }, async ({}, { onCleanup }) => {
    const origin = await startOrigin({ port: 0 });
    onCleanup(() => origin.close());
    return origin;
  })
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("spawnFileMemcached", { scope: "file" }, async ({}, cleanup) => memcachedStarter(cleanup))
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("spawnMemcached", async ({}, cleanup) => memcachedStarter(cleanup))
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies (see above)
  .extend("openClient", async ({}, cleanup) => clientOpener(cleanup))
  .extend("extraClient", async ({ memcached, openClient }) => {
    return (options: Partial<ClientOptions> = {}) => openClient(memcached.endpoint, options);
  })
  .extend("tlsClient", async ({ tlsMemcached, openClient }) => {
    return (options: Partial<ClientOptions>) => openClient(tlsMemcached.endpoint, options);
  })
  .extend("startStandIn", async ({ memcached, certs }, cleanup) =>
    standInStarter(memcached, certs, cleanup),
  )
  .extend("serverlessClient", async ({ serverlessStandIn, certs, openClient }) => {
    return (options: Partial<ClientOptions> = {}) =>
      openClient(serverlessStandIn.endpoint, {
        elastiCacheServerless: true,
        tls: { ca: certs.caPem },
        ...options,
      });
  });

export const it = test;
