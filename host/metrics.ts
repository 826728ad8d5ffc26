// Prometheus metrics (:15020 /metrics and /stats/prometheus): Istio's istio_tcp_* series with
// ztunnel's labels (ztunnel src/proxy/metrics.rs), process metrics and build info.
// The per-byte path never calls prom-client: streams and sockets already count their bytes in
// plain numbers, and the counters catch up from them at scrape time (collect()) and at close.

import client from "prom-client";

/** Bytes a tunnel moved so far, by direction (client = the side that opened it). */
export interface TunnelBytes {
  clientToServer: number;
  serverToClient: number;
}

/** ztunnel's label set, in its order. */
export const TCP_LABELS = [
  "reporter",
  "source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
  "source_principal", "source_app", "source_version", "source_cluster",
  "destination_service", "destination_service_namespace", "destination_service_name",
  "destination_workload", "destination_canonical_service", "destination_canonical_revision",
  "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
  "destination_cluster",
  "request_protocol", "response_flags", "connection_security_policy",
  "source_region", "source_zone", "destination_region", "destination_zone",
] as const;

export type TcpLabel = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabel, string>;

/** One side of a tunnel's identity, as labels know it. Missing fields become "unknown". */
export interface PeerLabels {
  workload?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  namespace?: string;
  principal?: string;
  app?: string;
  version?: string;
  cluster?: string;
  region?: string;
  zone?: string;
}

export interface ServiceLabels {
  hostname?: string;
  namespace?: string;
  name?: string;
}

const u = (v: string | undefined) => (v ? v : "unknown");

export function tcpLabels(reporter: "source" | "destination", src: PeerLabels, dst: PeerLabels, svc: ServiceLabels,
  responseFlags = "-", mtls = true): TcpLabels {
  return {
    reporter,
    source_workload: u(src.workload),
    source_canonical_service: u(src.canonicalService),
    source_canonical_revision: u(src.canonicalRevision),
    source_workload_namespace: u(src.namespace),
    source_principal: u(src.principal),
    source_app: u(src.app),
    source_version: u(src.version),
    source_cluster: u(src.cluster),
    destination_service: u(svc.hostname),
    destination_service_namespace: u(svc.namespace),
    destination_service_name: u(svc.name),
    destination_workload: u(dst.workload),
    destination_canonical_service: u(dst.canonicalService),
    destination_canonical_revision: u(dst.canonicalRevision),
    destination_workload_namespace: u(dst.namespace),
    destination_principal: u(dst.principal),
    destination_app: u(dst.app),
    destination_version: u(dst.version),
    destination_cluster: u(dst.cluster),
    request_protocol: "tcp",
    response_flags: responseFlags,
    connection_security_policy: mtls ? "mutual_tls" : "unknown",
    source_region: u(src.region),
    source_zone: u(src.zone),
    destination_region: u(dst.region),
    destination_zone: u(dst.zone),
  };
}

export interface MetricsSources {
  activeTunnels(): { inbound: number; outbound: number };
  pool(): { connections: number; dials: number; reused: number };
}

/** One label set's numbers, kept as plain numbers and handed to prom-client only at scrape time. */
class Series {
  opened = 0;
  closed = 0;
  failed = 0;
  received = 0;
  sent = 0;
  open = 0;
  constructor(readonly labels: TcpLabels) {}
}

/**
 * One tunnel's record (ztunnel's ConnectionResult): counted as opened when created; its bytes
 * are read from the stream's or socket's own counters at scrape time and at close.
 */
export class ConnectionResult {
  private published: TunnelBytes = { clientToServer: 0, serverToClient: 0 };
  private bytes: () => TunnelBytes = () => this.published;
  private readonly series: Series;
  closed = false;

  constructor(private readonly m: Metrics, readonly labels: TcpLabels) {
    this.series = m.seriesFor(labels);
    this.series.opened++;
    this.series.open++;
    m.open.add(this);
  }

  /** Where this tunnel's byte counts are read from (a stream's or socket's own counters). */
  countFrom(bytes: () => TunnelBytes): void {
    this.bytes = bytes;
  }

  /** Adds the bytes moved since the last call (client→server is "received"). */
  publish(): void {
    const now = this.bytes();
    this.series.received += now.clientToServer - this.published.clientToServer;
    this.series.sent += now.serverToClient - this.published.serverToClient;
    this.published = { clientToServer: now.clientToServer, serverToClient: now.serverToClient };
  }

  /**
   * The tunnel ended. `failed`: it never carried data (connect failure, refusal); `flags` is then
   * the response flag its closed and failed series carry (as ztunnel records it at the end).
   */
  close(failed = false, flags?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.publish();
    this.m.open.delete(this);
    this.series.open--;
    const end = flags ? this.m.seriesFor({ ...this.labels, response_flags: flags }) : this.series;
    end.closed++;
    if (failed) end.failed++;
  }
}

export class Metrics {
  readonly registry = new client.Registry();
  /** Tunnels whose bytes are not fully published yet. */
  readonly open = new Set<ConnectionResult>();
  private readonly series = new Map<string, Series>();

  constructor(sources: MetricsSources, info: { version: string }) {
    const registers = [this.registry];
    const labelNames = TCP_LABELS as unknown as TcpLabel[];
    client.collectDefaultMetrics({ register: this.registry });
    new client.Gauge({ name: "istio_build", help: "Istio component build info", labelNames: ["component", "tag"], registers })
      .set({ component: "ztunnel", tag: info.version }, 1);
    const all = this.series, open = this.open;
    // Each istio_tcp_* family is rebuilt from the plain numbers when scraped.
    const counter = (name: string, help: string, value: (s: Series) => number) => new client.Counter({
      name, help, labelNames, registers,
      collect() {
        for (const r of open) r.publish();
        this.reset();
        for (const s of all.values()) {
          const v = value(s);
          if (v > 0) this.inc(s.labels, v);
        }
      },
    });
    counter("istio_tcp_connections_opened_total", "The total number of TCP connections opened", (s) => s.opened);
    counter("istio_tcp_connections_closed_total", "The total number of TCP connections closed", (s) => s.closed);
    counter("istio_tcp_connections_failed_total", "The total number of TCP connections that failed to establish", (s) => s.failed);
    counter("istio_tcp_received_bytes_total", "The size of total bytes received during request in case of a TCP connection", (s) => s.received);
    counter("istio_tcp_sent_bytes_total", "The size of total bytes sent during response in case of a TCP connection", (s) => s.sent);
    new client.Gauge({
      name: "istio_tcp_sockets_open", help: "The current number of open TCP sockets", labelNames, registers,
      collect() {
        this.reset();
        for (const s of all.values()) if (s.opened > 0) this.set(s.labels, s.open);
      },
    });
    new client.Gauge({
      name: "hbone_active_tunnels", help: "Tunnels open now, by direction", labelNames: ["direction"], registers,
      collect() {
        const t = sources.activeTunnels();
        this.set({ direction: "inbound" }, t.inbound);
        this.set({ direction: "outbound" }, t.outbound);
      },
    });
    new client.Gauge({
      name: "hbone_pool_connections", help: "Pooled HBONE connections", registers,
      collect() {
        this.set(sources.pool().connections);
      },
    });
    new client.Gauge({
      name: "hbone_pool_dials", help: "HBONE connections dialled so far (one TLS handshake each)", registers,
      collect() {
        this.set(sources.pool().dials);
      },
    });
  }

  /** The numbers of one label set (created on first use). */
  seriesFor(labels: TcpLabels): Series {
    let key = "";
    for (const l of TCP_LABELS) key += labels[l] + "\u0000";
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new Series(labels)));
    return s;
  }

  /** Counts a tunnel as opened (outbound: before dialling; inbound: before policy). */
  opened(labels: TcpLabels): ConnectionResult {
    return new ConnectionResult(this, labels);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
