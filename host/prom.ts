// The parts of prom-client the proxy uses, and the process metrics it exports. prom-client's index loads all of
// it (Summary with its t-digest, Pushgateway, a dozen default collectors, @opentelemetry/api): ~2 MB of an idle
// proxy's memory for code it never runs. Its package has no "exports" map, so its modules are required one by one.
// The process metrics keep prom-client's names (dashboards use them) and are computed when scraped.

import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import type * as Prom from "prom-client";

const require = createRequire(import.meta.url);

export const client = {
  Registry: require("prom-client/lib/registry") as typeof Prom.Registry,
  Counter: require("prom-client/lib/counter") as typeof Prom.Counter,
  Gauge: require("prom-client/lib/gauge") as typeof Prom.Gauge,
  Histogram: require("prom-client/lib/histogram") as typeof Prom.Histogram,
};

/** A registry's figures as prom-client's getMetricsAsJSON() gives them. */
export type MetricsJson = Prom.MetricObjectWithValues<Prom.MetricValue<string>>[];

/** Prometheus text of the sum of several registries' getMetricsAsJSON() (prom-client's AggregatorRegistry rules:
 *  each metric combined by its `aggregator`, a sum unless named). Loaded only by a --workers primary. */
export function aggregateMetrics(registries: MetricsJson[]): Promise<string> {
  const { aggregate } = require("prom-client/lib/cluster") as typeof Prom.AggregatorRegistry;
  return aggregate(registries).metrics();
}

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

/** The open-files limit (soft), from /proc/self/limits; undefined where it cannot be read. */
function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What an operator of the proxy reads about the process, under prom-client's default names: CPU
 * (process_cpu_{user,system,}_seconds_total), process_resident_memory_bytes, process_start_time_seconds,
 * process_{open,max}_fds, nodejs_heap_size_{total,used}_bytes, nodejs_external_memory_bytes, the event-loop lag
 * (nodejs_eventloop_lag_seconds at scrape, and min/max/mean/stddev/p50/p90/p99 of a 10 ms monitor),
 * nodejs_gc_duration_seconds by kind, nodejs_version_info. Left out from prom-client's set: per-space heap sizes,
 * active handles/requests/resources, virtual memory.
 */
export function processMetrics(registry: Prom.Registry): void {
  const registers = [registry];
  // How a --workers primary combines a gauge over its processes (host/workers): a sum unless named, as in
  // prom-client's own collectors.
  const gauge = (name: string, help: string, value: () => number | undefined, aggregator?: Prom.Aggregator) =>
    new client.Gauge({
      name,
      help,
      registers,
      ...(aggregator && { aggregator }),
      collect() {
        const v = value();
        if (v !== undefined) this.set(v);
      },
    });
  const counter = (name: string, help: string, value: () => number) =>
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value());
      },
    });

  const cpu = () => process.cpuUsage();
  counter("process_cpu_user_seconds_total", "Total user CPU time spent in seconds.", () => cpu().user / 1e6);
  counter("process_cpu_system_seconds_total", "Total system CPU time spent in seconds.", () => cpu().system / 1e6);
  counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", () => {
    const c = cpu();
    return (c.user + c.system) / 1e6;
  });
  const start = Math.round(Date.now() / 1000 - process.uptime());
  gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", () => start, "min");
  gauge("process_resident_memory_bytes", "Resident memory size in bytes.", () => process.memoryUsage.rss());
  gauge("process_open_fds", "Number of open file descriptors.", () => {
    try {
      return readdirSync("/proc/self/fd").length - 1; // less the directory's own descriptor
    } catch {
      return undefined;
    }
  });
  const limit = maxFds();
  gauge("process_max_fds", "Maximum number of open file descriptors.", () => limit, "min");
  gauge(
    "nodejs_heap_size_total_bytes",
    "Process heap size from Node.js in bytes.",
    () => process.memoryUsage().heapTotal,
  );
  gauge(
    "nodejs_heap_size_used_bytes",
    "Process heap size used from Node.js in bytes.",
    () => process.memoryUsage().heapUsed,
  );
  gauge("nodejs_external_memory_bytes", "Node.js external memory size in bytes.", () => process.memoryUsage().external);

  // Lag now (how long a setImmediate waits within the scrape: prom-client awaits an async collect), and the
  // distribution since start-up.
  new client.Gauge({
    name: "nodejs_eventloop_lag_seconds",
    help: "Lag of event loop in seconds.",
    registers,
    aggregator: "average",
    collect() {
      const t0 = process.hrtime.bigint();
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          this.set(Number(process.hrtime.bigint() - t0) / 1e9);
          resolve();
        }),
      );
    },
  });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const lagStats: [string, string, () => number, Prom.Aggregator][] = [
    ["min", "The minimum recorded event loop delay.", () => delay.min, "min"],
    ["max", "The maximum recorded event loop delay.", () => delay.max, "max"],
    ["mean", "The mean of the recorded event loop delays.", () => delay.mean, "average"],
    ["stddev", "The standard deviation of the recorded event loop delays.", () => delay.stddev, "average"],
    ["p50", "The 50th percentile of the recorded event loop delays.", () => delay.percentile(50), "average"],
    ["p90", "The 90th percentile of the recorded event loop delays.", () => delay.percentile(90), "average"],
    ["p99", "The 99th percentile of the recorded event loop delays.", () => delay.percentile(99), "average"],
  ];
  for (const [stat, help, ns, how] of lagStats)
    gauge(`nodejs_eventloop_lag_${stat}_seconds`, help, () => ns() / 1e9, how);

  const gc = new client.Histogram({
    name: "nodejs_gc_duration_seconds",
    help: "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
    labelNames: ["kind"],
    buckets: [0.001, 0.01, 0.1, 1, 2, 5],
    registers,
  });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? -1];
      if (kind) gc.observe({ kind }, e.duration / 1000);
    }
  }).observe({ entryTypes: ["gc"] });

  const [major, minor, patch] = process.versions.node.split(".");
  new client.Gauge({
    name: "nodejs_version_info",
    help: "Node.js version info.",
    labelNames: ["version", "major", "minor", "patch"],
    registers,
    aggregator: "first",
  }).set({ version: process.version, major, minor, patch }, 1);
}
