// Benchmark entry point: `node dist/bench/run.js [--quick] [--check] [--suites=a,b] [--profile[=WORKLOAD]]`
// (or `npm run bench -- --quick`). Runs the microbenchmarks (micro/: frames, HPACK, baggage, load balancing,
// xDS, access log, logger), the tunnel engine and the proxy topologies (topologies/), prints markdown tables and
// writes bench/results/latest.{json,md} (a --quick run: quick.{json,md}, not committed). --check exits 1
// when a Wasm-vs-baseline ratio is below its floor (floors.ts). --profile runs one proxy workload under
// `node --cpu-prof` instead (see topologies/profile.ts).

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type Figure, type RunOptions, type SuiteResult, type Target, repoRoot } from "./harness.js";
import { runFramesBench } from "./micro/frames.bench.js";
import { runHpackBench } from "./micro/hpack.bench.js";
import { runXdsBench } from "./micro/xds.bench.js";
import { runAccessLogBench } from "./micro/access-log.bench.js";
import { runLoggerBench } from "./micro/logger.bench.js";
import { runTunnelBench } from "./topologies/tunnel.bench.js";
import { runProxyBench, type ProxyBenchOptions } from "./topologies/proxy.bench.js";
import { runProfile } from "./topologies/profile.js";
import { checkFloors } from "./floors.js";
import { startHog } from "./topologies/hog.js";
import { ratioChart } from "./chart.js";

const TUNABLE = "glibc.cpu.x86_rep_movsb_threshold";

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Three significant digits, grouped: 1,234 / 123 / 12.3 / 1.23 / 0.123. */
function sig(n: number): string {
  const a = Math.abs(n);
  return fmt(n, a >= 100 || a === 0 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

function goalText(t: Target): string {
  const unit = t.unit ?? (t.goal >= 100 ? "MB/s" : "x");
  const op = t.lowerIsBetter ? "<=" : ">=";
  // 0.95x and 1.05x stay themselves (one decimal would show them as 1.0x and 1.1x).
  const digits = Math.abs(t.goal * 10 - Math.round(t.goal * 10)) < 1e-9 ? 1 : 2;
  return unit === "x" ? `${op} ${fmt(t.goal, digits)}x` : `${op} ${sig(t.goal)} ${unit}`;
}

function valueText(t: Target): string {
  const unit = t.unit ?? (t.goal >= 100 ? "MB/s" : "x");
  return unit === "x" ? `${fmt(t.value, 2)}x` : `${sig(t.value)} ${unit}`;
}

/** The microbenchmark suites: one row per task, with its ratio and target. */
function microTable(suites: SuiteResult[]): string {
  const figures = new Map<string, Figure>();
  for (const s of suites) for (const f of s.figures) figures.set(f.task, f);
  const rows = [
    "| task | ops/s | throughput | ratio vs baseline | target | met |",
    "| --- | ---: | ---: | ---: | --- | --- |",
  ];
  for (const s of suites) {
    for (const f of s.figures) {
      const base = f.baseline ? figures.get(f.baseline) : undefined;
      const ratio = base ? `${fmt(f.opsPerSec / base.opsPerSec, 2)}x` : "baseline";
      // A target is shown on the figure it names, else on the suite's first figure.
      const t =
        s.targets.find((x) => x.task === f.task) ??
        (f === s.figures[0] ? s.targets.find((x) => x.task === undefined) : undefined);
      const thr = f.throughputMBps !== undefined ? `${fmt(f.throughputMBps, 1)} ${f.throughputUnit ?? "MB/s"}` : "";
      rows.push(
        `| ${f.task} | ${fmt(f.opsPerSec, f.opsPerSec < 100 ? 1 : 0)} ±${fmt(f.rme, 1)}% | ${thr} | ${ratio} ` +
          `| ${t ? goalText(t) : ""} | ${t ? (t.met ? "yes" : "no") : ""} |`,
      );
    }
  }
  return rows.join("\n");
}

/** A topology suite: one row per metric, one column per topology, then the ratio columns. */
function topologyTable(s: SuiteResult): string {
  const measures = s.measures ?? [];
  const cols = s.columns ?? [...new Set(measures.map((m) => m.topology))];
  const pairs = s.ratioColumns ?? [];
  const head = ["metric", "unit", ...cols, ...pairs.map(([a, b]) => `${a} / ${b}`)];
  const rows = [
    `| ${head.join(" | ")} |`,
    `| --- | --- | ${head
      .slice(2)
      .map(() => "---:")
      .join(" | ")} |`,
  ];
  for (const metric of [...new Set(measures.map((m) => m.metric))]) {
    const of = (t: string) => measures.find((m) => m.metric === metric && m.topology === t);
    const unit = measures.find((m) => m.metric === metric)!.unit;
    const cells = cols.map((c) => {
      const m = of(c);
      return m ? sig(m.value) : "";
    });
    const ratios = pairs.map(([a, b]) => {
      const r = s.ratios.find((x) => x.name === `${metric}: ${a} / ${b}`);
      return r ? `${fmt(r.value, 2)}x` : "";
    });
    rows.push(`| ${metric} | ${unit} | ${[...cells, ...ratios].join(" | ")} |`);
  }
  return rows.join("\n");
}

function targetTable(targets: Target[]): string {
  const rows = ["| target | value | goal | met |", "| --- | ---: | --- | --- |"];
  for (const t of targets) rows.push(`| ${t.name} | ${valueText(t)} | ${goalText(t)} | ${t.met ? "yes" : "**no**"} |`);
  return rows.join("\n");
}

type SuiteRunner = (o: RunOptions) => Promise<SuiteResult>;

/** Suites other rooms add (bench/micro/baggage.bench.ts, bench/micro/lb.bench.ts): run when they are built. */
async function optionalSuite(file: string, exportName: string): Promise<SuiteRunner | undefined> {
  const path = join(repoRoot(), "dist", "bench", file);
  if (!existsSync(path)) return undefined;
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const fn = mod[exportName];
  if (typeof fn !== "function") throw new Error(`${file} does not export ${exportName}()`);
  return fn as SuiteRunner;
}

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (a === undefined) return undefined;
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : "";
}

/** Runs the benchmarks; false when --check found a ratio below its floor. */
async function main(): Promise<boolean> {
  const quick = process.argv.includes("--quick");
  const check = process.argv.includes("--check");
  const tunables = process.env.GLIBC_TUNABLES ?? "";
  const notes: string[] = [];
  if (process.platform === "linux" && process.arch === "x64" && !tunables.includes(TUNABLE)) {
    // ld.so reads it at startup, so it must be set before node starts (the npm script does).
    notes.push(
      `GLIBC_TUNABLES does not set ${TUNABLE}: on some AMD CPUs glibc's memcpy (behind copies into ` +
        `Wasm memory) is much slower at some alignments. Run \`npm run bench\`, or set ` +
        `GLIBC_TUNABLES=${TUNABLE}=1000000000 yourself (child processes get it either way).`,
    );
    console.log(`note: ${notes[0]}\n`);
  }

  // --topologies=a,b and --workloads=x,y narrow the proxies suite (e.g. --topologies=hbone-wasm,hbone-double).
  const topologies = arg("topologies")?.split(",").filter(Boolean) as ProxyBenchOptions["topologies"];
  const workloads = arg("workloads")?.split(",").filter(Boolean) as ProxyBenchOptions["workloads"];
  const profile = arg("profile");
  if (profile !== undefined) {
    await runProfile({ quick, workload: profile || "throughput", topologies });
    return true;
  }

  const started = Date.now();
  const runners: [string, SuiteRunner][] = [
    ["frames", runFramesBench],
    ["hpack", runHpackBench],
    ["tunnel", runTunnelBench],
    ["xds", runXdsBench],
    ["access-log", runAccessLogBench],
    ["logger", runLoggerBench],
  ];
  for (const [name, file, fn] of [
    ["baggage", "micro/baggage.bench.js", "runBaggageBench"],
    ["lb", "micro/lb.bench.js", "runLbBench"],
  ]) {
    const r = await optionalSuite(file, fn);
    if (r) runners.push([name, r]);
  }
  // --hog=N: N busy-looping processes compete for the cores during the proxies suite.
  const hogArg = arg("hog");
  if (hogArg === "") throw new Error("--hog=N: how many busy-looping processes");
  const hogN = hogArg !== undefined ? Number(hogArg) : 0;
  runners.push([
    "proxies",
    async (o) => {
      const hog = startHog(hogN);
      try {
        const r = await runProxyBench({ ...o, topologies, workloads });
        if (hogN > 0) r.notes.push(`--hog ${hogN}: ${hogN} busy-looping processes ran during the proxies suite`);
        return r;
      } finally {
        await hog.stop();
      }
    },
  ]);
  const only = arg("suites")?.split(",").filter(Boolean);
  const suites: SuiteResult[] = [];
  const loadStart = os.loadavg()[0];
  for (const [name, run] of runners) {
    if (only && !only.includes(name)) continue;
    console.log(`${name}: running${quick ? " (quick)" : ""}…`);
    const s = await run({ quick });
    console.log(`${name}: done (${fmt((Date.now() - started) / 1000, 1)} s)`);
    suites.push(s);
  }

  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGB: Math.round(os.totalmem() / 1e9),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
    quick,
    glibcTunables: tunables || null,
    childGlibcTunables: tunables.includes(TUNABLE) ? tunables : `${TUNABLE}=1000000000`,
    loadavg1mAtStart: loadStart,
    seconds: (Date.now() - started) / 1000,
  };
  for (const s of suites) notes.push(...s.notes);
  const micro = suites.filter((s) => s.figures.length > 0);
  const topo = suites.filter((s) => s.measures && s.measures.length > 0);
  const targets = suites.flatMap((s) => s.targets);
  const md = [
    `# hbone-wasm benchmarks${quick ? " (quick)" : ""}`,
    "",
    `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB, Node ${machine.node}, ${machine.date}, ` +
      `${fmt(machine.seconds)} s, load ${fmt(loadStart, 2)} at start, GLIBC_TUNABLES=${machine.childGlibcTunables}`,
    "",
    ...topo.flatMap((s) => [`## ${s.suite}: hbone-wasm against its peers`, "", topologyTable(s), ""]),
    ...(micro.length ? ["## microbenchmarks", "", microTable(micro), ""] : []),
    ...(targets.length ? ["## targets", "", targetTable(targets), ""] : []),
    "## notes",
    "",
    ...notes.map((n) => `- ${n}`),
    "",
  ].join("\n");
  console.log(`\n${md}`);

  const dir = join(repoRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const json = {
    machine,
    suites: suites.map((s) => s.suite),
    figures: suites.flatMap((s) => s.figures),
    measures: suites.flatMap((s) => s.measures ?? []),
    ratios: suites.flatMap((s) => s.ratios),
    targets,
    details: Object.fromEntries(suites.filter((s) => s.details).map((s) => [s.suite, s.details])),
    notes,
  };
  const out = quick ? "quick" : "latest";
  writeFileSync(join(dir, `${out}.json`), JSON.stringify(json, null, 2) + "\n");
  writeFileSync(join(dir, `${out}.md`), md);
  // The committed chart is the last full run's (quick runs are smoke tests).
  const proxies = topo.find((x) => x.suite === "proxies");
  const svg =
    !quick &&
    proxies &&
    ratioChart(proxies, `proxies: ratios${hogN ? `, --hog ${hogN}` : ""}, ${machine.date.slice(0, 10)}`);
  if (svg) writeFileSync(join(dir, "proxies.svg"), svg);
  console.log(`wrote ${join(dir, `${out}.json`)} and ${out}.md (${fmt((Date.now() - started) / 1000, 1)} s)`);
  if (!check) return true;
  const { lines, failed } = checkFloors(suites);
  console.log(`\nregression check (ratio vs in-run baseline >= floor):\n${lines.map((l) => `  ${l}`).join("\n")}`);
  console.log(failed ? "regression check: FAILED" : "regression check: ok");
  return !failed;
}

main().then(
  // Children are killed in procs.ts's exit hook; exit now so no stray handle keeps us alive.
  (ok) => process.exit(ok ? 0 : 1),
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
