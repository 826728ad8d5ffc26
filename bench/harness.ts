// Shared bits of the benchmark suites: tinybench settings, how a task's result becomes a
// figure, and where the repository root is (the compiled files live in dist/bench).

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Bench, type Task } from "tinybench";

export interface RunOptions {
  quick: boolean;
}

/** One timed task. `bytesPerOp` turns ops/s into MB/s (decimal megabytes). */
export interface Figure {
  task: string;
  opsPerSec: number;
  /** Relative margin of error of the mean latency, in percent. */
  rme: number;
  samples: number;
  bytesPerOp?: number;
  throughputMBps?: number;
  throughputUnit?: string;
  /** Name of the figure this one is compared against (absent on baselines). */
  baseline?: string;
  /** CPU seconds per GiB moved (tunnel benchmarks; both processes). */
  cpuSecondsPerGiB?: number;
}

export interface Ratio {
  name: string;
  ours: string;
  baseline: string;
  value: number;
}

export interface Target {
  name: string;
  value: number;
  goal: number;
  met: boolean;
  /** Unit of value and goal when they are not ratios ("x"), e.g. "vCPU", "µs", "B". */
  unit?: string;
  /** The figure row this target is shown on (default: the suite's first figure). */
  task?: string;
  /** The goal is a maximum (e.g. a CPU ratio), not a minimum. */
  lowerIsBetter?: boolean;
}

/** One figure of a topology benchmark: a workload's metric measured on one topology. */
export interface Measure {
  /** The row, e.g. "throughput, 1 tunnel". */
  metric: string;
  unit: string;
  /** The column: "direct", "tls-pipe", "node-http2", "hbone-wasm" (or a published reference). */
  topology: string;
  value: number;
  /** Latency, CPU and memory: lower is better. */
  lowerIsBetter?: boolean;
}

export interface SuiteResult {
  suite: string;
  figures: Figure[];
  ratios: Ratio[];
  targets: Target[];
  notes: string[];
  /** Topology benchmarks: figures by workload and topology (rendered as one table, topologies as columns). */
  measures?: Measure[];
  /** The column order of `measures`, then the ratio columns: [ours, baseline] pairs. */
  columns?: string[];
  ratioColumns?: [string, string][];
  /** Extra facts for latest.json (limits, counts, settings). */
  details?: Record<string, unknown>;
}

/** Short runs for --quick (the whole run must stay well under a minute), a few seconds otherwise. */
export function newBench(name: string, opts: RunOptions): Bench {
  return opts.quick
    ? new Bench({ name, time: 500, iterations: 5, warmupTime: 150, warmupIterations: 3, throws: true })
    : new Bench({ name, time: 3000, iterations: 20, warmupTime: 500, warmupIterations: 10, throws: true });
}

/** Ops/s from the mean latency: total work over total time, so GC pauses count. */
export function figureOf(task: Task, extra: Omit<Figure, "task" | "opsPerSec" | "rme" | "samples"> = {}): Figure {
  const r = task.result;
  if (r.state !== "completed") throw new Error(`bench task ${task.name} did not complete (${r.state})`);
  const opsPerSec = 1000 / r.latency.mean;
  const f: Figure = { task: task.name, opsPerSec, rme: r.latency.rme, samples: r.latency.samplesCount, ...extra };
  if (f.bytesPerOp !== undefined) f.throughputMBps = (f.bytesPerOp * opsPerSec) / 1e6;
  return f;
}

export function ratioOf(name: string, ours: Figure, baseline: Figure): Ratio {
  return { name, ours: ours.task, baseline: baseline.task, value: ours.opsPerSec / baseline.opsPerSec };
}

let root: string | undefined;

/** The repository root: the nearest directory up whose package.json is this project's. */
export function repoRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "hbone-wasm") {
      return (root = dir);
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("bench: cannot find the hbone-wasm repository root");
    dir = up;
  }
}
