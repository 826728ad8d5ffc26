// Benchmark entry point: `node dist/bench/run.js [--quick]` (or `npm run bench -- --quick`).
// Runs the suites, prints a markdown table, and writes bench/results/latest.{json,md}.

import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { type Figure, type SuiteResult, repoRoot } from "./harness.js";
import { runFramesBench } from "./frames.bench.js";
import { runHpackBench } from "./hpack.bench.js";
import { runTunnelBench } from "./tunnel.bench.js";

const TUNABLE = "glibc.cpu.x86_rep_movsb_threshold";

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(suites: SuiteResult[]): string {
  const figures = new Map<string, Figure>();
  for (const s of suites) for (const f of s.figures) figures.set(f.task, f);
  const rows = ["| task | ops/s | throughput | ratio vs baseline | target | met |", "| --- | ---: | ---: | ---: | --- | --- |"];
  for (const s of suites) {
    for (const f of s.figures) {
      const base = f.baseline ? figures.get(f.baseline) : undefined;
      const ratio = base ? `${fmt(f.opsPerSec / base.opsPerSec, 2)}x` : "baseline";
      // A target is shown on the figure it names, else on the suite's first figure.
      const t = s.targets.find((x) => x.task === f.task) ??
        (f === s.figures[0] ? s.targets.find((x) => x.task === undefined) : undefined);
      const goal = t ? (t.goal >= 100 ? `>= ${fmt(t.goal)} MB/s` : `${t.lowerIsBetter ? "<=" : ">="} ${fmt(t.goal, 1)}x`) : "";
      const thr = f.throughputMBps !== undefined ? `${fmt(f.throughputMBps, 1)} ${f.throughputUnit ?? "MB/s"}` : "";
      rows.push(`| ${f.task} | ${fmt(f.opsPerSec, f.opsPerSec < 100 ? 1 : 0)} ±${fmt(f.rme, 1)}% | ${thr} | ${ratio} ` +
        `| ${goal} | ${t ? (t.met ? "yes" : "no") : ""} |`);
    }
  }
  return rows.join("\n");
}

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const tunables = process.env.GLIBC_TUNABLES ?? "";
  const notes: string[] = [];
  if (process.platform === "linux" && process.arch === "x64" && !tunables.includes(TUNABLE)) {
    // ld.so reads it at startup, so it must be set before node starts (the npm script does).
    notes.push(`GLIBC_TUNABLES does not set ${TUNABLE}: on some AMD CPUs glibc's memcpy (behind copies into ` +
      `Wasm memory) is much slower at some alignments. Run \`npm run bench\`, or set ` +
      `GLIBC_TUNABLES=${TUNABLE}=1000000000 yourself.`);
    console.log(`note: ${notes[0]}\n`);
  }

  const started = Date.now();
  const suites: SuiteResult[] = [];
  for (const run of [runFramesBench, runHpackBench, runTunnelBench]) {
    const s = await run({ quick });
    console.log(`${s.suite}: done (${fmt((Date.now() - started) / 1000, 1)} s)`);
    suites.push(s);
  }

  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
    quick,
    glibcTunables: tunables || null,
  };
  for (const s of suites) notes.push(...s.notes);
  const md = [
    `# hbone-wasm microbenchmarks${quick ? " (quick)" : ""}`,
    "",
    `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date}`,
    "",
    table(suites),
    "",
    ...notes.map((n) => `- ${n}`),
    "",
  ].join("\n");
  console.log(`\n${md}`);

  const dir = join(repoRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const json = {
    machine,
    figures: suites.flatMap((s) => s.figures),
    ratios: suites.flatMap((s) => s.ratios),
    targets: suites.flatMap((s) => s.targets),
    notes,
  };
  writeFileSync(join(dir, "latest.json"), JSON.stringify(json, null, 2) + "\n");
  writeFileSync(join(dir, "latest.md"), md);
  console.log(`wrote ${join(dir, "latest.json")} and latest.md (${fmt((Date.now() - started) / 1000, 1)} s)`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
