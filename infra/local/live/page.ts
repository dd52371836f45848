/// <reference lib="dom" />
// The live view's script, bundled with uPlot by server.ts (esbuild) and run in the browser: follows
// GET /events, keeps the last five minutes by second, draws the charts and writes every number
// into the DOM too (data-* attributes), so the page reads the same to a person and to a test.

import uPlot from "uplot";
import type { ClusterPanel, LiveRow, LiveUpdate } from "./server.ts";

const windowSeconds = 300;
const recentSeconds = 10;
const colors = {
  HIT: "#2f9e44",
  "HIT-FALLBACK": "#f08c00",
  MISS: "#1c7ed6",
  BYPASS: "#e03131",
  origin: "#e8590c",
  share: "#5f3dc4",
  backfills: "#f08c00",
  tombstones: "#495057",
  new: "#5f3dc4",
  old: "#868e96",
} as const;

const rows = new Map<number, LiveRow>();
let last: LiveUpdate | undefined;

type Row = LiveRow;
interface StatDef {
  key: string;
  label: string;
  color: string;
  /** The value of one second; null when unknown there. */
  value: (row: Row) => number | null;
  /** How the total over several seconds is shown: a sum (default) or a share of reads. */
  share?: boolean;
}

const readsOf = (row: Row) =>
  row.reads.HIT + row.reads["HIT-FALLBACK"] + row.reads.MISS + row.reads.BYPASS;
/** Reads new answered: HIT, except in "prepare", where reads go to old. */
const newAnswers = (row: Row) => (last?.phase === "prepare" ? 0 : row.reads.HIT);

const stats: StatDef[] = [
  { key: "HIT", label: "HIT", color: colors.HIT, value: (r) => r.reads.HIT },
  {
    key: "HIT-FALLBACK",
    label: "HIT-FALLBACK",
    color: colors["HIT-FALLBACK"],
    value: (r) => r.reads["HIT-FALLBACK"],
  },
  { key: "MISS", label: "MISS", color: colors.MISS, value: (r) => r.reads.MISS },
  { key: "BYPASS", label: "BYPASS", color: colors.BYPASS, value: (r) => r.reads.BYPASS },
  { key: "origin", label: "origin reads", color: colors.origin, value: (r) => r.origin },
  {
    key: "share-new",
    label: "answered by new",
    color: colors.share,
    value: (r) => newAnswers(r),
    share: true,
  },
  { key: "backfills", label: "backfills", color: colors.backfills, value: (r) => r.backfills },
  {
    key: "invalidations",
    label: "tombstones",
    color: colors.tombstones,
    value: (r) => r.invalidations,
  },
  { key: "errors-new", label: "errors new", color: colors.new, value: (r) => r.errors.new },
  { key: "errors-old", label: "errors old", color: colors.old, value: (r) => r.errors.old },
];

// ---- numbers ----

function windowRows(nowMs: number): { all: Row[]; recent: Row[]; lastRow: Row | undefined } {
  // The current second is still filling up: totals count it, the per-second rates do not.
  const current = Math.floor(nowMs / 1000);
  const all = [...rows.values()]
    .filter((row) => row.t > current - windowSeconds)
    .sort((a, b) => a.t - b.t);
  const complete = all.filter((row) => row.t < current);
  return { all, recent: complete.slice(-recentSeconds), lastRow: complete.at(-1) };
}

/**
 * Sum over the seconds of `list` where the value is known (null: none known), or for a share stat
 * the share of reads in %; `seconds` is how many seconds were known.
 */
function aggregate(def: StatDef, list: Row[]): { value: number | null; seconds: number } {
  let sum = 0;
  let seconds = 0;
  let reads = 0;
  for (const row of list) {
    const value = def.value(row);
    if (value === null) continue;
    seconds++;
    sum += value;
    reads += readsOf(row);
  }
  if (seconds === 0) return { value: null, seconds };
  if (def.share) return { value: reads === 0 ? null : (100 * sum) / reads, seconds };
  return { value: sum, seconds };
}

function format(value: number | null, share?: boolean): string {
  if (value === null) return "–";
  if (share) return `${value.toFixed(1)} %`;
  return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toFixed(1);
}

function renderStats(update: LiveUpdate): void {
  const box = document.getElementById("stats")!;
  const { all, recent, lastRow } = windowRows(update.nowMs);
  for (const def of stats) {
    let element = box.querySelector<HTMLElement>(`[data-series="${def.key}"]`);
    if (!element) {
      element = document.createElement("div");
      element.className = "stat";
      element.dataset.series = def.key;
      element.style.borderLeftColor = def.color;
      element.innerHTML = `<div class="label"></div><div class="total"></div><div class="recent"></div>`;
      element.querySelector(".label")!.textContent = def.label;
      box.append(element);
    }
    const total = aggregate(def, all).value;
    const recent10 = aggregate(def, recent);
    const lastValue = lastRow === undefined ? null : aggregate(def, [lastRow]).value;
    // Per second over the recent seconds, for the counts; the share itself for a share.
    const rate =
      recent10.value === null || def.share ? recent10.value : recent10.value / recent10.seconds;
    element.dataset.total = total === null ? "" : String(total);
    element.dataset.recent = recent10.value === null ? "" : String(recent10.value);
    element.dataset.last = lastValue === null ? "" : String(lastValue);
    if (def.key === "origin") element.dataset.known = String(update.origin.known);
    if (def.key === "invalidations") {
      // With one cluster an invalidation is a delete; in a cutover phase, a tombstone in new.
      element.querySelector(".label")!.textContent =
        update.phase === "single" ? "invalidations" : "tombstones";
    }
    element.querySelector(".total")!.textContent = format(total, def.share);
    element.querySelector(".recent")!.textContent =
      def.key === "origin" && !update.origin.known
        ? `unknown: ${update.origin.error ?? "no /_stats"}`
        : `${format(rate, def.share)}${def.share ? "" : "/s"} last 10 s`;
  }
}

function renderHeader(update: LiveUpdate): void {
  const phase = document.getElementById("phase")!;
  phase.dataset.phase = update.phase ?? "";
  phase.querySelector("b")!.textContent = update.phase ?? `unknown (${update.phaseError ?? "…"})`;
  const step = document.getElementById("step")!;
  step.dataset.code = update.recommendation.code;
  step.querySelector("b")!.textContent = update.recommendation.step;
  step.querySelector(".reason")!.textContent = update.recommendation.reason
    ? `(${update.recommendation.reason})`
    : "";
  const events = document.getElementById("events")!;
  events.dataset.total = String(update.events.total);
  events.querySelector("b")!.textContent = update.events.total.toLocaleString("en-US");
  const connection = document.getElementById("connection")!;
  connection.dataset.state = "live";
  connection.querySelector("b")!.textContent = new Date(update.nowMs).toLocaleTimeString("en-GB");
  document.body.dataset.connection = "live";
  document.body.dataset.updatedMs = String(update.nowMs);
}

function renderClusters(update: LiveUpdate): void {
  const box = document.getElementById("clusters")!;
  const panels: Array<[string, ClusterPanel | undefined]> = [
    ["new", update.clusters.new],
    ["old", update.clusters.old],
  ];
  for (const [name, panel] of panels) {
    let section = box.querySelector<HTMLElement>(`[data-cluster="${name}"]`);
    if (!section) {
      section = document.createElement("section");
      section.className = "card cluster";
      section.dataset.cluster = name;
      section.innerHTML = `<h2><span class="name"></span> <small class="endpoint"></small> · <span class="state"></span></h2>
        <div class="role"></div>
        <dl><div><dt>items</dt><dd class="items"></dd></div><div><dt>hit ratio</dt><dd class="ratio"></dd></div>
        <div><dt>evictions</dt><dd class="evictions"></dd></div><div><dt>connections</dt><dd class="connections"></dd></div></dl>
        <ul class="nodes"></ul>`;
      section.querySelector(".name")!.textContent = `${name} cluster`;
      box.append(section);
    }
    renderCluster(section, panel);
  }
}

function renderCluster(section: HTMLElement, panel: ClusterPanel | undefined): void {
  const text = (selector: string, value: string) => {
    section.querySelector(selector)!.textContent = value;
  };
  section.classList.toggle("absent", panel === undefined);
  if (panel === undefined) {
    section.dataset.up = "absent";
    text(".endpoint", "");
    text(".state", "none: one cluster");
    text(".role", "");
    for (const field of [".items", ".ratio", ".evictions", ".connections"]) text(field, "–");
    section.querySelector(".nodes")!.replaceChildren();
    return;
  }
  const sample = panel.sample;
  text(".endpoint", panel.endpoint);
  text(".role", panel.role ?? "");
  if (sample === undefined) {
    section.dataset.up = "unknown";
    text(".state", "checking…");
    return;
  }
  section.dataset.up = String(sample.up);
  const down = sample.nodes.filter((node) => !node.up);
  text(
    ".state",
    sample.up
      ? "up"
      : down.length === sample.nodes.length
        ? "DOWN: not answering"
        : `DEGRADED: ${down.length} of ${sample.nodes.length} nodes down`,
  );
  section.dataset.items = String(sample.items);
  section.dataset.hitRatio = sample.hitRatio === null ? "" : String(sample.hitRatio);
  section.dataset.evictions = String(sample.evictions);
  section.dataset.connections = String(sample.connections);
  const anyUp = down.length < sample.nodes.length;
  text(".items", anyUp ? sample.items.toLocaleString("en-US") : "–");
  text(
    ".ratio",
    anyUp && sample.hitRatio !== null ? `${(100 * sample.hitRatio).toFixed(1)} %` : "–",
  );
  text(".evictions", anyUp ? sample.evictions.toLocaleString("en-US") : "–");
  text(".connections", anyUp ? String(sample.connections) : "–");
  const list = section.querySelector(".nodes")!;
  list.replaceChildren(
    ...sample.nodes.map((node) => {
      const item = document.createElement("li");
      item.textContent = node.up
        ? `${node.endpoint}: ${node.items} items, ${node.getHits} hits (${node.vivified} of them vivified misses), ${node.getMisses} misses`
        : `${node.endpoint}: down (${node.error ?? "no answer"})`;
      return item;
    }),
  );
}

// ---- charts ----

interface ChartDef {
  id: string;
  /** Draw across seconds with no value (sampled series: a round may skip a second). */
  spanGaps?: boolean;
  series: Array<{ label: string; color: string; fill?: boolean; dash?: number[] }>;
  /** One array per series, aligned with the x values. */
  data: (list: Row[]) => Array<Array<number | null>>;
  yMax?: number;
}

/**
 * Reads stacked: each series is drawn as the running sum up to it, largest first, each filled
 * down to zero over the ones before it — a stacked area chart without a stacking plug-in.
 */
const readsChart: ChartDef = {
  id: "chart-reads",
  series: (["BYPASS", "MISS", "HIT-FALLBACK", "HIT"] as const).map((status) => ({
    label: status,
    color: colors[status],
    fill: true,
  })),
  data: (list) => {
    const cumulative = (upTo: number) =>
      list.map((row) => {
        const values = [row.reads.HIT, row.reads["HIT-FALLBACK"], row.reads.MISS, row.reads.BYPASS];
        return values.slice(0, upTo).reduce((a, b) => a + b, 0);
      });
    return [cumulative(4), cumulative(3), cumulative(2), cumulative(1)];
  },
};

const charts: ChartDef[] = [
  readsChart,
  {
    id: "chart-origin",
    series: [{ label: "origin reads", color: colors.origin, fill: true }],
    spanGaps: true,
    data: (list) => [list.map((row) => row.origin)],
  },
  {
    id: "chart-share",
    series: [{ label: "answered by new", color: colors.share }],
    data: (list) => [
      list.map((row) => {
        const reads = readsOf(row);
        return reads === 0 ? null : (100 * newAnswers(row)) / reads;
      }),
    ],
    yMax: 100,
  },
  {
    id: "chart-writes",
    series: [
      { label: "backfills", color: colors.backfills },
      { label: "tombstones", color: colors.tombstones, dash: [6, 4] },
    ],
    data: (list) => [list.map((row) => row.backfills), list.map((row) => row.invalidations)],
  },
  {
    id: "chart-errors",
    series: [
      { label: "new", color: colors.new },
      { label: "old", color: colors.old, dash: [6, 4] },
    ],
    data: (list) => [list.map((row) => row.errors.new), list.map((row) => row.errors.old)],
  },
  {
    id: "chart-items",
    spanGaps: true,
    series: [
      { label: "new", color: colors.new },
      { label: "old", color: colors.old, dash: [6, 4] },
    ],
    data: (list) => [list.map((row) => row.items.new), list.map((row) => row.items.old)],
  },
];

const plots = new Map<string, uPlot>();

/** "12:02:41" for an epoch second. */
function clockTime(t: number): string {
  return new Date(t * 1000).toLocaleTimeString("en-GB");
}

function chartWidth(id: string): number {
  return Math.max(280, document.getElementById(id)!.clientWidth);
}

function chartData(def: ChartDef, list: Row[]): uPlot.AlignedData {
  return [list.map((row) => row.t), ...def.data(list)] as uPlot.AlignedData;
}

function renderCharts(update: LiveUpdate): void {
  const current = Math.floor(update.nowMs / 1000);
  const list = windowRows(update.nowMs).all.filter((row) => row.t < current);
  for (const def of charts) {
    const data = chartData(def, list);
    const plot = plots.get(def.id);
    if (plot) {
      plot.setData(data);
      continue;
    }
    const options: uPlot.Options = {
      width: chartWidth(def.id),
      height: def.id === "chart-reads" ? 260 : 200,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        y: {
          range: (_u, _min, max) => [0, def.yMax ?? Math.max(4, Math.ceil(max * 1.1))],
        },
      },
      axes: [{ space: 90, values: (_u, splits) => splits.map(clockTime) }, { size: 50 }],
      series: [
        {},
        ...def.series.map((series) => ({
          label: series.label,
          stroke: series.color,
          width: 2,
          ...(series.fill ? { fill: series.color } : {}),
          ...(series.dash ? { dash: series.dash } : {}),
          spanGaps: def.spanGaps === true,
          points: { show: false },
        })),
      ],
    };
    const container = document.getElementById(def.id)!;
    plots.set(def.id, new uPlot(options, data, container));
    const key = document.createElement("div");
    key.className = "key";
    key.style.cssText = "display:flex;gap:14px;font-size:12px;color:#5d6678;margin-top:4px";
    for (const series of [...def.series].reverse()) {
      const item = document.createElement("span");
      item.innerHTML = `<i style="display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin-right:4px"></i>`;
      (item.firstChild as HTMLElement).style.background = series.color;
      item.append(series.label);
      key.append(item);
    }
    container.append(key);
  }
}

window.addEventListener("resize", () => {
  for (const [id, plot] of plots) plot.setSize({ width: chartWidth(id), height: plot.height });
});

// ---- the stream ----

function apply(update: LiveUpdate): void {
  last = update;
  for (const row of update.rows) rows.set(row.t, row);
  const oldest = Math.floor(update.nowMs / 1000) - windowSeconds;
  for (const t of rows.keys()) if (t <= oldest) rows.delete(t);
  renderHeader(update);
  renderStats(update);
  renderClusters(update);
  renderCharts(update);
}

const source = new EventSource("/events");
source.onmessage = (message) => apply(JSON.parse(message.data) as LiveUpdate);
source.onerror = () => {
  // EventSource reconnects by itself (retry: 1000); say so until it does.
  document.body.dataset.connection = "lost";
  const connection = document.getElementById("connection")!;
  connection.dataset.state = "lost";
  connection.querySelector("b")!.textContent = "connection lost, retrying…";
};
