// What a brand-new client (a cold Lambda) sends before its first answer: the meta-protocol probe
// (`version`, `mn`) rides in the same write as the first read, so cache-aside's first hit costs
// one request/reply exchange. Counted with a recording relay in front of a real memcached; the
// servers whose meta protocol differs (1.6.6) or is missing (1.5) are scripted fakes.

import { afterAll, afterEach, describe, expect, vi } from "vitest";
import { CacheAside } from "../../lib/cache/cacheAside.ts";
import { clientStore } from "../../lib/cache/store.ts";
import { MemcacheClient } from "../../lib/memcache/client.ts";
import {
  checkCommandStream,
  type RecordingRelay,
  startRecordingRelay,
} from "../../tools/recording-relay.ts";
import { answerLines, type FakeServer, startFakeServer } from "../helpers/fake-server.ts";
import { it, patientTimeoutMs } from "../helpers/fixtures.ts";

/** Straight to memcached (not recorded), for setup and inspection: the fixtures' `client`. */
let seeder: MemcacheClient;
/** In front of the file's memcached (a fixture). */
let relay: RecordingRelay;
const opened: Array<{ close(): unknown }> = [];

/** A brand-new client (a cold Lambda), closed after the test. */
function newClient(endpoint: string): MemcacheClient {
  const client = new MemcacheClient({ servers: endpoint, timeoutMs: patientTimeoutMs });
  opened.push(client);
  return client;
}

/** The verbs each connection sent, in order. */
function verbs(streams: Buffer[]): string[][] {
  return streams.map((stream) => {
    const check = checkCommandStream(stream);
    expect(check.errors).toEqual([]);
    return check.commands.map((command) => command.verb);
  });
}

it.beforeAll(async ({ memcached, client }) => {
  seeder = client;
  relay = await startRecordingRelay(memcached);
});

afterEach(() => {
  for (const client of opened.splice(0)) client.close();
  relay.clear();
});

afterAll(async () => {
  await relay?.close();
});

describe("a brand-new client and cache-aside", () => {
  it("serve the first getOrLoad hit after one exchange: probe and read share the first write", async () => {
    await seeder.set("cold:hit", { id: 1 });
    const client = newClient(relay.endpoint);
    const cache = new CacheAside(clientStore(client));
    const loader = vi.fn(async () => ({ id: 2 }));

    const result = await cache.getOrLoad("cold:hit", loader, { ttlSeconds: 60 });

    expect(result).toEqual({ status: "HIT", value: { id: 1 } });
    expect(loader).not.toHaveBeenCalled();
    expect(relay.exchanges()).toEqual([1]);
    expect(verbs(relay.streams())).toEqual([["version", "mn", "gets"]]);
    // What the probe learned is kept for the connection: the next read takes a meta lease.
    expect(client.nodes[0]!.metaSupport).toBe(true);
    expect(client.nodes[0]!.serverVersion).toMatch(/^1\.6\.\d+/);
    relay.clear();
    expect(await cache.getOrLoad("cold:hit", loader)).toEqual({ status: "HIT", value: { id: 1 } });
    expect(verbs(relay.streams())).toEqual([["mg"]]);
  });

  it("take a meta lease on a cold miss once the pipelined probe has answered, and load once", async () => {
    const client = newClient(relay.endpoint);
    const cache = new CacheAside(clientStore(client));
    const loader = vi.fn(async () => "loaded");

    expect(await cache.getOrLoad("cold:miss", loader, { ttlSeconds: 60 })).toEqual({
      status: "MISS",
      value: "loaded",
    });
    expect(await cache.getOrLoad("cold:miss", loader)).toEqual({ status: "HIT", value: "loaded" });

    expect(loader).toHaveBeenCalledTimes(1);
    const [sent] = verbs(relay.streams());
    expect(sent).toEqual(["version", "mn", "gets", "mg", "ms", "mg"]);
    expect(await seeder.get("cold:miss")).toBe("loaded");
  });

  it("read an item another client is loading (a vivified meta placeholder) as a wait, not a hit", async () => {
    const loader = vi.fn(async () => "theirs");
    // Another client wins the lease: memcached now holds an empty flags-0 placeholder.
    const winner = await seeder.metaGet("cold:placeholder", ["v", "f", "c", "N30"]);
    expect("W" in winner.flags).toBe(true);
    const cache = new CacheAside(clientStore(newClient(relay.endpoint)), { maxWaitMs: 50 });

    const result = await cache.getOrLoad("cold:placeholder", loader, { ttlSeconds: 60 });

    // The plain gets saw an empty value; the lease read that followed saw someone else's lease.
    expect(result.status).toBe("MISS");
    expect(verbs(relay.streams())[0]!.slice(0, 4)).toEqual(["version", "mn", "gets", "mg"]);
  });

  it("send no probe on a client that already knows the server", async () => {
    await seeder.set("cold:warm", "v");
    const client = newClient(relay.endpoint);
    const cache = new CacheAside(clientStore(client));
    await cache.getOrLoad("cold:warm", async () => "x");
    relay.clear();

    await cache.getOrLoad("cold:warm", async () => "x");
    await client.get("cold:warm");

    expect(verbs(relay.streams())).toEqual([["mg", "get"]]);
  });

  it("learn meta support in the first write of a plain get too, when hasMeta() is asked first", async () => {
    await seeder.set("cold:plain", "v");
    const client = newClient(relay.endpoint);

    const [meta, value] = await Promise.all([
      client.hasMeta("cold:plain"),
      client.get("cold:plain"),
    ]);

    expect([meta, value]).toEqual([true, "v"]);
    expect(relay.exchanges()).toEqual([1]);
  });
});

describe("servers whose meta protocol this client does not speak", () => {
  let fakes: FakeServer[] = [];

  afterEach(async () => {
    await Promise.all(fakes.map((fake) => fake.close()));
    fakes = [];
  });

  /**
   * A scripted memcached of `version` whose `mn` answers `noop`: an empty cache for gets/get,
   * STORED for add (its data line gets no answer of its own). Records every line it receives.
   */
  async function fakeMemcached(version: string, noop: string): Promise<[FakeServer, string[]]> {
    const lines: string[] = [];
    let dataLine = false;
    const fake = await startFakeServer(
      answerLines((line) => {
        lines.push(line);
        if (dataLine) {
          dataLine = false;
          return undefined;
        }
        const verb = line.split(" ")[0];
        if (verb === "version") return `VERSION ${version}\r\n`;
        if (verb === "mn") return `${noop}\r\n`;
        if (verb === "get" || verb === "gets") return "END\r\n";
        if (verb === "add") {
          dataLine = true;
          return "STORED\r\n";
        }
        return "ERROR\r\n";
      }),
    );
    fakes.push(fake);
    return [fake, lines];
  }

  it.each([
    ["1.6.6 (meta replies of an older format)", "1.6.6", "MN"],
    ["1.6.9", "1.6.9", "MN"],
    ["1.5.22 (no meta protocol)", "1.5.22", "ERROR"],
  ])("use lock leases with %s and never send a meta command", async (_label, version, noop) => {
    const [fake, lines] = await fakeMemcached(version, noop);
    const client = newClient(fake.endpoint);
    const cache = new CacheAside(clientStore(client));

    const result = await cache.getOrLoad("cold:old", async () => "loaded", { ttlSeconds: 60 });

    expect(result).toEqual({ status: "MISS", value: "loaded" });
    expect(client.nodes[0]!.metaSupport).toBe(false);
    const sent = lines.map((line) => line.split(" ")[0]);
    expect(sent.slice(0, 4)).toEqual(["version", "mn", "gets", "gets"]);
    expect(sent).toContain("add");
    expect(sent.filter((verb) => /^m[gsdan]$/.test(verb!))).toEqual(["mn"]);
  });

  it("uses meta leases with a server whose version is not plain x.y.z but that answers mn", async () => {
    const [fake] = await fakeMemcached("1.6-managed", "MN");
    const client = newClient(fake.endpoint);

    expect(await client.hasMeta()).toBe(true);
    expect(client.nodes[0]!.serverVersion).toBe("1.6-managed");
  });
});
