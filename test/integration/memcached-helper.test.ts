// The memcached launcher (tools/memcached.ts) itself, against real processes: readiness,
// pause/resume, restart on the same port, stop, start failures, and TLS with certificate
// verification. Where a test is not about starting or stopping, its memcached is a fixture's.

import net from "node:net";
import tls from "node:tls";
import { describe, expect } from "vitest";
import { startMemcached } from "../../tools/memcached.ts";
import { it } from "../helpers/fixtures.ts";

/** Resolves with the first reply line on `socket`, or "" if none arrives within `withinMs`. */
function firstLine(socket: net.Socket, withinMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const finish = (line: string) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", reject);
      resolve(line);
    };
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      const end = buffered.indexOf("\r\n");
      if (end >= 0) finish(buffered.slice(0, end));
    };
    const timer = setTimeout(finish, withinMs, "");
    socket.on("data", onData);
    socket.once("error", reject);
  });
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

async function versionOverTcp(port: number): Promise<string> {
  const socket = await connectTcp(port);
  try {
    const reply = firstLine(socket);
    socket.write("version\r\n");
    return await reply;
  } finally {
    socket.destroy();
  }
}

function connectTls(port: number, ca: string, servername: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername });
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", (error) => {
      socket.destroy();
      reject(error);
    });
  });
}

describe("startMemcached", () => {
  it.afterEach(({ memcached }) => {
    memcached.resume(); // a failed pause test must not leave the server stopped for the next
  });

  it("starts a server on a free loopback port that answers the text protocol", async ({
    memcached: server,
  }) => {
    expect(server.host).toBe("127.0.0.1");
    expect(server.endpoint).toBe(`127.0.0.1:${server.port}`);
    expect(server.pid).toBeGreaterThan(0);
    expect(await versionOverTcp(server.port)).toMatch(/^VERSION 1\.6\./);
  });

  it("stops answering while paused and answers the queued request after resume", async ({
    memcached: server,
  }) => {
    await server.pause();
    const socket = await connectTcp(server.port); // the kernel still accepts connections
    try {
      socket.write("version\r\n");
      expect(await firstLine(socket, 300)).toBe("");

      const reply = firstLine(socket);
      server.resume();
      expect(await reply).toMatch(/^VERSION /);
    } finally {
      socket.destroy();
    }
  });

  it("restarts on the same port with a new process", async ({ memcached: server }) => {
    const { port, pid } = server;
    await server.restart();
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(pid);
    expect(await versionOverTcp(port)).toMatch(/^VERSION /);
  });

  it("restarts a paused server", async ({ memcached: server }) => {
    await server.pause();
    await server.restart();
    expect(await versionOverTcp(server.port)).toMatch(/^VERSION /);
  });
});

describe("stopping", () => {
  it("refuses connections once stopped, and a second stop is a no-op", async () => {
    const server = await startMemcached();
    await server.stop();
    await expect(connectTcp(server.port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await server.stop();
  });

  it("waits for the process to exit after kill with a terminating signal", async () => {
    const server = await startMemcached();
    await server.kill("SIGKILL");
    await expect(connectTcp(server.port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await server.stop();
  });

  it("restarts a server that was stopped", async () => {
    const server = await startMemcached();
    try {
      await server.stop();
      await server.restart();
      expect(await versionOverTcp(server.port)).toMatch(/^VERSION /);
    } finally {
      await server.stop();
    }
  });
});

describe("start failures", () => {
  it("reports memcached's stderr and exit code when it cannot start", async () => {
    await expect(startMemcached({ args: ["--no-such-option"] })).rejects.toThrow(
      /exited with code \d+; stderr: .*no-such-option/s,
    );
  });

  it("fails with address in use when a fixed port is taken", async () => {
    const first = await startMemcached();
    try {
      await expect(startMemcached({ port: first.port })).rejects.toThrow(/Address already in use/);
      expect(await versionOverTcp(first.port)).toMatch(/^VERSION /);
    } finally {
      await first.stop();
    }
  });
});

describe("TLS", () => {
  it("serves TLS with a certificate the test CA verifies for memcached.test", async ({
    certs,
    tlsMemcached: server,
  }) => {
    expect(certs.serverName).toBe("memcached.test");
    const socket = await connectTls(server.port, certs.caPem, certs.serverName);
    try {
      expect(socket.authorized).toBe(true);
      const reply = firstLine(socket);
      socket.write("version\r\n");
      expect(await reply).toMatch(/^VERSION 1\.6\./);
    } finally {
      socket.destroy();
    }
  });

  it("fails the handshake when the server name does not match the certificate", async ({
    certs,
    tlsMemcached: server,
  }) => {
    await expect(connectTls(server.port, certs.caPem, "other.test")).rejects.toMatchObject({
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    });
  });
});
