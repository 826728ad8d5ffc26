// The fuzz runner shared by the short budget in `npm test` (test/fuzz/*.test.ts) and the long runner
// (`npm run fuzz`, test/fuzz/run.ts). A target makes an input from a seed and runs it against one Wasm build;
// the runner counts inputs and classifies every failure:
//   trap      WebAssembly.RuntimeError, or the loader's "abort:" (debug build assertions)
//   heap      heap_check() < 0 after the input (the allocator's free lists are corrupt)
//   memory    Wasm memory above the target's stated bound
//   error     any other exception escaping the target (only return codes / H2Error are allowed, and those
//             the targets catch themselves)
//   mismatch  a target's own invariant broke (e.g. chunked parse differs from whole parse)
//   uncaught  an uncaught exception or unhandled rejection while the input ran (a process would have died)
// Every failure carries a reproducer: target, build, input seed and the input as hex.

import { getCodec, type Codec } from "../../host/wasm/codec.js";
import type { Variant } from "../../host/wasm/instance.js";
import { Rng, toHex } from "./rng.js";

export type FailureKind = "trap" | "heap" | "memory" | "error" | "mismatch" | "uncaught";

/** An invariant of the target itself broke (not a crash). */
export class Mismatch extends Error {}

export interface Target {
  name: string;
  /** Wasm memory (memory.buffer.byteLength) the target must stay under, whatever the inputs. */
  memoryBound: number;
  /** Makes one input (a list of byte strings: chunks, blocks, lines, …). */
  generate(rng: Rng): Buffer[];
  /**
   * Runs one input. Expected errors (H2Error, refusals) are handled inside; anything thrown is a failure.
   * `rng` drives choices that are not part of the input (timing, the application's behaviour).
   */
  execute(input: Buffer[], codec: Codec, rng: Rng): void | Promise<void>;
  /** Called once after a run (close servers, free contexts). */
  close?(): void | Promise<void>;
}

export interface Failure {
  target: string;
  variant: Variant;
  kind: FailureKind;
  /** The input's seed: `generate(new Rng(seed))` makes it again. */
  seed: number;
  input: string;
  message: string;
}

export interface TargetStats {
  target: string;
  variant: Variant;
  inputs: number;
  traps: number;
  heapFailures: number;
  errors: number;
  mismatches: number;
  uncaught: number;
  /** Largest Wasm memory seen after an input, bytes. */
  maxMemory: number;
  memoryBound: number;
  /** Slowest input, ms (CPU a peer can buy with one input). */
  maxInputMs: number;
  failures: Failure[];
}

export interface RunOptions {
  variant: Variant;
  /** Seeds the input seeds. */
  seed: number;
  budgetMs: number;
  maxInputs?: number;
  /** Stop the run after this many failures (default 10). */
  maxFailures?: number;
  /** Overrides the target's bound (several targets in one process share one Wasm memory, which never shrinks). */
  memoryBound?: number;
}

/** The seed of the rng `execute` gets for an input (distinct from its generator's). */
const execSeed = (seed: number) => (seed ^ 0x9e3779b9) >>> 0;

export function isTrap(e: unknown): boolean {
  return e instanceof WebAssembly.RuntimeError || (e instanceof Error && e.message.startsWith("abort:"));
}

const describeError = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e));

/** Uncaught exceptions and unhandled rejections while a run is going on, reported to the current input. */
let uncaughtSink: ((e: unknown) => void) | null = null;
const onUncaught = (e: unknown) => {
  if (uncaughtSink) uncaughtSink(e);
  else throw e;
};

export async function runTarget(t: Target, o: RunOptions): Promise<TargetStats> {
  const codec = getCodec(o.variant);
  const stats: TargetStats = {
    target: t.name,
    variant: o.variant,
    inputs: 0,
    traps: 0,
    heapFailures: 0,
    errors: 0,
    mismatches: 0,
    uncaught: 0,
    maxMemory: codec.ex.memory.buffer.byteLength,
    memoryBound: o.memoryBound ?? t.memoryBound,
    maxInputMs: 0,
    failures: [],
  };
  const master = new Rng(o.seed);
  const deadline = Date.now() + o.budgetMs;
  const maxFailures = o.maxFailures ?? 10;
  let current: { seed: number; input: Buffer[] } | null = null;
  const fail = (kind: FailureKind, seed: number, input: Buffer[], e: unknown) => {
    const counter = (
      {
        trap: "traps",
        heap: "heapFailures",
        memory: "errors",
        error: "errors",
        mismatch: "mismatches",
        uncaught: "uncaught",
      } as const
    )[kind];
    stats[counter]++;
    if (stats.failures.length < maxFailures) {
      stats.failures.push({
        target: t.name,
        variant: o.variant,
        kind,
        seed,
        input: toHex(input),
        message: describeError(e),
      });
    }
  };
  uncaughtSink = (e) => fail("uncaught", current?.seed ?? -1, current?.input ?? [], e);
  process.on("uncaughtException", onUncaught);
  process.on("unhandledRejection", onUncaught);
  let memoryReported = false;
  try {
    while (Date.now() < deadline && stats.inputs < (o.maxInputs ?? Infinity) && stats.failures.length < maxFailures) {
      const seed = master.u32();
      const input = t.generate(new Rng(seed));
      current = { seed, input };
      const t0 = performance.now();
      try {
        await t.execute(input, codec, new Rng(execSeed(seed)));
      } catch (e) {
        fail(isTrap(e) ? "trap" : e instanceof Mismatch ? "mismatch" : "error", seed, input, e);
      }
      stats.maxInputMs = Math.max(stats.maxInputMs, performance.now() - t0);
      stats.inputs++;
      if (codec.ex.heap_check() < 0) {
        fail("heap", seed, input, new Error("heap_check() < 0 after this input"));
        break; // the allocator is corrupt: nothing after this means anything
      }
      const mem = codec.ex.memory.buffer.byteLength;
      stats.maxMemory = Math.max(stats.maxMemory, mem);
      if (mem > stats.memoryBound && !memoryReported) {
        memoryReported = true;
        fail("memory", seed, input, new Error(`Wasm memory ${mem} bytes > bound ${stats.memoryBound}`));
      }
    }
    await t.close?.();
  } finally {
    // Let late events of the last input land on it before the sink goes.
    await new Promise((r) => setTimeout(r, 20));
    process.off("uncaughtException", onUncaught);
    process.off("unhandledRejection", onUncaught);
    uncaughtSink = null;
  }
  return stats;
}

/** Runs one recorded input again (a reproducer). Throws what the input threw. */
export async function replay(t: Target, variant: Variant, seed: number, input: Buffer[]): Promise<void> {
  await t.execute(input, getCodec(variant), new Rng(execSeed(seed)));
  if (getCodec(variant).ex.heap_check() < 0) throw new Error("heap_check() < 0");
}

export function formatFailure(f: Failure): string {
  return (
    `${f.target}/${f.variant} ${f.kind}: ${f.message}\n  reproduce: npm run fuzz -- --target ${f.target} ` +
    `--variant ${f.variant} --replay ${f.seed}:${f.input.length > 4000 ? "(hex too long, use the seed)" : f.input}`
  );
}

export function formatStats(s: TargetStats): string {
  return (
    `${s.target.padEnd(9)} ${s.variant.padEnd(7)} inputs ${String(s.inputs).padStart(8)}  traps ${s.traps}  ` +
    `heap_check failures ${s.heapFailures}  errors ${s.errors}  mismatches ${s.mismatches}  uncaught ${s.uncaught}  ` +
    `max Wasm memory ${(s.maxMemory / 2 ** 20).toFixed(1)} MiB (bound ${(s.memoryBound / 2 ** 20).toFixed(0)})  ` +
    `slowest input ${s.maxInputMs.toFixed(1)} ms`
  );
}
