// Metric cardinality attacks on a real `hbone proxy` process (reporter=destination series at :15008's inbound):
// - a flood of refused CONNECTs (up to 20,000, at most 20 s) from an authenticated peer config does not know, each
//   with unique baggage (half with x-forwarded-network): the refused tunnels are counted only on labels the peer
//   cannot choose, so the series stay ≤ 10, /metrics ≤ 256 KiB; a second flood of the same size grows RSS < 20 MiB
//   over the first (nothing is retained per CONNECT), the first < 100 MiB (the heap's slack);
// - accepted tunnels with unique baggage: series capped at HBONE_METRICS_MAX_SERIES (here 200) plus ≤ 8 overflow
//   series with "unknown" labels, /metrics ≤ 2 MiB;
// - label values over their length bound or outside the Kubernetes charset become "unknown";
// - x-forwarded-network from a peer that is not a known network gateway is ignored (config labels win); from the
//   gateway config names, the source is labelled from baggage;
// - series of closed tunnels expire after HBONE_METRICS_SERIES_TTL_S (here 2 s).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
import { Identity } from "../../host/identity/identity.js";
import type { H2Session } from "../../host/h2/session.js";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { gauge, hboneSession, issue, seriesLines, spawnProxy, type ProxyProcess } from "../helpers/attack.js";

const MAX_SERIES = 200;
const FLOOD = 20_000;
const FLOOD_MS = 20_000;
const ECHO = new Identity("cluster.local", "default", "echo");

let fx: MeshFixture;
let ghost: WorkloadCertificate;

beforeAll(async () => {
  fx = await meshFixture();
  ghost = await issue(fx.caDir, "far", "ghost");
}, 60_000);
afterAll(async () => fx?.close());

/** Opens a tunnel on `s`; resolves with its status (200: "ping" echoed and closed). */
async function tunnel(s: H2Session, authority: string, headers: [string, string][]): Promise<number> {
  const stream = await s.connect(authority, headers);
  stream.on("error", () => {});
  if (stream.status !== 200) {
    stream.end();
    return stream.status;
  }
  stream.end("ping");
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  expect(Buffer.concat(chunks).toString()).toBe("ping");
  return 200;
}

function uniqueBaggage(i: number): string {
  return `k8s.cluster.name=c${i},k8s.namespace.name=ns${i},k8s.deployment.name=w${i},service.name=s${i},service.version=v${i}`;
}

describe("series from peers' baggage, with a cap of 200", () => {
  let p: ProxyProcess;
  beforeAll(async () => {
    p = await spawnProxy({
      config: fx.configPath,
      caDir: fx.caDir,
      workload: "default/echo/echo",
      env: { HBONE_METRICS_MAX_SERIES: String(MAX_SERIES) },
    });
  }, 60_000);
  afterAll(async () => p?.kill());

  it(`refused CONNECTs with unique baggage (two floods of up to ${FLOOD}, ${FLOOD_MS / 1000} s in all) create no series from it`, async () => {
    const rss0 = p.rssMiB();
    let sent = 0;
    let answered = 0;
    const statuses = new Map<number, number>();
    const t0 = Date.now();
    let limit = FLOOD;
    // 4 connections, each with up to 100 CONNECTs in flight (the session queues the rest); a connection that dies
    // (a server-side flood limit may close it) is replaced.
    const worker = async () => {
      while (sent < limit && Date.now() - t0 < FLOOD_MS) {
        // Each refusal comes with RST_STREAM(NO_ERROR): the attacker does not mind them (our client would call it
        // a rapid-reset flood after 400).
        const s = await hboneSession({
          ...p.inbound,
          certificate: ghost,
          expected: ECHO,
          session: { maxResetsPerWindow: 1_000_000 },
        });
        s.on("error", () => {});
        try {
          const batch: Promise<void>[] = [];
          while (sent < limit && Date.now() - t0 < FLOOD_MS && s.open) {
            const i = sent++;
            const headers: [string, string][] = [["baggage", uniqueBaggage(i)]];
            if (i % 2 === 0) headers.push(["x-forwarded-network", `net${i}`]);
            batch.push(
              tunnel(s, "127.0.0.3:7777", headers).then(
                (st) => {
                  answered++;
                  statuses.set(st, (statuses.get(st) ?? 0) + 1);
                },
                () => undefined,
              ),
            );
            if (batch.length >= 100) await Promise.all(batch.splice(0));
          }
          await Promise.all(batch);
        } finally {
          s.destroy();
        }
      }
    };
    const flood = () => Promise.all([worker(), worker(), worker(), worker()]);
    await flood();
    const rss1 = p.rssMiB();
    limit = 2 * FLOOD;
    await flood();
    const rss2 = p.rssMiB();
    const text = await p.metrics();
    const lines = seriesLines(text);
    const series = gauge(text, "hbone_metrics_series");
    console.log(
      `refused flood: ${answered} of ${sent} CONNECTs answered in ${Date.now() - t0} ms ` +
        `(${JSON.stringify(Object.fromEntries(statuses))}); ${series} series, ${lines.length} istio_tcp_ lines, ` +
        `/metrics ${(text.length / 1024).toFixed(0)} KiB; RSS ${rss0.toFixed(0)} -> ${rss1.toFixed(0)} (first half) -> ` +
        `${rss2.toFixed(0)} MiB`,
    );
    expect(p.alive()).toBe(true);
    expect(answered).toBeGreaterThan(2000); // the attack really ran
    expect(statuses.get(503)).toBe(answered);
    expect(series).toBeLessThanOrEqual(10);
    expect(lines.length).toBeLessThanOrEqual(60);
    expect(text.length).toBeLessThanOrEqual(256 * 1024);
    // Memory: the second half of the flood keeps nothing the first did not (a refused CONNECT retains no memory: its
    // labels, baggage and dial are garbage), and the first grows RSS only by the heap's slack: what the young
    // generation (Node's default 2 x 16 MB here) and the old generation's garbage before a mark-compact take.
    expect(rss2 - rss1).toBeLessThan(20);
    expect(rss1 - rss0).toBeLessThan(100);
    // Counted, on the peer's TLS identity only.
    const failed = lines.filter((l) => l.startsWith("istio_tcp_connections_failed_total{"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain('source_principal="spiffe://cluster.local/ns/far/sa/ghost"');
    expect(failed[0]).toContain('source_workload="unknown"');
    expect(failed[0]).toMatch(new RegExp(` ${answered}$`));
    // A fresh legitimate tunnel still works.
    const s = await hboneSession({ ...p.inbound, certificate: ghost, expected: ECHO });
    expect(await tunnel(s, `127.0.0.3:${fx.echoPort}`, [])).toBe(200);
    s.destroy();
  }, 60_000);

  it("bounds label values: too long or outside the Kubernetes charset is unknown", async () => {
    const s = await hboneSession({ ...p.inbound, certificate: ghost, expected: ECHO });
    try {
      const baggage =
        `k8s.cluster.name=${"c".repeat(254)},k8s.namespace.name=${"n".repeat(64)},k8s.deployment.name=ok-name,` +
        "service.name=-leading-dash,service.version=v1";
      expect(await tunnel(s, `127.0.0.3:${fx.echoPort}`, [["baggage", baggage]])).toBe(200);
    } finally {
      s.destroy();
    }
    const line = seriesLines(await p.metrics(), "istio_tcp_connections_opened_total{").find((l) =>
      l.includes('source_workload="ok-name"'),
    );
    expect(line).toBeDefined();
    expect(line).toContain('source_cluster="unknown"');
    expect(line).toContain('source_workload_namespace="unknown"');
    expect(line).toContain('source_canonical_service="unknown"');
    expect(line).toContain('source_version="v1"');
  });

  it(`caps accepted tunnels' series at ${MAX_SERIES}, the rest counted on "unknown" labels`, async () => {
    const N = 600;
    const s = await hboneSession({ ...p.inbound, certificate: ghost, expected: ECHO });
    try {
      const all: Promise<number>[] = [];
      for (let i = 0; i < N; i++)
        all.push(tunnel(s, `127.0.0.3:${fx.echoPort}`, [["baggage", uniqueBaggage(100_000 + i)]]));
      expect((await Promise.all(all)).every((st) => st === 200)).toBe(true);
    } finally {
      s.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    const text = await p.metrics();
    const series = gauge(text, "hbone_metrics_series");
    console.log(
      `accepted with unique baggage: ${N} tunnels -> ${series} series, overflowed ${gauge(text, "hbone_metrics_series_overflowed")}, ` +
        `/metrics ${(text.length / 1024).toFixed(0)} KiB`,
    );
    expect(series).toBeLessThanOrEqual(MAX_SERIES + 8);
    expect(gauge(text, "hbone_metrics_series_overflowed")).toBeGreaterThanOrEqual(N - MAX_SERIES);
    expect(text.length).toBeLessThanOrEqual(2 * 1024 * 1024);
    // The overflow series: every peer label unknown, all the overflowed tunnels on it.
    const over = seriesLines(text, "istio_tcp_connections_opened_total{").filter((l) =>
      l.includes('source_principal="unknown"'),
    );
    expect(over).toHaveLength(1);
    expect(over[0]).toContain('destination_workload="unknown"');
    expect(Number(over[0].split(" ").pop())).toBeGreaterThanOrEqual(N - MAX_SERIES);
    expect(p.alive()).toBe(true);
  });
});

describe("x-forwarded-network and expiry", () => {
  let p: ProxyProcess;
  let sleep: WorkloadCertificate;
  let remote: WorkloadCertificate;
  beforeAll(async () => {
    // The same mesh plus an east-west gateway at 127.0.0.50, named as its network's gateway by a workload.
    const yaml = meshYaml(fx.echoPort, fx.halfPort).replace(
      /^services:\n/m,
      `  - uid: test//v1/Pod/istio-system/eastwest
    name: eastwest
    namespace: istio-system
    serviceAccount: istio-eastwestgateway
    workloadIps: [127.0.0.50]
    protocol: HBONE
    clusterId: test
  - uid: test//v1/Pod/default/neighbour
    name: neighbour
    namespace: default
    serviceAccount: neighbour
    workloadIps: [127.0.0.51]
    protocol: HBONE
    clusterId: test
    networkGateway: { destination: "/127.0.0.50", hboneMtlsPort: 15008 }
services:
`,
    );
    const config = join(fx.dir, "with-gateway.yaml");
    writeFileSync(config, yaml);
    sleep = await issue(fx.caDir, "default", "sleep");
    remote = await issue(fx.caDir, "far", "remote-app");
    p = await spawnProxy({
      config,
      caDir: fx.caDir,
      workload: "default/echo/echo",
      env: { HBONE_METRICS_SERIES_TTL_S: "2" },
    });
  }, 60_000);
  afterAll(async () => p?.kill());

  const forged = "k8s.cluster.name=forged,k8s.namespace.name=forged,k8s.deployment.name=forged";

  it("ignores x-forwarded-network from a peer that is not a known gateway: its config labels stay", async () => {
    const s = await hboneSession({ ...p.inbound, certificate: sleep, expected: ECHO, localAddress: "127.0.0.2" });
    try {
      expect(
        await tunnel(s, `127.0.0.3:${fx.echoPort}`, [
          ["x-forwarded-network", "elsewhere"],
          ["baggage", forged],
        ]),
      ).toBe(200);
    } finally {
      s.destroy();
    }
    const text = await p.metrics();
    expect(text).not.toContain("forged");
    const opened = seriesLines(text, "istio_tcp_connections_opened_total{");
    expect(opened.some((l) => l.includes('source_workload="sleep"') && l.includes('source_cluster="test"'))).toBe(true);
  });

  it("labels the source from baggage when x-forwarded-network comes through the known gateway", async () => {
    const s = await hboneSession({ ...p.inbound, certificate: remote, expected: ECHO, localAddress: "127.0.0.50" });
    try {
      expect(
        await tunnel(s, `127.0.0.3:${fx.echoPort}`, [
          ["x-forwarded-network", "net2"],
          ["baggage", "k8s.cluster.name=cluster2,k8s.namespace.name=far,k8s.deployment.name=remote-app"],
        ]),
      ).toBe(200);
    } finally {
      s.destroy();
    }
    const opened = seriesLines(await p.metrics(), "istio_tcp_connections_opened_total{");
    expect(
      opened.some((l) => l.includes('source_workload="remote-app"') && l.includes('source_cluster="cluster2"')),
    ).toBe(true);
    expect(opened.some((l) => l.includes('source_workload="eastwest"'))).toBe(false);
  });

  it("expires the series of closed tunnels after HBONE_METRICS_SERIES_TTL_S", async () => {
    expect(gauge(await p.metrics(), "hbone_metrics_series")).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 3000));
    const text = await p.metrics();
    expect(gauge(text, "hbone_metrics_series")).toBe(0);
    expect(seriesLines(text)).toEqual([]);
    // A new tunnel starts its series again.
    const s = await hboneSession({ ...p.inbound, certificate: sleep, expected: ECHO, localAddress: "127.0.0.2" });
    try {
      expect(await tunnel(s, `127.0.0.3:${fx.echoPort}`, [])).toBe(200);
    } finally {
      s.destroy();
    }
    expect(gauge(await p.metrics(), "hbone_metrics_series")).toBe(1);
  });
});
