// `node dist/bench/run.js --profile[=WORKLOAD] [--quick]`: runs one proxy workload (idle, rr, rate or
// throughput; default throughput) on node-http2 and hbone-wasm (or --topologies=a,b) with every proxy under
// `node --cpu-prof`, then prints each proxy's top self-time functions (source-mapped to host/*.ts
// lines where the code is ours) and its split by kind (our JS, Wasm, node internals, GC, native).
// Writes the summary to bench/results/profile-WORKLOAD.md; the .cpuprofile files stay in a
// temporary directory (printed) for Chrome DevTools.

import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { tmpdir } from "node:os";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../harness.js";
import { runProxyBench, WORKLOADS, type ProxyBenchOptions, type Workload } from "./proxy.bench.js";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  fn: string;
  where: string;
  kind: string;
  selfMs: number;
  share: number;
}

const maps = new Map<string, SourceMap | null>();

function sourceMapOf(jsPath: string): SourceMap | null {
  if (!maps.has(jsPath)) {
    const mapPath = `${jsPath}.map`;
    maps.set(jsPath, existsSync(mapPath) ? new SourceMap(JSON.parse(readFileSync(mapPath, "utf8"))) : null);
  }
  return maps.get(jsPath)!;
}

/** "host/h2/session.ts:123" for our compiled code, else the url and 1-based line. */
function locate(cf: CallFrame): string {
  if (!cf.url) return "";
  if (cf.url.startsWith("file://")) {
    const js = fileURLToPath(cf.url);
    const sm = sourceMapOf(js);
    const e = sm?.findEntry(cf.lineNumber, cf.columnNumber) as
      { originalSource?: string; originalLine?: number } | undefined;
    if (e?.originalSource) {
      const src = e.originalSource.startsWith("file://")
        ? fileURLToPath(e.originalSource)
        : resolve(dirname(js), e.originalSource);
      return `${relative(repoRoot(), src)}:${(e.originalLine ?? 0) + 1}`;
    }
    return `${relative(repoRoot(), js)}:${cf.lineNumber + 1}`;
  }
  return `${cf.url}:${cf.lineNumber + 1}`;
}

function kindOf(cf: CallFrame, where: string): string {
  const f = cf.functionName;
  if (f === "(garbage collector)") return "GC";
  if (f === "(idle)") return "idle";
  if (f === "(program)") return "program (V8/native, unattributed)";
  if (cf.url.startsWith("wasm://")) return "Wasm";
  if (where.startsWith("host/")) return "our JS (host/)";
  if (where.startsWith("bench/")) return "bench peer JS";
  if (where.startsWith("assembly/")) return "Wasm";
  if (cf.url.startsWith("node:")) return "node internals (JS)";
  if (where.includes("node_modules")) return "dependencies";
  if (!cf.url) return "native (C++ bindings, builtins)";
  return "other";
}

export interface Summary {
  busyMs: number;
  spots: HotSpot[];
  kinds: [string, number][];
  /** Self time by (leaf function, nearest caller in host/): where our code spends, natives included. */
  viaOurs: HotSpot[];
  /** Inclusive time of our (host/) functions. */
  inclusive: HotSpot[];
}

export function summarize(file: string, top = 25): Summary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const whereOf = new Map<number, string>();
  const where = (id: number) => {
    let w = whereOf.get(id);
    if (w === undefined) whereOf.set(id, (w = locate(byId.get(id)!)));
    return w;
  };
  const self = new Map<number, number>();
  // timeDeltas[i + 1] is how long sample i lasted.
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + us);
  }
  const agg = new Map<string, HotSpot>();
  const via = new Map<string, HotSpot>();
  const incl = new Map<string, HotSpot>();
  const kinds = new Map<string, number>();
  const bump = (m: Map<string, HotSpot>, key: string, h: Omit<HotSpot, "selfMs" | "share">, us: number) => {
    const x = m.get(key) ?? { ...h, selfMs: 0, share: 0 };
    x.selfMs += us / 1000;
    m.set(key, x);
  };
  let busy = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!;
    const w = where(id);
    const kind = kindOf(cf, w);
    if (kind === "idle") continue;
    busy += us;
    kinds.set(kind, (kinds.get(kind) ?? 0) + us);
    const fn = cf.functionName || "(anonymous)";
    bump(agg, `${fn}|${w}`, { fn, where: w, kind }, us);
    // Walk up: the nearest host/ frame, and every host/ frame once (inclusive time).
    const seen = new Set<string>();
    let nearest: string | undefined;
    for (let a: number | undefined = id; a !== undefined; a = parent.get(a)) {
      const aw = where(a);
      if (!aw.startsWith("host/")) continue;
      const afn = byId.get(a)!.functionName || "(anonymous)";
      const key = `${afn}|${aw}`;
      if (nearest === undefined) nearest = `${afn} (${aw})`;
      if (!seen.has(key)) {
        seen.add(key);
        bump(incl, key, { fn: afn, where: aw, kind: "our JS (host/)" }, us);
      }
    }
    if (nearest !== undefined && !w.startsWith("host/"))
      bump(via, `${fn}|${nearest}`, { fn, where: `under ${nearest}`, kind }, us);
  }
  const rank = (m: Map<string, HotSpot>, n: number) => {
    const list = [...m.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, n);
    for (const h of list) h.share = (h.selfMs * 1000) / busy;
    return list;
  };
  return {
    busyMs: busy / 1000,
    spots: rank(agg, top),
    kinds: [...kinds].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / busy]),
    viaOurs: rank(via, 12),
    inclusive: rank(incl, 15),
  };
}

export async function runProfile(o: {
  quick: boolean;
  workload: string;
  topologies?: ProxyBenchOptions["topologies"];
}): Promise<void> {
  if (!WORKLOADS.includes(o.workload as Workload)) throw new Error(`--profile: one of ${WORKLOADS.join(", ")}`);
  const dir = mkdtempSync(join(tmpdir(), "hbone-bench-prof-"));
  const topologies = o.topologies ?? ["node-http2", "hbone-wasm"];
  console.log(`profiling ${o.workload} on ${topologies.join(", ")}; profiles in ${dir}`);
  const result = await runProxyBench({
    quick: o.quick,
    topologies,
    workloads: [o.workload as Workload],
    proxyNodeArgs: (t, role) => ["--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${t}-${role}.cpuprofile`],
    stopGraceMs: 20_000,
  });
  const out: string[] = [`# CPU profile: ${o.workload}${o.quick ? " (quick)" : ""}, ${new Date().toISOString()}`, ""];
  out.push("| metric | unit | topology | value |", "| --- | --- | --- | ---: |");
  for (const m of result.measures ?? [])
    out.push(`| ${m.metric} | ${m.unit} | ${m.topology} | ${m.value.toFixed(3)} |`);
  for (const f of readdirSync(dir)
    .filter((x) => x.endsWith(".cpuprofile"))
    .sort()) {
    const s = summarize(join(dir, f));
    out.push(
      "",
      `## ${f.replace(".cpuprofile", "")}: ${s.busyMs.toFixed(0)} ms busy`,
      "",
      s.kinds.map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`).join(", "),
      "",
      "| self ms | share | function | where | kind |",
      "| ---: | ---: | --- | --- | --- |",
      ...s.spots.map(
        (h) => `| ${h.selfMs.toFixed(1)} | ${(h.share * 100).toFixed(1)}% | ${h.fn} | ${h.where} | ${h.kind} |`,
      ),
    );
    if (s.inclusive.length > 0) {
      out.push(
        "",
        "Inclusive time of our functions (host/):",
        "",
        "| total ms | share | function | where |",
        "| ---: | ---: | --- | --- |",
        ...s.inclusive.map((h) => `| ${h.selfMs.toFixed(1)} | ${(h.share * 100).toFixed(1)}% | ${h.fn} | ${h.where} |`),
        "",
        "Self time outside host/ by the nearest host/ caller:",
        "",
        "| self ms | share | function | called from | kind |",
        "| ---: | ---: | --- | --- | --- |",
        ...s.viaOurs.map(
          (h) => `| ${h.selfMs.toFixed(1)} | ${(h.share * 100).toFixed(1)}% | ${h.fn} | ${h.where} | ${h.kind} |`,
        ),
      );
    }
  }
  const md = out.join("\n") + "\n";
  console.log(`\n${md}`);
  const path = join(repoRoot(), "bench", "results", `profile-${o.workload}.md`);
  writeFileSync(path, md);
  console.log(`wrote ${path}`);
}
