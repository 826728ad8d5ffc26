// hbone-wasm against its peers and limits, as real processes on loopback (see topologies.ts):
// direct (the floor), tls-pipe (the ceiling of a TLS tunnel in Node), node-http2 (the same HBONE
// job on node:http2, same windows) and hbone-wasm (two `hbone proxy` processes). Workloads follow
// ztunnel's benches and Istio's published load test:
//
//   idle        RSS of each proxy with 0, 1000 and 10000 idle open tunnels: bytes per tunnel
//   rr          1 KiB request / 1 KiB response on 8 long-lived connections at a fixed 1000 req/s:
//               proxy vCPU per 1000 req/s (/proc/PID/stat), latency p50/p90/p99 added over direct
//   rate        new tunnels per second (open, 1 byte each way, close), 64 concurrent clients
//   throughput  1 GiB over one tunnel and over 8 parallel tunnels: MB/s and proxy CPU s per GiB
//
// The cross-network topologies (hbone-double, node-http2-double: source proxy -> east-west gateway
// -> destination proxy; tls-pipe-double, their floor) run rr and throughput only, compared with their
// single-HBONE peers and the floor.
//
// Each workload runs on every topology before the next workload starts, so ratios compare figures
// taken minutes apart at most. Idle memory runs first, on proxies that have done nothing else yet.

import { NODE_FLAGS } from "../../host/runtime-config.js";
import { mkdtempSync, rmSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPluginCa } from "../../host/identity/ca.js";
import type { Measure, Ratio, RunOptions, SuiteResult, Target } from "../harness.js";
import {
  cpuSeconds,
  nofileLimits,
  onExit,
  Progress,
  rssBytes,
  spawnNode,
  type Child,
  type SpawnOptions,
} from "./procs.js";
import {
  buildTopology,
  DEFAULT_TOPOLOGIES,
  DOUBLE_TOPOLOGIES,
  SERVER_IP,
  type AppPorts,
  type Proxy,
  type Topology,
  type TopologyName,
} from "./topologies.js";

export const WORKLOADS = ["idle", "rr", "rate", "throughput"] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Istio's published ztunnel figures per 1000 requests/s (istio.io, "Performance and scalability", ambient). */
export const ZTUNNEL = { vcpuPer1000: 0.06, memMBPer1000: 12 };
export const ZTUNNEL_COLUMN = "ztunnel (Istio, published)";

const TUNABLE = "glibc.cpu.x86_rep_movsb_threshold=1000000000";

/** Ratio columns of the on-request topologies: double against single HBONE, ours against node:http2's, 2 workers against 1,
 *  this build against another (hbone-wasm-base). */
const DOUBLE_PAIRS: [TopologyName, TopologyName][] = [
  ["hbone-double", "hbone-wasm"],
  ["node-http2-double", "node-http2"],
  ["hbone-double", "node-http2-double"],
  ["hbone-double", "tls-pipe-double"], // each proxy against its floor (TLS in TLS, no HTTP/2)
  ["hbone-wasm-w2", "hbone-wasm"],
  ["hbone-wasm", "hbone-wasm-base"],
];

interface Params {
  bulkBytes: number;
  bulkRounds: number;
  /** Rounds of rr and rate (interleaved over the topologies; the best figure of the rounds is kept). */
  rounds: number;
  rrConns: number;
  rrRate: number;
  rrWarmupMs: number;
  rrMs: number;
  rateConc: number;
  rateMs: number;
  idleCounts: number[];
}

const FULL: Params = {
  bulkBytes: 1 << 30,
  bulkRounds: 2,
  rounds: 2,
  rrConns: 8,
  rrRate: 1000,
  rrWarmupMs: 1000,
  rrMs: 15_000,
  rateConc: 64,
  rateMs: 10_000,
  idleCounts: [1000, 10_000],
};
const QUICK: Params = {
  bulkBytes: 64 << 20,
  bulkRounds: 1,
  rounds: 1,
  rrConns: 8,
  rrRate: 1000,
  rrWarmupMs: 200,
  rrMs: 1500,
  rateConc: 64,
  rateMs: 1000,
  idleCounts: [100, 400],
};

export interface ProxyBenchOptions extends RunOptions {
  /** Only these topologies (default: DEFAULT_TOPOLOGIES). */
  topologies?: TopologyName[];
  /** Only these workloads (default: all). */
  workloads?: Workload[];
  /** Extra node flags for proxy processes (profiling). */
  proxyNodeArgs?: (topology: TopologyName, role: Proxy["role"]) => string[];
  /** How long a proxy may take to exit on SIGTERM (a profile is written at exit). */
  stopGraceMs?: number;
}

type Msg =
  | { type: "progress"; done: number; total: number; extra?: string }
  | { type: "mark"; phase: "start" | "end" }
  | { type: "result"; result: Record<string, number> }
  | { type: "error"; message: string };

/** The client app process: one command at a time, progress shown as it comes. */
class ClientApp {
  constructor(
    readonly child: Child,
    private readonly progress: Progress,
  ) {}

  run(
    cmd: object,
    label: string,
    show: (done: number, total: number, extra?: string) => string,
    onMark?: (phase: "start" | "end") => void,
  ): Promise<Record<string, number>> {
    const proc = this.child.proc;
    return new Promise((resolve, reject) => {
      const done = () => {
        proc.off("message", onMsg);
        proc.off("exit", onExit);
      };
      const onMsg = (m: Msg) => {
        if (m.type === "progress") this.progress.update(`  ${label}: ${show(m.done, m.total, m.extra)}`);
        else if (m.type === "mark") onMark?.(m.phase);
        else if (m.type === "result") {
          done();
          resolve(m.result);
        } else if (m.type === "error") {
          done();
          reject(new Error(`${label}: ${m.message}`));
        }
      };
      const onExit = () => {
        done();
        reject(new Error(`${label}: the client app exited\n${this.child.tail()}`));
      };
      proc.on("message", onMsg);
      proc.once("exit", onExit);
      proc.send(cmd);
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1 << 20;
const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const pctOf = (done: number, total: number) => `${fmt((100 * done) / Math.max(total, 1))}%`;

function alive(t: Topology): void {
  for (const p of t.proxies) {
    if (p.child.proc.exitCode !== null || p.child.proc.signalCode !== null) {
      throw new Error(
        `${t.name}: ${p.child.name} exited (${p.child.proc.exitCode ?? p.child.proc.signalCode})\n${p.child.tail()}`,
      );
    }
  }
}

/**
 * The topologies with their indexes, in the order of one round: each round starts one further along. A topology's
 * place in a round moves its figures (in two narrowed runs of 2026-12-02 the same code ran 6 % and 38 % more vCPU
 * per request in second place than in third), so rounds rotate it and each figure is the best of its places.
 */
function inRound<T>(topologies: T[], round: number): [number, T][] {
  const all = [...topologies.entries()];
  const k = round % Math.max(1, all.length);
  return [...all.slice(k), ...all.slice(0, k)];
}

/** A proxy's processes: its own and, with --workers, its workers' (CPU and RSS are summed over them). */
const pidsOf = (p: Proxy) => [p.child.pid, ...(p.workers ?? [])];
const cpuOf = (t: Topology) => t.proxies.map((p) => pidsOf(p).reduce((a, pid) => a + cpuSeconds(pid), 0));
const rssOf = (p: Proxy) => pidsOf(p).reduce((a, pid) => a + rssBytes(pid), 0);

export async function runProxyBench(opts: ProxyBenchOptions): Promise<SuiteResult> {
  const P = opts.quick ? QUICK : FULL;
  const topoNames = opts.topologies ?? [...DEFAULT_TOPOLOGIES];
  const workloads = opts.workloads ?? [...WORKLOADS];
  const progress = new Progress();
  const notes: string[] = [];
  const measures: Measure[] = [];
  const add = (metric: string, unit: string, topology: string, value: number, lowerIsBetter = false) => {
    if (Number.isFinite(value)) measures.push({ metric, unit, topology, value, lowerIsBetter });
  };
  /** Keeps the better of this and an earlier round's figure. */
  const best = (metric: string, unit: string, topology: string, value: number, lowerIsBetter = false) => {
    const m = measures.find((x) => x.metric === metric && x.topology === topology);
    if (!m) return add(metric, unit, topology, value, lowerIsBetter);
    if (Number.isFinite(value) && (lowerIsBetter ? value < m.value : value > m.value)) m.value = value;
  };
  const get = (metric: string, topology: string) =>
    measures.find((m) => m.metric === metric && m.topology === topology)?.value;
  const started = Date.now();
  const elapsed = () => `${fmt((Date.now() - started) / 1000)} s`;

  // Open files: 10000 idle tunnels are 10000 sockets in the client, the app server and each proxy;
  // the tls-pipe hops hold two per tunnel (plain + TLS).
  const maxIdle = Math.max(...P.idleCounts);
  const wantFds = 2 * maxIdle + 1024;
  const lim = nofileLimits(wantFds);
  const raise = lim.soft < wantFds && lim.canRaise;
  const fdLimit = raise ? wantFds : lim.soft;
  const details: Record<string, unknown> = {
    params: P,
    nofile: { soft: lim.soft, hard: lim.hard, children: fdLimit, raised: raise },
  };
  if (raise)
    notes.push(
      `open-files limit ${lim.soft} (hard ${lim.hard}) raised to ${wantFds} for the benchmark's child processes`,
    );

  const spawn: SpawnOptions = {
    env: {
      GLIBC_TUNABLES: process.env.GLIBC_TUNABLES?.includes("x86_rep_movsb_threshold")
        ? process.env.GLIBC_TUNABLES
        : TUNABLE,
    },
    nofile: raise ? wantFds : undefined,
  };
  const dir = mkdtempSync(join(tmpdir(), "hbone-bench-"));
  const caDir = join(dir, "ca");
  const cleanup = onExit(() => rmSync(dir, { recursive: true, force: true }));
  const peer = (f: string) => fileURLToPath(new URL(`./peers/${f}`, import.meta.url));
  const topologies: Topology[] = [];
  let server: Child | undefined, clientChild: Child | undefined;

  try {
    progress.line(`proxies: plug-in CA, app server, client app, topologies ${topoNames.join(", ")}`);
    await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "bench" });
    server = await spawnNode("app server", peer("app-server.js"), [SERVER_IP], spawn);
    const app = server.ready as unknown as AppPorts;
    clientChild = await spawnNode("client app", peer("app-client.js"), [], { ...spawn, ipc: true });
    const client = new ClientApp(clientChild, progress);
    const startAll = async () => {
      for (const name of topoNames) {
        topologies.push(
          await buildTopology(name, {
            dir,
            caDir,
            app,
            spawn,
            proxyNodeArgs: opts.proxyNodeArgs ? (role) => opts.proxyNodeArgs!(name, role) : undefined,
          }),
        );
      }
      progress.line(`proxies: ${topologies.length} topologies up (${elapsed()})`);
    };
    await startAll();
    const step = (w: string, t: Topology, i: number) =>
      `[${workloads.indexOf(w as Workload) + 1}/${workloads.length} ${w}] ${t.name} (${i + 1}/${topologies.length}, ${elapsed()})`;

    // ---- idle tunnels: RSS of each proxy -----------------------------------------------------------
    if (workloads.includes("idle")) {
      for (const [i, t] of topologies.entries()) {
        if (t.proxies.length === 0 || DOUBLE_TOPOLOGIES.includes(t.name)) continue;
        alive(t);
        const label = step("idle", t, i);
        // Each tunnel holds one socket per process, two in the tls-pipe hops.
        const perTunnel = t.name === "tls-pipe" ? 2 : 1;
        const cap = Math.floor((fdLimit - 512) / perTunnel);
        const counts = P.idleCounts.map((n) => Math.min(n, cap));
        if (counts.some((n, k) => n < P.idleCounts[k])) {
          notes.push(
            `${t.name}: idle tunnels capped at ${cap} by the open-files limit ${fdLimit} (${perTunnel} per tunnel per hop)`,
          );
        }
        const ping = { op: "open", ...t.entry.ping, conc: 64, timeoutMs: opts.quick ? 30_000 : 120_000 };
        // One tunnel opened and closed first: the pooled connection and the code paths exist at "0".
        await client.run({ ...ping, count: 1 }, label, (d, n) => `${d}/${n}`);
        await client.run({ op: "close" }, label, () => "closing");
        await sleep(500);
        const rss0 = t.proxies.map((p) => rssOf(p));
        for (const [k, p] of t.proxies.entries())
          add(`idle: RSS with 0 tunnels, ${p.role}`, "MB", t.name, rss0[k] / 1e6, true);
        for (const n of counts) {
          const r = await client.run({ ...ping, count: n }, label, (d, tot) => `${d}/${tot} idle tunnels open`);
          if (r.open < n) throw new Error(`${label}: only ${r.open} of ${n} idle tunnels opened`);
          await sleep(opts.quick ? 300 : 1000);
          alive(t);
          const rss = t.proxies.map((p) => rssOf(p));
          const per = rss.map((b, k) => (b - rss0[k]) / n);
          const nominal = P.idleCounts[counts.indexOf(n)];
          for (const [k, p] of t.proxies.entries())
            add(`idle: bytes per tunnel at ${fmt(nominal)}, ${p.role}`, "B", t.name, per[k], true);
          progress.line(
            `  ${label}: ${fmt(n)} idle tunnels: ${t.proxies
              .map((p, k) => `${p.role} ${fmt(rss[k] / 1e6, 1)} MB (+${fmt(per[k])} B/tunnel)`)
              .join(", ")}`,
          );
        }
        const c = await client.run({ op: "close" }, label, () => "closing");
        progress.update(`  ${label}: closed ${c.closed}`, true);
        await sleep(opts.quick ? 300 : 1000);
      }
    }

    // Fresh proxies for the rest: 10000 tunnels leave heaps grown (RSS in rr would show it).
    if (workloads.includes("idle") && workloads.some((w) => w !== "idle")) {
      progress.line(`proxies: restarting the proxies after the idle workload (${elapsed()})`);
      await Promise.all(topologies.splice(0).map((t) => t.stop()));
      await startAll();
    }

    // ---- request/response at a fixed rate ------------------------------------------------------------
    if (workloads.includes("rr")) {
      for (let round = 0; round < P.rounds; round++)
        for (const [i, t] of inRound(topologies, round)) {
          alive(t);
          const label = `${step("rr", t, i)}${P.rounds > 1 ? ` round ${round + 1}/${P.rounds}` : ""}`;
          let cpu0: number[] = [],
            cpu1: number[] = [],
            t0 = 0,
            t1 = 0;
          const r = await client.run(
            { op: "rr", ...t.entry.rr, conns: P.rrConns, rate: P.rrRate, warmupMs: P.rrWarmupMs, ms: P.rrMs },
            label,
            (d, n) => `${fmt(d / 1000, 1)}/${fmt(n / 1000, 1)} s`,
            (phase) => {
              if (phase === "start") {
                cpu0 = cpuOf(t);
                t0 = performance.now();
              } else {
                cpu1 = cpuOf(t);
                t1 = performance.now();
              }
            },
          );
          const rate = r.count / r.secs;
          best("rr: achieved rate", "req/s", t.name, rate);
          for (const p of ["p50", "p90", "p99"] as const) best(`rr: latency ${p}`, "µs", t.name, r[p], true);
          if (t.proxies.length > 0) {
            const wall = (t1 - t0) / 1000;
            const vcpu = t.proxies.map((_, k) => (cpu1[k] - cpu0[k]) / wall / (rate / 1000));
            for (const [k, p] of t.proxies.entries())
              best(`rr: vCPU per 1000 req/s, ${p.role}`, "vCPU", t.name, vcpu[k], true);
            best(
              "rr: vCPU per 1000 req/s, per proxy (mean)",
              "vCPU",
              t.name,
              vcpu.reduce((a, b) => a + b, 0) / vcpu.length,
              true,
            );
            const rss = t.proxies.map((p) => rssOf(p) / 1e6);
            best(
              "rr: RSS per proxy at the end (mean)",
              "MB",
              t.name,
              rss.reduce((a, b) => a + b, 0) / rss.length,
              true,
            );
          }
          if (r.late > 0)
            notes.push(`rr ${t.name}: ${r.late} requests went out more than one interval late (the loop fell behind)`);
          const vcpuMean = t.proxies.length
            ? t.proxies.reduce((a, _, k) => a + (cpu1[k] - cpu0[k]), 0) /
              ((t1 - t0) / 1000) /
              (rate / 1000) /
              t.proxies.length
            : NaN;
          progress.line(
            `  ${label}: ${fmt(rate)} req/s, p50 ${fmt(r.p50)} µs, p99 ${fmt(r.p99)} µs` +
              (t.proxies.length ? `, ${fmt(vcpuMean, 3)} vCPU/1000 req/s per proxy` : ""),
          );
        }
      add("rr: vCPU per 1000 req/s, per proxy (mean)", "vCPU", ZTUNNEL_COLUMN, ZTUNNEL.vcpuPer1000, true);
      add("rr: RSS per proxy at the end (mean)", "MB", ZTUNNEL_COLUMN, ZTUNNEL.memMBPer1000, true);
      const direct = topologies.find((t) => t.name === "direct");
      if (direct) {
        for (const t of topologies) {
          if (t === direct) continue;
          for (const p of ["p50", "p90", "p99"] as const) {
            const a = get(`rr: latency ${p}`, t.name),
              b = get(`rr: latency ${p}`, "direct");
            if (a !== undefined && b !== undefined)
              add(`rr: latency ${p} added over direct`, "µs", t.name, a - b, true);
          }
        }
      }
    }

    // ---- tunnel rate ---------------------------------------------------------------------------------
    if (workloads.includes("rate")) {
      for (let round = 0; round < P.rounds; round++)
        for (const [i, t] of inRound(topologies, round)) {
          if (DOUBLE_TOPOLOGIES.includes(t.name)) continue;
          alive(t);
          const label = `${step("rate", t, i)}${P.rounds > 1 ? ` round ${round + 1}/${P.rounds}` : ""}`;
          const r = await client.run(
            { op: "rate", ...t.entry.ping, conc: P.rateConc, ms: P.rateMs, max: 1_000_000 },
            label,
            (d, n, extra) => `${fmt(d / 1000, 1)}/${fmt(n / 1000, 1)} s, ${extra ?? ""}`,
          );
          const perSec = r.count / r.secs;
          best(`tunnel rate, ${P.rateConc} clients`, "tunnels/s", t.name, perSec);
          if (r.errors > 0) notes.push(`rate ${t.name}: ${r.errors} tunnels failed and were retried`);
          progress.line(`  ${label}: ${fmt(perSec)} tunnels/s (${r.count} in ${fmt(r.secs, 1)} s)`);
          await sleep(opts.quick ? 200 : 1000); // let the closed tunnels drain
        }
    }

    // ---- throughput ------------------------------------------------------------------------------------
    if (workloads.includes("throughput")) {
      const top = new Map<string, { mbps: number; cpu: number; each: number[] }>();
      for (let round = 0; round < P.bulkRounds; round++) {
        for (const [i, t] of inRound(topologies, round)) {
          for (const conns of [1, 8]) {
            alive(t);
            const label = `${step("throughput", t, i)} ${conns} tunnel${conns > 1 ? "s" : ""}, round ${round + 1}/${P.bulkRounds}`;
            const c0 = cpuOf(t);
            const r = await client.run(
              { op: "bulk", ...t.entry.sink, bytes: P.bulkBytes, conns, timeoutMs: 300_000 },
              label,
              (d, n) => `${fmt(d / MiB)}/${fmt(n / MiB)} MiB (${pctOf(d, n)})`,
            );
            const c1 = cpuOf(t);
            const mbps = r.bytes / r.secs / 1e6;
            const each = c1.map((b, k) => (b - c0[k]) / (r.bytes / 2 ** 30));
            const cpu = each.reduce((a, b) => a + b, 0);
            const key = `${t.name}|${conns}`;
            const prev = top.get(key);
            // Best throughput of the rounds; CPU per GiB: the lowest of the rounds (each proxy's too).
            top.set(key, {
              mbps: Math.max(prev?.mbps ?? 0, mbps),
              cpu: Math.min(prev?.cpu ?? Infinity, cpu),
              each: each.map((c, k) => Math.min(prev?.each[k] ?? Infinity, c)),
            });
            progress.line(
              `  ${label}: ${fmt(mbps)} MB/s` +
                (t.proxies.length
                  ? `, proxies ${fmt(cpu, 2)} CPU s/GiB (` +
                    t.proxies.map((p, k) => `${p.role} ${fmt(each[k], 2)}`).join(", ") +
                    ")"
                  : ""),
            );
          }
        }
      }
      for (const t of topologies) {
        for (const conns of [1, 8]) {
          const b = top.get(`${t.name}|${conns}`)!;
          const n = `${conns} tunnel${conns > 1 ? "s" : ""}`;
          add(`throughput, ${n}`, "MB/s", t.name, b.mbps);
          if (t.proxies.length) add(`proxy CPU per GiB, ${n}`, "CPU s", t.name, b.cpu, true);
          for (const [k, p] of t.proxies.entries())
            add(`proxy CPU per GiB, ${n}, ${p.role}`, "CPU s", t.name, b.each[k], true);
        }
      }
    }
  } finally {
    progress.update("  stopping the benchmark processes", true);
    await Promise.all(topologies.map((t) => Promise.all(t.proxies.map((p) => p.child.stop(opts.stopGraceMs)))));
    if (clientChild) {
      clientChild.proc.send({ op: "exit" });
      await clientChild.stop(1000);
    }
    await server?.stop(1000);
    rmSync(dir, { recursive: true, force: true });
    cleanup.cancel();
  }

  // ---- ratios and targets ---------------------------------------------------------------------------------
  const ratios: Ratio[] = [];
  const ratio = (metric: string, ours: string, base: string): number | undefined => {
    const a = get(metric, ours),
      b = get(metric, base);
    if (a === undefined || b === undefined || b === 0) return undefined;
    const value = a / b;
    ratios.push({
      name: `${metric}: ${ours} / ${base}`,
      ours: `${metric} (${ours})`,
      baseline: `${metric} (${base})`,
      value,
    });
    return value;
  };
  const metrics = [...new Set(measures.map((m) => m.metric))];
  for (const m of metrics) {
    if (m.startsWith("idle: RSS") || m === "rr: achieved rate") continue;
    ratio(m, "hbone-wasm", "tls-pipe");
    ratio(m, "hbone-wasm", "node-http2");
    for (const [a, b] of DOUBLE_PAIRS) ratio(m, a, b);
  }
  const find = (name: string) => ratios.find((r) => r.name === name)?.value;
  const targets: Target[] = [];
  const target = (name: string, value: number | undefined, goal: number, lowerIsBetter: boolean, unit?: string) => {
    if (value === undefined || !Number.isFinite(value)) return;
    targets.push({
      name,
      value,
      goal,
      met: lowerIsBetter ? value <= goal : value >= goal,
      lowerIsBetter,
      ...(unit ? { unit } : {}),
    });
  };
  // Issue #15's targets, each against a peer measured in this run. tls-pipe (the same TLS hops, sockets and
  // processes with no HTTP/2) is the floor: everything above it is ours.
  for (const [n, goal] of [
    ["1 tunnel", 0.95],
    ["8 tunnels", 0.9],
  ] as const) {
    target(`throughput ${n}: hbone-wasm / tls-pipe`, find(`throughput, ${n}: hbone-wasm / tls-pipe`), goal, false);
    target(
      `proxy CPU per GiB ${n}: hbone-wasm / tls-pipe`,
      find(`proxy CPU per GiB, ${n}: hbone-wasm / tls-pipe`),
      1.05,
      true,
    );
  }
  target(
    "vCPU per 1000 req/s per proxy (1 KiB each way): hbone-wasm / tls-pipe",
    find("rr: vCPU per 1000 req/s, per proxy (mean): hbone-wasm / tls-pipe"),
    1.0,
    true,
  );
  target(
    "p99 latency added over direct: hbone-wasm / node-http2",
    find("rr: latency p99 added over direct: hbone-wasm / node-http2"),
    0.8,
    true,
  );
  target(
    `new tunnels per second (${P.rateConc} clients): hbone-wasm / node-http2`,
    find(`tunnel rate, ${P.rateConc} clients: hbone-wasm / node-http2`),
    1.5,
    false,
  );
  for (const n of ["1 tunnel", "8 tunnels"]) {
    // Double HBONE against single HBONE (same run), and against the node:http2 nesting.
    target(
      `double HBONE throughput ${n}: hbone-double / hbone-wasm`,
      find(`throughput, ${n}: hbone-double / hbone-wasm`),
      0.8,
      false,
    );
    target(
      `double HBONE source proxy CPU per GiB ${n}: hbone-double / hbone-wasm outbound`,
      find(`proxy CPU per GiB, ${n}, outbound: hbone-double / hbone-wasm`),
      1.4,
      true,
    );
    const hop = get(`proxy CPU per GiB, ${n}`, "hbone-wasm");
    const gw = get(`proxy CPU per GiB, ${n}, gateway`, "hbone-double");
    if (hop !== undefined && gw !== undefined) {
      target(`double HBONE gateway CPU per GiB ${n} / a full proxy hop (hbone-wasm mean)`, gw / (hop / 2), 0.6, true);
    }
    target(
      `double HBONE throughput ${n}: hbone-double / node-http2-double`,
      find(`throughput, ${n}: hbone-double / node-http2-double`),
      1.0,
      false,
    );
    target(
      `double HBONE proxy CPU per GiB ${n}: hbone-double / node-http2-double`,
      find(`proxy CPU per GiB, ${n}: hbone-double / node-http2-double`),
      1.0,
      true,
    );
  }
  const idleMax = Math.max(...P.idleCounts);
  const roles = ["outbound", "inbound"];
  const perTunnel = roles.map((r) => get(`idle: bytes per tunnel at ${fmt(idleMax)}, ${r}`, "hbone-wasm"));
  if (perTunnel.every((v) => v !== undefined)) {
    target(
      `bytes per idle tunnel at ${fmt(idleMax)}: hbone-wasm (the larger proxy)`,
      Math.max(...(perTunnel as number[])),
      6 * 1024,
      true,
      "B",
    );
  }
  const idleRss = roles.map((r) => get(`idle: RSS with 0 tunnels, ${r}`, "hbone-wasm"));
  if (idleRss.every((v) => v !== undefined)) {
    target("RSS of an idle proxy: hbone-wasm (the larger)", Math.max(...(idleRss as number[])), 50, true, "MB");
  }

  const columns = [...topoNames, ...(measures.some((m) => m.topology === ZTUNNEL_COLUMN) ? [ZTUNNEL_COLUMN] : [])];
  notes.push(
    "proxies: real processes on loopback (client app, proxies, server app each their own process); TLS 1.3 " +
      "AES-GCM with mutual certificates from one Istio plug-in CA on every TLS hop; node-http2 and hbone-wasm " +
      "with 4 MiB stream / 16 MiB connection windows, 1 MiB frames, 100 streams per pooled connection",
    `node flags: hbone proxies run with ${NODE_FLAGS.join(" ")} as the hbone bin runs them (host/runtime-config.ts; ` +
      "hbone-wasm-base with its own build's); " +
      (process.env.HBONE_BENCH_PEER_NODE_FLAGS
        ? `the peers with ${process.env.HBONE_BENCH_PEER_NODE_FLAGS} (HBONE_BENCH_PEER_NODE_FLAGS)`
        : "the peers with Node's defaults"),
    "proxy CPU: utime + stime of the proxy processes from /proc/PID/stat (both proxies summed for CPU per GiB; " +
      "each proxy for vCPU per 1000 req/s, whose per-proxy mean is compared with ztunnel's published figure)",
    `rr: ${P.rrConns} connections, one request in flight each, paced to ${P.rrRate} req/s in all, ${P.rrWarmupMs} ms ` +
      `warm-up then ${P.rrMs / 1000} s measured, ${P.rounds} round(s), each in the order of the last one turned by one (each figure the best of the rounds); latency ` +
      "from write to the last response byte, in the client app",
    `rate: ${P.rateConc} client loops of connect, 1 byte each way, FIN, close, for ${P.rateMs / 1000} s, best of ${P.rounds} rotated round(s)`,
    `throughput: ${P.bulkBytes / MiB} MiB per run in 1 MiB writes, best of ${P.bulkRounds} rotated round(s) ` +
      "(CPU per GiB: the lowest of the rounds); MB = 10^6 bytes",
    `idle: one tunnel opened and closed, then RSS at 0; tunnels are held open by the client app (each checked ` +
      "with a 1-byte echo); bytes per tunnel = RSS growth / tunnels",
    "targets: issue #15's table; its row for a CPU hog (hbone-wasm / node-http2 ratios no worse than on a quiet " +
      "run) compares two runs: run again with --hog=2 and set the two tables side by side",
    `${ZTUNNEL_COLUMN}: about ${ZTUNNEL.vcpuPer1000} vCPU and ${ZTUNNEL.memMBPer1000} MB per 1000 req/s per ztunnel ` +
      "(Istio's performance and scalability page), a different machine and load generator: a reference, not a measurement",
    `${topologies.length + 2} busy processes share this machine's ${os.cpus().length} cores ` +
      "during a tunnel workload: absolute figures are lower bounds of what each proxy can do, ratios are the point",
  );
  return {
    suite: "proxies",
    figures: [],
    ratios,
    targets,
    notes,
    measures,
    columns,
    ratioColumns: (
      [["hbone-wasm", "tls-pipe"], ["hbone-wasm", "node-http2"], ...DOUBLE_PAIRS] as [string, string][]
    ).filter(([a, b]) => topoNames.includes(a as TopologyName) && topoNames.includes(b as TopologyName)),
    details,
  };
}
