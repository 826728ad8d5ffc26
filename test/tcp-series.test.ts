// The istio_tcp_* text written straight from the series (host/tcp-series.ts) against prom-client writing the same
// numbers the way the proxy used to (a Counter or Gauge per family, filled label set by label set): both parsed by an
// independent text-format parser must give the same families, samples and label values, hostile values (quotes,
// backslashes, newlines, non-ASCII) included. A scrape at the series cap lets the event loop run while it writes,
// and a --workers primary's sum adds each label set's numbers over its workers.

import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { client } from "../host/prom.js";
import { sumTcp, tcpText, TCP_FAMILY_NAMES, TCP_LABELS, type TcpLabels, type TcpNumbers } from "../host/tcp-series.js";

const require = createRequire(import.meta.url);
const parse = require("parse-prometheus-text-format") as (text: string) => {
  name: string;
  help: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}[];

function labels(i: number, odd = ""): TcpLabels {
  const l = {} as TcpLabels;
  for (const k of TCP_LABELS) l[k] = `${k}-${i}${odd}`;
  return l;
}

const HOSTILE = ['say "hi"', "back\\slash", "two\nlines", "", "ünïcødé ✓", '\\"\n\\'];

function seriesSet(): TcpNumbers[] {
  const out: TcpNumbers[] = [];
  for (let i = 0; i < 40; i++)
    out.push({
      labels: labels(i, HOSTILE[i % HOSTILE.length]),
      opened: i % 3, // some 0: no counter sample, but the gauge has one once opened
      closed: i % 2,
      failed: i % 5 === 0 ? 1 : 0,
      received: i * 1000,
      sent: i * 7,
      open: i % 3 ? 1 : 0,
    });
  return out;
}

/** The same numbers through prom-client, as the proxy wrote them before (host/metrics.ts, up to 2026-12). */
async function viaPromClient(series: TcpNumbers[]): Promise<string> {
  const registry = new client.Registry();
  const registers = [registry];
  const labelNames = [...TCP_LABELS];
  const counters: [string, (s: TcpNumbers) => number][] = [
    ["istio_tcp_connections_opened_total", (s) => s.opened],
    ["istio_tcp_connections_closed_total", (s) => s.closed],
    ["istio_tcp_connections_failed_total", (s) => s.failed],
    ["istio_tcp_received_bytes_total", (s) => s.received],
    ["istio_tcp_sent_bytes_total", (s) => s.sent],
  ];
  for (const [name, value] of counters) {
    const c = new client.Counter({ name, help: "h", labelNames, registers });
    for (const s of series) if (value(s) > 0) c.inc(s.labels, value(s));
  }
  const g = new client.Gauge({ name: "istio_tcp_sockets_open", help: "h", labelNames, registers });
  for (const s of series) if (s.opened > 0) g.set(s.labels, s.open);
  return registry.metrics();
}

/** Families as comparable data: name, type and each sample's labels and value, in a fixed order. */
function families(text: string) {
  return parse(text)
    .map((f) => ({
      name: f.name,
      type: f.type,
      samples: f.metrics
        .map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) }))
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

describe("istio_tcp_* text (host/tcp-series)", () => {
  it("parses to what prom-client writes for the same numbers, hostile label values included", async () => {
    const series = seriesSet();
    const ours = (await tcpText(series)).join("");
    const theirs = await viaPromClient(series);
    expect(families(ours)).toEqual(families(theirs));
    // Every family is there, even with no sample, and labels keep ztunnel's order.
    expect(
      parse(ours)
        .map((f) => f.name)
        .sort(),
    ).toEqual([...TCP_FAMILY_NAMES].sort());
    const first = parse(ours).find((f) => f.name === "istio_tcp_received_bytes_total")!.metrics[0]!;
    expect(Object.keys(first.labels!)).toEqual([...TCP_LABELS]);
    // The hostile values come back exactly.
    const values = new Set(parse(ours).flatMap((f) => f.metrics.map((m) => m.labels!.reporter!)));
    for (const h of HOSTILE) expect([...values].some((v) => v.endsWith(h))).toBe(true);
  });

  it("lets the event loop run while it writes the series cap (10,000 series)", async () => {
    const big: TcpNumbers[] = [];
    for (let i = 0; i < 10_000; i++)
      big.push({ labels: labels(i), opened: 1, closed: 1, failed: 0, received: 10, sent: 10, open: 0 });
    let turns = 0;
    const tick = () => {
      turns++;
      if (!done) setImmediate(tick);
    };
    let done = false;
    setImmediate(tick);
    const chunks = await tcpText(big);
    done = true;
    // ~0.1-0.2 s of writing, 4 ms at most between turns: dozens of turns ran meanwhile (one, without the pauses).
    expect(turns).toBeGreaterThan(5);
    const text = chunks.join("");
    expect(text.split("\n").filter((l) => l.startsWith("istio_tcp_connections_opened_total{"))).toHaveLength(10_000);
    // Pieces hold whole lines.
    for (const c of chunks) expect(c.endsWith("\n")).toBe(true);
  });

  it("sums several processes' series by label set", async () => {
    const a: TcpNumbers = { labels: labels(1), opened: 2, closed: 1, failed: 0, received: 10, sent: 20, open: 1 };
    const b: TcpNumbers = { labels: labels(1), opened: 3, closed: 3, failed: 1, received: 5, sent: 5, open: 0 };
    const c: TcpNumbers = { labels: labels(2), opened: 1, closed: 0, failed: 0, received: 0, sent: 0, open: 1 };
    const sum = sumTcp([[a, c], [{ ...b, labels: { ...b.labels } }]]);
    expect(sum).toHaveLength(2);
    expect(sum.find((s) => s.labels.reporter === "reporter-1")).toMatchObject({
      opened: 5,
      closed: 4,
      failed: 1,
      received: 15,
      sent: 25,
      open: 1,
    });
    expect(sum.find((s) => s.labels.reporter === "reporter-2")).toMatchObject({ opened: 1, open: 1 });
    // The inputs are left as they were.
    expect(a.opened).toBe(2);
  });
});
