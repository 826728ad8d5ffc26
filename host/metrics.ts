// Prometheus metrics (:15020 /metrics and /stats/prometheus): Istio's istio_tcp_* series with
// ztunnel's labels (same names, order and "unknown" defaults), process metrics and build info.
// The per-byte path never calls prom-client: streams and sockets already count their bytes in
// plain numbers, which the series take up at scrape time and at close; the istio_tcp_* text is
// written from the series' numbers (host/tcp-series.ts), prom-client serves the rest.
// Cardinality is bounded because peers choose some labels (baggage): values are validated and
// length-bounded, series are capped (overflow: "unknown" labels), idle series expire, and an
// inbound tunnel gets a series only once it passed its checks (Metrics.checking).

import { client, processMetrics, type MetricsJson } from "./prom.js";
import { keyOf, numbersOf, tcpText, TCP_LABELS, type TcpLabel, type TcpLabels, type TcpNumbers } from "./tcp-series.js";
import { envInt } from "./env.js";
import { getCodec } from "./wasm/codec.js";

/** Bytes a tunnel moved so far, by direction (client = the side that opened it). */
export interface TunnelBytes {
  clientToServer: number;
  serverToClient: number;
}

export { TCP_LABELS, type TcpLabel, type TcpLabels } from "./tcp-series.js";

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

/**
 * Label values a peer can influence (baggage) are bounded: Kubernetes name rules (alphanumerics, '.', '_', '-';
 * starting and ending alphanumeric), at most 63 characters for namespaces, service names, revisions and localities
 * (label values, DNS labels), 253 for workload, app, cluster and host names (DNS subdomains), 512 for a SPIFFE
 * principal (URI characters). Anything else is "unknown". Missing values are "unknown" too.
 */
const K8S_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const PRINCIPAL = /^spiffe:\/\/[A-Za-z0-9._~%!$&'()*+,;=:@/-]+$/;
const SHORT = 63,
  LONG = 253,
  URI = 512;

function name(v: string | undefined, max: number): string {
  return v && v.length <= max && K8S_NAME.test(v) ? v : "unknown";
}

function principal(v: string | undefined): string {
  return v && v.length <= URI && PRINCIPAL.test(v) ? v : "unknown";
}

// tcpLabels' answers for label objects that are shared (host/proxy/peer-labels makes one per workload record, peer
// and service): the checks below run once per peer and service, not per tunnel. Entries go with the objects.
const made = new WeakMap<PeerLabels, WeakMap<PeerLabels, WeakMap<ServiceLabels, Map<string, TcpLabels>>>>();

/** The istio_tcp_* labels of a tunnel. The same inputs (the same objects) give the same object: never change it. */
export function tcpLabels(
  reporter: "source" | "destination",
  src: PeerLabels,
  dst: PeerLabels,
  svc: ServiceLabels,
  responseFlags = "-",
  mtls = true,
): TcpLabels {
  let byDst = made.get(src);
  if (!byDst) made.set(src, (byDst = new WeakMap()));
  let bySvc = byDst.get(dst);
  if (!bySvc) byDst.set(dst, (bySvc = new WeakMap()));
  let byKind = bySvc.get(svc);
  if (!byKind) bySvc.set(svc, (byKind = new Map()));
  const kind = `${reporter}|${responseFlags}|${mtls}`;
  let labels = byKind.get(kind);
  if (!labels) byKind.set(kind, (labels = newTcpLabels(reporter, src, dst, svc, responseFlags, mtls)));
  return labels;
}

function newTcpLabels(
  reporter: "source" | "destination",
  src: PeerLabels,
  dst: PeerLabels,
  svc: ServiceLabels,
  responseFlags: string,
  mtls: boolean,
): TcpLabels {
  return {
    reporter,
    source_workload: name(src.workload, LONG),
    source_canonical_service: name(src.canonicalService, LONG),
    source_canonical_revision: name(src.canonicalRevision, SHORT),
    source_workload_namespace: name(src.namespace, SHORT),
    source_principal: principal(src.principal),
    source_app: name(src.app, LONG),
    source_version: name(src.version, SHORT),
    source_cluster: name(src.cluster, LONG),
    destination_service: name(svc.hostname, LONG),
    destination_service_namespace: name(svc.namespace, SHORT),
    destination_service_name: name(svc.name, SHORT),
    destination_workload: name(dst.workload, LONG),
    destination_canonical_service: name(dst.canonicalService, LONG),
    destination_canonical_revision: name(dst.canonicalRevision, SHORT),
    destination_workload_namespace: name(dst.namespace, SHORT),
    destination_principal: principal(dst.principal),
    destination_app: name(dst.app, LONG),
    destination_version: name(dst.version, SHORT),
    destination_cluster: name(dst.cluster, LONG),
    request_protocol: "tcp",
    response_flags: responseFlags,
    connection_security_policy: mtls ? "mutual_tls" : "unknown",
    source_region: name(src.region, SHORT),
    source_zone: name(src.zone, SHORT),
    destination_region: name(dst.region, SHORT),
    destination_zone: name(dst.zone, SHORT),
  };
}

export interface MetricsSources {
  activeTunnels(): { inbound: number; outbound: number };
  pool(): { connections: number; dials: number; reused: number };
}

/**
 * Bounds on istio_tcp_* series. Over `maxSeries`, a new label set is counted on its overflow series (every peer and
 * service label "unknown"). A series with no open tunnel that has not changed for `seriesTtlMs` is removed (its
 * counters disappear from /metrics; a later tunnel starts them again from 0, which Prometheus treats as a counter
 * reset — ztunnel and Envoy drop stale stats the same way).
 */
export interface MetricsLimits {
  maxSeries: number;
  seriesTtlMs: number;
}

/** Defaults: 10,000 series, 5 minutes (env HBONE_METRICS_MAX_SERIES, HBONE_METRICS_SERIES_TTL_S). */
export function defaultMetricsLimits(): MetricsLimits {
  return {
    maxSeries: envInt("HBONE_METRICS_MAX_SERIES") ?? 10_000,
    seriesTtlMs: (envInt("HBONE_METRICS_SERIES_TTL_S") ?? 300) * 1000,
  };
}

/** Labels kept on an overflow series; every other one becomes "unknown". */
const OVERFLOW_KEEPS: ReadonlySet<TcpLabel> = new Set([
  "reporter",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
]);

function overflowLabels(labels: TcpLabels): TcpLabels {
  const out = { ...labels };
  for (const l of TCP_LABELS) if (!OVERFLOW_KEEPS.has(l)) out[l] = "unknown";
  return out;
}

/** One label set's numbers, kept as plain numbers and written out only at scrape time (host/tcp-series). */
class Series implements TcpNumbers {
  opened = 0;
  closed = 0;
  failed = 0;
  received = 0;
  sent = 0;
  open = 0;
  /** When a number last changed (ms), for expiry. */
  changed = Date.now();
  constructor(readonly labels: TcpLabels) {}
}

/** What a tunnel's bytes are read from: an object the tunnel keeps anyway (no closure per tunnel). */
export interface ByteSource {
  tunnelBytes(): TunnelBytes;
}

/**
 * One tunnel's record (ztunnel's ConnectionResult). Made by Metrics.opened it is counted as opened at once; made by
 * Metrics.checking it records nothing until accept() (then counted on its labels) or close() (then counted, opened
 * and closed, on its refused labels). Its bytes are read from the stream's or socket's own counters at scrape time
 * and at close.
 */
export class ConnectionResult {
  // Plain numbers, not a TunnelBytes object: an idle tunnel keeps this record for its whole life.
  private publishedIn = 0;
  private publishedOut = 0;
  private source: ByteSource | null = null;
  private series?: Series;
  closed = false;

  constructor(
    private readonly m: Metrics,
    readonly labels: TcpLabels,
    private readonly refusedLabels = labels,
  ) {}

  /** Counts the tunnel as opened on its labels (it passed the checks). Once only; not after close. */
  accept(): void {
    if (this.series || this.closed) return;
    this.series = this.m.seriesFor(this.labels);
    this.series.opened++;
    this.series.open++;
    this.series.changed = Date.now();
    this.m.open.add(this);
  }

  /** Where this tunnel's byte counts are read from (a stream's or socket's own counters). */
  countFrom(source: ByteSource): void {
    this.source = source;
  }

  /** Adds the bytes moved since the last call (client→server is "received"). */
  publish(): void {
    if (!this.series || !this.source) return;
    const now = this.source.tunnelBytes();
    const received = now.clientToServer - this.publishedIn;
    const sent = now.serverToClient - this.publishedOut;
    if (received === 0 && sent === 0) return;
    this.series.received += received;
    this.series.sent += sent;
    this.series.changed = Date.now();
    this.publishedIn = now.clientToServer;
    this.publishedOut = now.serverToClient;
  }

  /**
   * The tunnel ended. `failed`: it never carried data (connect failure, refusal); `flags` is then
   * the response flag its closed and failed series carry (as ztunnel records it at the end).
   */
  close(failed = false, flags?: string): void {
    if (this.closed) return;
    if (!this.series) {
      // Refused (or gone) before it passed the checks: counted on labels the peer cannot choose.
      this.series = this.m.seriesFor(this.refusedLabels);
      this.series.opened++;
    } else {
      this.publish();
      this.m.open.delete(this);
      this.series.open--;
    }
    this.closed = true;
    const end = flags ? this.m.seriesFor({ ...this.series.labels, response_flags: flags }) : this.series;
    end.closed++;
    if (failed) end.failed++;
    this.series.changed = end.changed = Date.now();
  }
}

/** A process's metrics as a --workers primary gathers them: prom-client's families as JSON, and the istio_tcp_*
 *  series' numbers. */
export interface MetricsSnapshot {
  registry: MetricsJson;
  tcp: TcpNumbers[];
}

export class Metrics {
  readonly registry = new client.Registry();
  /** Tunnels whose bytes are not fully published yet. */
  readonly open = new Set<ConnectionResult>();
  readonly limits: MetricsLimits;
  private readonly series = new Map<string, Series>();
  /** Label sets handed out by shared() that have no series (yet): refused-side labels, mostly. */
  private readonly interned = new Map<string, TcpLabels>();
  /** The series key of each shared label object (seriesFor need not build it again). */
  private readonly keys = new WeakMap<TcpLabels, string>();
  /** Label sets counted on an overflow series because the cap was reached; series removed by expiry. */
  readonly seriesStats = { overflowed: 0, expired: 0 };
  private lastSweep = 0;

  constructor(sources: MetricsSources, info: { version: string }, limits?: Partial<MetricsLimits>) {
    this.limits = { ...defaultMetricsLimits(), ...limits };
    const registers = [this.registry];
    processMetrics(this.registry);
    new client.Gauge({
      name: "istio_build",
      help: "Istio component build info",
      labelNames: ["component", "tag"],
      registers,
      aggregator: "first", // an info series: the same in every --workers worker
    }).set({ component: "ztunnel", tag: info.version }, 1);
    const all = this.series;
    const stats = this.seriesStats;
    new client.Gauge({
      name: "hbone_metrics_series",
      help: "istio_tcp_* label sets kept now (capped; idle ones expire)",
      registers,
      collect() {
        this.set(all.size);
      },
    });
    new client.Gauge({
      name: "hbone_metrics_series_overflowed",
      help: "Tunnels counted on an all-unknown series because the series cap was reached",
      registers,
      collect() {
        this.set(stats.overflowed);
      },
    });
    new client.Gauge({
      name: "hbone_active_tunnels",
      help: "Tunnels open now, by direction",
      labelNames: ["direction"],
      registers,
      collect() {
        const t = sources.activeTunnels();
        this.set({ direction: "inbound" }, t.inbound);
        this.set({ direction: "outbound" }, t.outbound);
      },
    });
    new client.Gauge({
      name: "hbone_pool_connections",
      help: "Pooled HBONE connections",
      registers,
      collect() {
        this.set(sources.pool().connections);
      },
    });
    new client.Gauge({
      name: "hbone_pool_dials",
      help: "HBONE connections dialled so far (one TLS handshake each)",
      registers,
      collect() {
        this.set(sources.pool().dials);
      },
    });
    new client.Gauge({
      name: "hbone_wasm_memory_bytes",
      help: "Linear memory of the Wasm codec (bounded: 1 GiB maximum, 768 MiB heap budget)",
      registers,
      collect() {
        this.set(getCodec().memoryBytes);
      },
    });
  }

  /** Label sets kept now. */
  get seriesCount(): number {
    return this.series.size;
  }

  /** The numbers of one label set (created on first use; over the cap, its overflow series). */
  seriesFor(labels: TcpLabels): Series {
    const key = this.keys.get(labels) ?? keyOf(labels);
    const s = this.series.get(key);
    if (s) return s;
    if (this.series.size >= this.limits.maxSeries) {
      // Full: make room from idle series first (a sweep at most once a second, so a flood does not loop).
      const now = Date.now();
      if (now - this.lastSweep >= 1000) this.expire(now);
      if (this.series.size >= this.limits.maxSeries) {
        this.seriesStats.overflowed++;
        const o = overflowLabels(labels);
        const ok = keyOf(o);
        let over = this.series.get(ok);
        if (!over) this.series.set(ok, (over = new Series(o))); // a handful at most: beyond the cap on purpose
        return over;
      }
    }
    const created = new Series(labels);
    this.series.set(key, created);
    return created;
  }

  /** Removes series with no open tunnel that have not changed for seriesTtlMs. */
  expire(now = Date.now()): void {
    this.lastSweep = now;
    for (const [key, s] of this.series) {
      if (s.open === 0 && now - s.changed >= this.limits.seriesTtlMs) {
        this.series.delete(key);
        this.seriesStats.expired++;
      }
    }
  }

  /** Counts a tunnel as opened now (outbound: before dialling). */
  opened(labels: TcpLabels): ConnectionResult {
    const r = new ConnectionResult(this, this.shared(labels));
    r.accept();
    return r;
  }

  /**
   * A tunnel still being checked (inbound: before policy and the app dial): no series exists for it until
   * accept(). If it is refused or gone first, close() counts it on `refused` — labels built only from what the
   * peer cannot choose (config, its TLS identity) — so refused CONNECTs never create series from baggage.
   */
  checking(labels: TcpLabels, refused: TcpLabels = labels): ConnectionResult {
    return new ConnectionResult(this, this.shared(labels), refused === labels ? labels : this.shared(refused));
  }

  /**
   * One object per label set: every tunnel of a peer keeps the same one (an idle tunnel would otherwise hold
   * its own 27 strings twice). Bounded like the series; label objects are never changed once made.
   */
  private shared(labels: TcpLabels): TcpLabels {
    const key = this.keys.get(labels) ?? keyOf(labels);
    const known = this.series.get(key)?.labels ?? this.interned.get(key);
    if (known) return known;
    if (this.interned.size >= this.limits.maxSeries) this.interned.clear();
    this.interned.set(key, labels);
    this.keys.set(labels, key);
    return labels;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text of :15020, in pieces (host/admin writes them one by one). */
  async chunks(): Promise<string[]> {
    this.settle();
    return [(await this.registry.metrics()) + "\n", ...(await tcpText(this.series.values()))];
  }

  /** The same figures for a --workers primary to sum over its workers (host/workers). */
  async snapshot(): Promise<MetricsSnapshot> {
    this.settle();
    const tcp = [...this.series.values()].map((s) => ({ labels: s.labels, ...numbersOf(s) }));
    return { registry: await this.registry.getMetricsAsJSON(), tcp };
  }

  /** Tunnels counted so far, over every series still kept. */
  totals(): { opened: number; closed: number } {
    let opened = 0,
      closed = 0;
    for (const s of this.series.values()) {
      opened += s.opened;
      closed += s.closed;
    }
    return { opened, closed };
  }

  private settle(): void {
    // Bytes first, so a series whose last tunnel just moved data is not taken for idle.
    for (const r of this.open) r.publish();
    this.expire();
  }
}
