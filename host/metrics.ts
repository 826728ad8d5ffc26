// Prometheus metrics (:15020 /metrics and /stats/prometheus). Process metrics and build info
// now; Istio's istio_tcp_* series arrive with peer metadata. Per-byte paths never call
// prom-client: counters are read from plain numbers at scrape time (collect()).

import client from "prom-client";

export interface MetricsSources {
  activeTunnels(): { inbound: number; outbound: number };
  pool(): { connections: number; dials: number; reused: number };
}

export class Metrics {
  readonly registry = new client.Registry();

  constructor(sources: MetricsSources, info: { version: string; workload: string }) {
    client.collectDefaultMetrics({ register: this.registry });
    new client.Gauge({
      name: "istio_build",
      help: "Istio component build info",
      labelNames: ["component", "tag"],
      registers: [this.registry],
    }).set({ component: "hbone-wasm", tag: info.version }, 1);
    new client.Gauge({
      name: "hbone_active_tunnels",
      help: "Tunnels open now, by direction",
      labelNames: ["direction"],
      registers: [this.registry],
      collect() {
        const t = sources.activeTunnels();
        this.set({ direction: "inbound" }, t.inbound);
        this.set({ direction: "outbound" }, t.outbound);
      },
    });
    new client.Gauge({
      name: "hbone_pool_connections",
      help: "Pooled HBONE connections",
      registers: [this.registry],
      collect() {
        this.set(sources.pool().connections);
      },
    });
    new client.Counter({
      name: "hbone_pool_dials_total",
      help: "HBONE connections dialled (one TLS handshake each)",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(sources.pool().dials);
      },
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
