// The proxies table as a chart (bench/results/proxies.svg, shown in the README beside the
// numbers): one group of bars per metric, one bar per ratio column (hbone-wasm / tls-pipe,
// hbone-wasm / node-http2, …), a line at 1.0x. Plain SVG, no dependency.

import type { SuiteResult } from "./harness.js";

const COLORS = ["#3b6fb6", "#e08a2c", "#5a9e4b", "#a24d9a", "#c44e52"];
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** An SVG of the suite's ratios (null when it has none). Metrics where lower is better are marked so. */
export function ratioChart(s: SuiteResult, title: string): string | null {
  const pairs = s.ratioColumns ?? [];
  const metrics = [...new Set((s.measures ?? []).map((m) => m.metric))]
    .map((metric) => ({
      metric,
      lower: (s.measures ?? []).find((m) => m.metric === metric)?.lowerIsBetter ?? false,
      values: pairs.map(([a, b]) => s.ratios.find((r) => r.name === `${metric}: ${a} / ${b}`)?.value),
    }))
    .filter((m) => m.values.some((v) => v !== undefined && Number.isFinite(v)));
  if (metrics.length === 0 || pairs.length === 0) return null;
  const max = Math.max(
    2,
    ...metrics.flatMap((m) => m.values.filter((v): v is number => v !== undefined && Number.isFinite(v))),
  );
  const top = Math.min(Math.ceil(max * 2) / 2, 4); // bars beyond 4x are clipped (and labelled)
  const bar = 10,
    gap = 6,
    label = 330,
    plot = 420,
    row = pairs.length * bar + gap;
  const legend = 18 * pairs.length + 10;
  const height = 40 + legend + metrics.length * row + 30;
  const x = (v: number) => label + (Math.min(v, top) / top) * plot;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${label + plot + 70}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  pairs.forEach(([a, b], k) => {
    const y = 34 + 18 * k;
    out.push(
      `<rect x="10" y="${y}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/>`,
      `<text x="28" y="${y + 10}">${esc(`${a} / ${b}`)}</text>`,
    );
  });
  const y0 = 40 + legend;
  const yEnd = y0 + metrics.length * row;
  for (let t = 0; t <= top + 1e-9; t += 0.5) {
    out.push(
      `<line x1="${x(t)}" y1="${y0 - 4}" x2="${x(t)}" y2="${yEnd}" stroke="${t === 1 ? "#000" : "#ddd"}" stroke-width="${t === 1 ? 1.5 : 1}"/>`,
      `<text x="${x(t)}" y="${yEnd + 14}" text-anchor="middle">${t.toFixed(1)}x</text>`,
    );
  }
  metrics.forEach((m, i) => {
    const y = y0 + i * row;
    out.push(
      `<text x="${label - 6}" y="${y + (pairs.length * bar) / 2 + 4}" text-anchor="end">${esc(m.metric)}${m.lower ? " (lower is better)" : ""}</text>`,
    );
    m.values.forEach((v, k) => {
      if (v === undefined || !Number.isFinite(v)) return;
      const yy = y + k * bar;
      out.push(
        `<rect x="${label}" y="${yy}" width="${(x(v) - label).toFixed(1)}" height="${bar - 1}" fill="${COLORS[k % COLORS.length]}"/>`,
        `<text x="${(x(v) + 3).toFixed(1)}" y="${yy + bar - 2}" font-size="9">${v.toFixed(2)}x${v > top ? " (clipped)" : ""}</text>`,
      );
    });
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
