// Peer metadata and Istio TCP metrics between two proxies: the exact series on both sides with
// real labels (from config, or from baggage for a peer config does not know), response baggage
// at the source, bytes published while a tunnel is open, output parsed by an independent
// Prometheus text-format parser; admin endpoints.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRequire } from "node:module";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { TCP_LABELS } from "../../host/metrics.js";
import { hboneSession, id, issue } from "../helpers/attack.js";
import { drain } from "../helpers/net.js";

const require = createRequire(import.meta.url);
const parsePrometheusTextFormat = require("parse-prometheus-text-format") as (text: string) => {
  name: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}[];

let fx: MeshFixture;
let a: Mesh;
let b: Mesh;

beforeAll(async () => {
  fx = await meshFixture();
  b = await fx.proxy({ workload: "default/echo/echo" });
  a = await fx.proxy({ workload: "default/sleep/sleep", hbonePort: b.addresses.inbound!.port });
});
afterAll(async () => fx?.close());

async function scrape(m: Mesh) {
  const res = await fetch(`http://127.0.0.1:${m.addresses.metrics!.port}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, families: parsePrometheusTextFormat(text) };
}

type Series = { value: string; labels?: Record<string, string> };
function series(
  f: ReturnType<typeof parsePrometheusTextFormat>,
  name: string,
  match: Record<string, string>,
): Series[] {
  const fam = f.find((x) => x.name === name);
  return (fam?.metrics ?? []).filter((m) => Object.entries(match).every(([k, v]) => m.labels?.[k] === v));
}

const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO = "spiffe://cluster.local/ns/default/sa/echo";

describe("istio_tcp_* metrics", () => {
  it("labels a tunnel between two proxies on both sides, from config, with bytes by direction", async () => {
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    t.write(Buffer.alloc(5000, 1));
    // While the tunnel is open, bytes are already published at scrape time.
    await new Promise((r) => setTimeout(r, 100));
    const during = (await scrape(a)).families;
    expect(Number(series(during, "istio_tcp_received_bytes_total", { reporter: "source" })[0]?.value)).toBe(5000);
    expect(Number(series(during, "istio_tcp_sockets_open", { reporter: "source" })[0]?.value)).toBe(1);
    t.end(Buffer.alloc(1000, 2));
    expect((await drain(t)).bytes).toBe(6000);
    await new Promise((r) => setTimeout(r, 100));

    const src = (await scrape(a)).families;
    const opened = series(src, "istio_tcp_connections_opened_total", { reporter: "source" });
    expect(opened).toHaveLength(1);
    expect(Object.keys(opened[0].labels!)).toEqual([...TCP_LABELS]);
    expect(opened[0].labels).toMatchObject({
      source_workload: "sleep",
      source_workload_namespace: "default",
      source_principal: SLEEP,
      source_cluster: "test",
      source_app: "sleep",
      destination_service: "echo.default.svc.cluster.local",
      destination_service_namespace: "default",
      destination_service_name: "echo",
      destination_workload: "echo",
      destination_principal: ECHO,
      destination_cluster: "test",
      request_protocol: "tcp",
      response_flags: "-",
      connection_security_policy: "mutual_tls",
      source_region: "unknown",
      destination_zone: "unknown",
    });
    expect(opened[0].value).toBe("1");
    const lbl = opened[0].labels!;
    expect(series(src, "istio_tcp_connections_closed_total", lbl)[0]?.value).toBe("1");
    expect(series(src, "istio_tcp_received_bytes_total", lbl)[0]?.value).toBe("6000"); // client -> server
    expect(series(src, "istio_tcp_sent_bytes_total", lbl)[0]?.value).toBe("6000"); // server -> client (echo)
    expect(series(src, "istio_tcp_sockets_open", lbl)[0]?.value).toBe("0");

    const dst = (await scrape(b)).families;
    const dOpened = series(dst, "istio_tcp_connections_opened_total", { reporter: "destination" });
    expect(dOpened).toHaveLength(1);
    // The source is identified by its address (the tunnel leaves from 127.0.0.2), its principal by TLS.
    expect(dOpened[0].labels).toMatchObject({
      source_workload: "sleep",
      source_principal: SLEEP,
      source_cluster: "test",
      destination_workload: "echo",
      destination_principal: ECHO,
      destination_service: "echo.default.svc.cluster.local",
      response_flags: "-",
    });
    expect(series(dst, "istio_tcp_received_bytes_total", dOpened[0].labels!)[0]?.value).toBe("6000");
  });

  it("labels a peer config does not know from its baggage, and answers with ours", async () => {
    const s = await hboneSession({
      host: "127.0.0.3",
      port: b.addresses.inbound!.port,
      certificate: await issue(fx.caDir, "far", "ghost"),
      expected: id("default", "echo"),
    });
    try {
      const stream = await s.connect(`127.0.0.3:${fx.echoPort}`, [
        [
          "baggage",
          "k8s.cluster.name=remote,k8s.namespace.name=far,k8s.deployment.name=ghost,service.name=ghost-svc,service.version=v9",
        ],
      ]);
      expect(stream.status).toBe(200);
      expect(stream.header("baggage")).toBe(
        "k8s.cluster.name=test,k8s.namespace.name=default,k8s.deployment.name=echo",
      );
      stream.end("x");
      await drain(stream);
    } finally {
      s.destroy();
    }
    await new Promise((r) => setTimeout(r, 50));
    const got = series((await scrape(b)).families, "istio_tcp_connections_opened_total", {
      reporter: "destination",
      source_principal: "spiffe://cluster.local/ns/far/sa/ghost",
    });
    expect(got).toHaveLength(1);
    expect(got[0].labels).toMatchObject({
      source_workload: "ghost",
      source_workload_namespace: "far",
      source_cluster: "remote",
      source_canonical_service: "ghost-svc",
      source_canonical_revision: "v9",
      source_app: "ghost",
      source_version: "v9",
      destination_workload: "echo",
    });
  });

  it("survives hostile baggage: huge, thousands of members, non-ASCII", async () => {
    const s = await hboneSession({
      host: "127.0.0.3",
      port: b.addresses.inbound!.port,
      certificate: await issue(fx.caDir, "far", "hostile"),
      expected: id("default", "echo"),
    });
    try {
      const members = Array.from({ length: 5000 }, (_, i) => `k${i}=v${i}`).join(",");
      const cases: [string, number][] = [
        [members.slice(0, 40_000), 200], // big but under the header list limit
        ["k8s.cluster.name=café,k8s.namespace.name=ÿþ", 200], // non-ASCII: ztunnel's parser gives up
        ["=,=,,;;%%%,k8s.deployment.name=", 200],
        ["x".repeat(70_000), 431], // over the server's 64 KiB header list limit
      ];
      for (const [baggage, status] of cases) {
        const stream = await s.connect(`127.0.0.3:${fx.echoPort}`, [["baggage", baggage]]);
        expect(stream.status).toBe(status);
        stream.end("x");
        await drain(stream).catch(() => undefined);
      }
    } finally {
      s.destroy();
    }
    const got = series((await scrape(b)).families, "istio_tcp_connections_opened_total", {
      reporter: "destination",
      source_principal: "spiffe://cluster.local/ns/far/sa/hostile",
    });
    expect(got.length).toBeGreaterThan(0);
    for (const g of got) expect(g.labels!.source_cluster).toBe("unknown");
  });

  it("counts a failed tunnel with response_flags CONNECT on both sides", async () => {
    await expect(a.connect("127.0.0.3:4444")).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 50));
    const f = (await scrape(a)).families;
    expect(
      series(f, "istio_tcp_connections_failed_total", { reporter: "source", response_flags: "CONNECT" })[0]?.value,
    ).toBe("1");
    const d = (await scrape(b)).families;
    expect(
      series(d, "istio_tcp_connections_failed_total", { reporter: "destination", response_flags: "CONNECT" })[0]?.value,
    ).toBe("1");
    // Opened is counted on the series without a flag; closed and failed carry the outcome.
    expect(
      series(d, "istio_tcp_connections_opened_total", { reporter: "destination", response_flags: "-" }).length,
    ).toBeGreaterThan(0);
  });

  it("exposes process metrics and build info, on /metrics and /stats/prometheus", async () => {
    const { text, families } = await scrape(a);
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "istio_build",
    ]) {
      expect(families.map((x) => x.name)).toContain(name);
    }
    // The process metrics are this process's (the proxy runs in the test process), computed at scrape time.
    const value = (name: string) => Number(series(families, name, {})[0]?.value);
    const rss = process.memoryUsage.rss();
    expect(Math.abs(value("process_resident_memory_bytes") - rss)).toBeLessThan(rss / 4);
    expect(Math.abs(value("process_start_time_seconds") - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    const cpu = process.cpuUsage();
    expect(value("process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(value("process_cpu_seconds_total")).toBeLessThanOrEqual((cpu.user + cpu.system) / 1e6);
    expect(value("process_open_fds")).toBeGreaterThan(3);
    expect(value("process_max_fds")).toBeGreaterThanOrEqual(value("process_open_fds"));
    expect(value("nodejs_heap_size_used_bytes")).toBeGreaterThan(1e6);
    expect(text).toContain("# TYPE nodejs_gc_duration_seconds histogram");
    const alt = await (await fetch(`http://127.0.0.1:${a.addresses.metrics!.port}/stats/prometheus`)).text();
    expect(alt.split("\n").filter((l) => l.startsWith("istio_tcp_connections_opened_total"))).toEqual(
      text.split("\n").filter((l) => l.startsWith("istio_tcp_connections_opened_total")),
    );
  });
});

describe("admin", () => {
  it("dumps the config and certificates in force, changes the log level, binds localhost only", async () => {
    const base = `http://127.0.0.1:${a.addresses.admin!.port}`;
    const dump = (await (await fetch(`${base}/config_dump`)).json()) as Record<string, unknown>;
    expect(dump.identity).toBe(SLEEP);
    expect((dump.config as { workloads: unknown[] }).workloads).toHaveLength(3);
    expect((dump.config as { services: unknown[] }).services).toHaveLength(1);
    expect(dump.certificates).toHaveLength(1);
    expect(a.addresses.admin!.address).toBe("127.0.0.1");
    const set = await (await fetch(`${base}/logging?level=debug`, { method: "POST" })).json();
    expect(set).toEqual({ level: "debug" });
    expect(await (await fetch(`${base}/logging?level=info`, { method: "POST" })).json()).toEqual({ level: "info" });
    expect((await fetch(`${base}/logging?level=loud`, { method: "POST" })).status).toBe(400);
    expect((await fetch(`http://127.0.0.1:${a.addresses.readiness!.port}/healthz/ready`)).status).toBe(200);
  });
});
