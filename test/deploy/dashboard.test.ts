// deploy/grafana/hbone-dashboard.json: importable (a Grafana dashboard model, schemaVersion >= 36, a
// Prometheus data-source variable every panel uses), and every PromQL expression names only series
// and labels that real proxies export: two proxies from the test fixture carry a tunnel and a refused
// one, their /metrics is parsed by an independent Prometheus text parser, and each expression's
// metric and label names are compared with what was scraped.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { drain } from "../helpers/net.js";

const require = createRequire(import.meta.url);
const parsePrometheusTextFormat = require("parse-prometheus-text-format") as (text: string) => {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; buckets?: unknown }[];
}[];

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  gridPos: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; definition?: string }[] };
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../deploy/grafana/hbone-dashboard.json", import.meta.url), "utf8"),
) as Dashboard;

/** PromQL words that are not metric names. */
const KEYWORDS = new Set([
  "sum",
  "rate",
  "irate",
  "increase",
  "topk",
  "bottomk",
  "count",
  "avg",
  "max",
  "min",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "vector",
  "scalar",
  "histogram_quantile",
  "clamp_min",
  "clamp_max",
  "sort_desc",
  "label_values",
  "abs",
  "delta",
  "deriv",
]);

/** The metric names and label names a PromQL expression uses (strings, durations and variables ignored). */
export function promqlNames(expr: string): { metrics: Set<string>; labels: Set<string> } {
  const labels = new Set<string>();
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\$\w+|\[[^\]]*\]/g, " ");
  e = e.replace(/\{([^}]*)\}/g, (_m, body: string) => {
    for (const m of body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) labels.add(m[1]!);
    return " ";
  });
  e = e.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, body: string) => {
    for (const l of body
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean))
      labels.add(l);
    return " ";
  });
  // label_values(metric, label)
  e = e.replace(
    /label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*([a-zA-Z_]\w*)\s*\)/g,
    (_m, metric: string, label: string) => {
      labels.add(label);
      return ` ${metric} `;
    },
  );
  const metrics = new Set<string>();
  for (const m of e.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    if (!KEYWORDS.has(m[0]) && !/^\d/.test(m[0])) metrics.add(m[0]);
  }
  return { metrics, labels };
}

function expressions(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of d.panels) for (const t of p.targets ?? []) out.push({ where: p.title, expr: t.expr });
  for (const v of d.templating.list) {
    if (v.type === "query") out.push({ where: `variable ${v.name}`, expr: (v.query as { query: string }).query });
  }
  return out;
}

let fx: MeshFixture;
let a: Mesh;
let b: Mesh;
/** Exported series: family name (and _bucket/_sum/_count of histograms) -> label names seen. */
const exported = new Map<string, Set<string>>();

beforeAll(async () => {
  fx = await meshFixture();
  b = await fx.proxy({ workload: "default/echo/echo" });
  a = await fx.proxy({ workload: "default/sleep/sleep", hbonePort: b.addresses.inbound!.port });
  const t = await a.connect(`echo.default.svc.cluster.local:9000`);
  t.end("hello");
  await drain(t);
  // A refused tunnel (nothing listens on echo's port 1): the failed series, response_flags set.
  await a.connect("127.0.0.3:1").then(
    (s) => s.destroy(),
    () => undefined,
  );
  for (const m of [a, b]) {
    const text = await (await fetch(`http://127.0.0.1:${m.addresses.metrics!.port}/metrics`)).text();
    for (const f of parsePrometheusTextFormat(text)) {
      const names = [
        f.name,
        ...(f.type === "HISTOGRAM" || f.type === "SUMMARY"
          ? [`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`]
          : []),
      ];
      for (const n of names) {
        const set = exported.get(n) ?? new Set<string>();
        for (const s of f.metrics) for (const l of Object.keys(s.labels ?? {})) set.add(l);
        exported.set(n, set);
      }
    }
  }
});
afterAll(async () => fx?.close());

describe("Grafana dashboard", () => {
  it("is an importable dashboard model with a Prometheus data-source variable", () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    const ds = dashboard.templating.list.find((v) => v.type === "datasource");
    expect(ds).toMatchObject({ name: "datasource", query: "prometheus" });
    const ids = new Set<number>();
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === "row") continue;
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      for (const t of p.targets ?? [])
        expect(t.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      ids.add((p as unknown as { id: number }).id);
    }
    expect(ids.size).toBe(dashboard.panels.filter((p) => p.type !== "row").length);
  });

  it("covers every istio_tcp_* series and breaks them down by cluster", () => {
    const all = expressions(dashboard).map((x) => promqlNames(x.expr));
    const used = new Set(all.flatMap((n) => [...n.metrics]));
    for (const m of [
      "istio_tcp_connections_opened_total",
      "istio_tcp_connections_closed_total",
      "istio_tcp_sent_bytes_total",
      "istio_tcp_received_bytes_total",
      "istio_tcp_connections_failed_total",
      "istio_tcp_sockets_open",
    ])
      expect(used).toContain(m);
    const labels = new Set(all.flatMap((n) => [...n.labels]));
    for (const l of [
      "source_cluster",
      "destination_cluster",
      "source_region",
      "destination_zone",
      "destination_service",
    ]) {
      expect(labels).toContain(l);
    }
    expect([...used].some((m) => m.startsWith("process_"))).toBe(true);
  });

  it("names only series and labels the proxy exports", () => {
    expect(exported.get("istio_tcp_connections_opened_total")?.has("destination_cluster")).toBe(true);
    expect(exported.get("istio_tcp_connections_failed_total")?.has("response_flags")).toBe(true);
    const errors: string[] = [];
    for (const { where, expr } of expressions(dashboard)) {
      const { metrics, labels } = promqlNames(expr);
      expect(metrics.size, `${where}: ${expr}`).toBeGreaterThan(0);
      const known = new Set([...metrics].flatMap((m) => [...(exported.get(m) ?? [])]));
      for (const m of metrics) if (!exported.has(m)) errors.push(`${where}: series ${m} is not exported`);
      for (const l of labels)
        if (!known.has(l)) errors.push(`${where}: label ${l} is on none of ${[...metrics].join(", ")}`);
    }
    expect(errors).toEqual([]);
  });

  it("the name check finds a series or label the proxy does not export", () => {
    const n = promqlNames(
      'sum by (source_network) (rate(istio_requests_total{reporter="source", app=~"$x"}[$__rate_interval]))',
    );
    expect([...n.metrics]).toEqual(["istio_requests_total"]);
    expect([...n.labels].sort()).toEqual(["app", "reporter", "source_network"]);
    expect(exported.has("istio_requests_total")).toBe(false);
    expect(exported.get("istio_tcp_connections_opened_total")?.has("source_network")).toBe(false);
  });
});
