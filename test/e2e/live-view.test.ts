// The live view in a real browser: headless Chromium (test/helpers/browser.ts) opens the page of
// the local stack (startStack with liveView, as `npm run dev` runs it) during a cutover. Old is
// warmed by the app in its single-cluster phase; the fallback phase then reads every product
// from old once (HIT-FALLBACK, copied into new) and from new after that (HIT). Every number is
// read from the page's DOM (data-* attributes the page writes beside what it draws); screenshots
// go to test/artifacts/ for a person to look at.
//
// Load: patient cache timeouts (startTestStack); every wait is for a condition on the page, with
// a deadline of tens of seconds, so a loaded machine makes it slower, not red.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Page } from "playwright-core";
import { describe, expect } from "vitest";
import {
  cutoverTest,
  mapLimit,
  originStats,
  range,
  resetOriginStats,
  tally,
  waitFor,
} from "../helpers/app.ts";
import { launchBrowser } from "../helpers/browser.ts";

const warmIds = range(1, 200).map(String);
const parallel = 8;
const artifacts = path.resolve(import.meta.dirname, "../artifacts");
/** How long the page may take to show what happened (it updates once a second). */
const pageTimeoutMs = 30_000;

const it = cutoverTest(warmIds, parallel, { liveView: true })
  // biome-ignore lint/correctness/noEmptyPattern: no dependencies
  .extend("browser", { scope: "file" }, async ({}, { onCleanup }) => {
    const browser = await launchBrowser();
    onCleanup(() => browser.close());
    return browser;
  })
  .extend("page", { scope: "file" }, async ({ browser }) => browser.context.newPage());

it.beforeAll(async ({ app, stack }) => {
  expect((await app.health()).status).toBe(200);
  expect(stack.liveView).toBeDefined();
}, 120_000);

/** A number the page wrote into a data-* attribute; undefined when empty. */
async function pageNumber(page: Page, selector: string, attribute: string) {
  const text = await page.locator(selector).first().getAttribute(attribute);
  return text === null || text === "" ? undefined : Number(text);
}

const series = (page: Page, name: string, attribute: "total" | "recent" | "last") =>
  pageNumber(page, `[data-series="${name}"]`, `data-${attribute}`);

/** Waits until `check` holds for what the page shows; fails naming what it last saw. */
async function waitForPage(what: string, check: () => Promise<boolean>): Promise<void> {
  await waitFor(what, async () => ((await check()) ? true : undefined), {
    timeoutMs: pageTimeoutMs,
    intervalMs: 200,
  });
}

/** The page's numbers in one object, for assertions that show the whole picture. */
async function shown(page: Page) {
  const numbers: Record<string, number | undefined> = {};
  for (const name of ["HIT", "HIT-FALLBACK", "MISS", "BYPASS", "origin", "backfills"]) {
    numbers[name] = await series(page, name, "total");
  }
  return numbers;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, name), fullPage: true });
}

describe("the live view of a cutover, in headless Chromium", () => {
  it("shows HIT rising over HIT-FALLBACK while the origin stays at zero", {
    timeout: 120_000,
  }, async ({ app, stack, page }) => {
    const live = stack.liveView!;
    // Nobody has looked yet: no stats were asked for.
    expect(live.samplingRounds()).toBe(0);
    await resetOriginStats(stack.originUrl);

    await page.goto(live.url);
    await waitForPage("both clusters up, the phase and the origin's count known", async () => {
      const phase = await page.locator("#phase").getAttribute("data-phase");
      const up = await page.locator('[data-cluster][data-up="true"]').count();
      const originKnown = await page.locator('[data-series="origin"]').getAttribute("data-known");
      return phase === "fallback" && up === 2 && originKnown === "true";
    });
    expect(live.viewers()).toBe(1);
    expect(live.samplingRounds()).toBeGreaterThan(0);
    expect(await pageNumber(page, '[data-cluster="old"]', "data-items")).toBeGreaterThanOrEqual(
      warmIds.length,
    );
    expect(await page.locator("#step").getAttribute("data-code")).toBe("wait"); // new is cold
    await expect(page.locator("#step b").textContent()).resolves.toBe("new — not safe yet");

    // Every product once: all from old, copied into new.
    const first = await mapLimit(warmIds, parallel, (id) => app.getProduct(id));
    expect(tally(first.map((r) => `${r.status} ${r.cache}`))).toEqual({
      "200 HIT-FALLBACK": warmIds.length,
    });
    await waitForPage("the page counting every HIT-FALLBACK", async () => {
      return (await series(page, "HIT-FALLBACK", "total")) === warmIds.length;
    });
    expect(await shown(page)).toEqual({
      HIT: 0,
      "HIT-FALLBACK": warmIds.length,
      MISS: 0,
      BYPASS: 0,
      origin: 0,
      backfills: warmIds.length,
    });

    // Then from new, round after round, until the last seconds hold HITs only.
    let hits = 0;
    await waitForPage("HIT over HIT-FALLBACK in the last 10 s", async () => {
      const round = await mapLimit(warmIds, parallel, (id) => app.getProduct(id));
      expect(tally(round.map((r) => `${r.status} ${r.cache}`))).toEqual({
        "200 HIT": warmIds.length,
      });
      hits += round.length;
      const recentHit = (await series(page, "HIT", "recent")) ?? 0;
      const recentFallback = (await series(page, "HIT-FALLBACK", "recent")) ?? 0;
      return recentHit > 0 && recentFallback === 0;
    });
    await waitForPage("the page counting every HIT", async () => {
      return (await series(page, "HIT", "total")) === hits;
    });
    expect(await shown(page)).toEqual({
      HIT: hits,
      "HIT-FALLBACK": warmIds.length,
      MISS: 0,
      BYPASS: 0,
      origin: 0,
      backfills: warmIds.length,
    });
    expect(await series(page, "share-new", "recent")).toBe(100);
    expect(await series(page, "share-new", "total")).toBeCloseTo(
      (100 * hits) / (hits + warmIds.length),
      6,
    );
    // The origin's own count agrees: nothing reached it.
    expect(await originStats(stack.originUrl)).toEqual({ reads: 0, writes: 0 });
    await waitForPage("new holding every product", async () => {
      const items = await pageNumber(page, '[data-cluster="new"]', "data-items");
      return items !== undefined && items >= warmIds.length;
    });
    await screenshot(page, "live-view.png");
  });

  it("says so in the old cluster's panel when old dies, and keeps counting", {
    timeout: 60_000,
  }, async ({ app, page, oldMemcached }) => {
    const hitsBefore = (await series(page, "HIT", "total")) ?? 0;
    await oldMemcached.stop();
    await waitForPage("the old panel saying DOWN", async () => {
      const up = await page.locator('[data-cluster="old"]').getAttribute("data-up");
      return up === "false";
    });
    await expect(page.locator('[data-cluster="old"] .state').textContent()).resolves.toMatch(
      /DOWN/,
    );
    expect(await page.locator('[data-cluster="new"]').getAttribute("data-up")).toBe("true");

    // The app and the page go on: new answers, the page counts it.
    const reads = await mapLimit(warmIds.slice(0, 50), parallel, (id) => app.getProduct(id));
    expect(tally(reads.map((r) => `${r.status} ${r.cache}`))).toEqual({ "200 HIT": 50 });
    await waitForPage("the page counting the HITs after old died", async () => {
      return (await series(page, "HIT", "total")) === hitsBefore + 50;
    });
    const updated = Number(await page.locator("body").getAttribute("data-updated-ms"));
    await waitForPage("another update", async () => {
      return Number(await page.locator("body").getAttribute("data-updated-ms")) > updated;
    });
    await screenshot(page, "live-view-old-down.png");
  });

  it("stops asking the clusters once no page is open", async ({ stack, page }) => {
    const live = stack.liveView!;
    await page.close();
    await waitFor("the viewer gone", async () => (live.viewers() === 0 ? true : undefined));
    const rounds = live.samplingRounds();
    // Three sampling periods without a page: no round runs.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(live.samplingRounds()).toBe(rounds);
  });
});
