// The demo origin over real HTTP on a free port: generated products, 404s, PUT versions,
// read/write counting, stats reset, body limits and the artificial delay.
//
// Load: the time bounds in this file hold on a loaded machine — the suite's other files running
// beside it plus two CPU-bound processes on 2 cores — and carry slack for that, no more.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type Origin, startOrigin } from "../../infra/local/origin.ts";

const delayMs = 5;
let origin: Origin;

async function call(
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${origin.url}${path}`, init);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function put(path: string, body: string): ReturnType<typeof call> {
  return call(path, { method: "PUT", headers: { "content-type": "application/json" }, body });
}

beforeAll(async () => {
  origin = await startOrigin({ port: 0, delayMs });
});

afterAll(async () => {
  await origin?.close();
});

beforeEach(async () => {
  await call("/_stats/reset", { method: "POST" });
});

describe("demo origin", () => {
  it("listens on the free port it picked", () => {
    expect(origin.port).toBeGreaterThan(0);
    expect(origin.url).toBe(`http://127.0.0.1:${origin.port}`);
  });

  it("answers health", async () => {
    expect(await call("/_health")).toEqual({ status: 200, body: { ok: true } });
  });

  it("serves a generated product and counts each GET as one read", async () => {
    const first = await call("/products/42");
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id: "42", name: "Product 42", version: 1 });
    expect(typeof first.body.price).toBe("number");
    expect(typeof first.body.updatedAt).toBe("string");
    // Deterministic: the same product every time (and in every run).
    expect((await call("/products/42")).body).toEqual(first.body);
    expect((await call("/products/100000")).status).toBe(200);
    expect(origin.stats()).toEqual({ reads: 3, writes: 0 });
    expect(await call("/_stats")).toEqual({ status: 200, body: { reads: 3, writes: 0 } });
  });

  it.each(["0", "100001", "-1", "1.5", "01", "abc", "a%20b", "%E2%9C%93"])(
    "answers 404 for unknown id %s and still counts the read",
    async (raw) => {
      const { status, body } = await call(`/products/${raw}`);
      expect(status).toBe(404);
      expect(body).toEqual({ error: "product not found", id: decodeURIComponent(raw) });
      expect(origin.stats()).toEqual({ reads: 1, writes: 0 });
    },
  );

  it("answers 400 for a malformed escape in the id", async () => {
    const { status } = await call("/products/%E0%A4%A");
    expect(status).toBe(400);
  });

  it("PUT stores the body with the next version and a later GET returns it", async () => {
    const before = await call("/products/7");
    const written = await put("/products/7", JSON.stringify({ name: "Renamed", price: 12.5 }));
    expect(written.status).toBe(200);
    expect(written.body).toMatchObject({ id: "7", name: "Renamed", price: 12.5, version: 2 });
    expect(written.body.updatedAt).not.toBe(before.body.updatedAt);

    expect((await call("/products/7")).body).toEqual(written.body);
    const again = await put("/products/7", JSON.stringify({ name: "Again", id: "x", version: 99 }));
    expect(again.body).toMatchObject({ id: "7", name: "Again", version: 3 });
    expect(again.body).not.toHaveProperty("price");
    expect(origin.stats()).toEqual({ reads: 2, writes: 2 });
  });

  it("PUT creates an id that did not exist, at version 1, under its decoded id", async () => {
    expect((await call("/products/new%20one")).status).toBe(404);
    const created = await put("/products/new%20one", JSON.stringify({ name: "New" }));
    expect(created).toMatchObject({ status: 200, body: { id: "new one", version: 1 } });
    expect((await call("/products/new%20one")).body).toEqual(created.body);
  });

  it("resets the stats", async () => {
    await call("/products/1");
    await put("/products/1", "{}");
    expect(origin.stats()).toEqual({ reads: 1, writes: 1 });
    expect(await call("/_stats/reset", { method: "POST" })).toEqual({
      status: 200,
      body: { reads: 0, writes: 0 },
    });
    expect(await call("/_stats")).toEqual({ status: 200, body: { reads: 0, writes: 0 } });
  });

  it("refuses a body over 64 KiB with 413 and stores nothing", async () => {
    const big = JSON.stringify({ name: "x".repeat(64 * 1024) });
    const { status, body } = await put("/products/3", big);
    expect(status).toBe(413);
    expect(body.error).toMatch(/too large/);
    expect((await call("/products/3")).body.version).toBe(1);
    expect(origin.stats().writes).toBe(0);
  });

  it("accepts a body of exactly 64 KiB", async () => {
    const prefix = '{"name":"';
    const suffix = '"}';
    const exact = `${prefix}${"y".repeat(64 * 1024 - prefix.length - suffix.length)}${suffix}`;
    expect(Buffer.byteLength(exact)).toBe(64 * 1024);
    expect((await put("/products/4", exact)).status).toBe(200);
  });

  it.each([
    ["invalid JSON", "{not json"],
    ["an empty body", ""],
    ["a JSON array", "[1,2]"],
    ["a JSON string", '"text"'],
  ])("refuses %s with 400", async (_, text) => {
    const { status } = await put("/products/5", text);
    expect(status).toBe(400);
    expect(origin.stats().writes).toBe(0);
  });

  it("answers 404 for unknown routes and 405 for other methods on a product", async () => {
    expect((await call("/nothing")).status).toBe(404);
    expect((await call("/products/1", { method: "DELETE" })).status).toBe(405);
  });

  it("applies the delay to every product request", async () => {
    const slow = await startOrigin({ port: 0, delayMs: 60 });
    try {
      for (const [path, init] of [
        ["/products/1", {}],
        ["/products/nope", {}],
        ["/products/1", { method: "PUT", body: "{}" }],
      ] as const) {
        const started = performance.now();
        await (await fetch(`${slow.url}${path}`, init)).arrayBuffer();
        // Timers may fire up to a millisecond early relative to performance.now().
        expect(performance.now() - started).toBeGreaterThanOrEqual(59);
      }
      expect(slow.stats()).toEqual({ reads: 2, writes: 1 });
    } finally {
      await slow.close();
    }
  });

  it("close() is idempotent and drops pending delayed replies", async () => {
    const slow = await startOrigin({ port: 0, delayMs: 10_000 });
    const pending = fetch(`${slow.url}/products/1`).then(
      () => "answered",
      () => "failed",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    await Promise.all([slow.close(), slow.close()]);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await pending).toBe("failed");
  });
});
