// The long fuzz run: `npm run fuzz -- --minutes N [--target NAME]... [--variant release|debug] [--seed S]`
// cycles the targets (test/fuzz/targets.ts) on both Wasm builds with fresh random seeds until the time is up, then
// prints per target and build: inputs run, traps, heap_check failures, other failures, max Wasm memory, the slowest
// input, and a reproducer (seed + input hex) for every failure. Exits 1 if anything failed.
// `--replay SEED[:HEX] --target NAME --variant V` runs one recorded input again (HEX omitted: made from SEED).

import { parseArgs } from "node:util";
import type { Variant } from "../../host/wasm/instance.js";
import { corpusInfo } from "./corpus.js";
import { formatFailure, formatStats, replay, runTarget, type TargetStats } from "./harness.js";
import { fromHex, Rng } from "./rng.js";
import { TARGETS, targetNamed } from "./targets.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "1" },
    target: { type: "string", multiple: true },
    variant: { type: "string", multiple: true },
    seed: { type: "string" },
    replay: { type: "string" },
    slice: { type: "string" },
  },
});

const variants = (values.variant ?? ["release", "debug"]) as Variant[];
for (const v of variants)
  if (v !== "release" && v !== "debug") throw new Error(`--variant: release or debug, not ${v}`);
const targets = values.target ? values.target.map(targetNamed) : [...TARGETS];

async function replayOne(spec: string): Promise<number> {
  const [seedText, hex] = spec.split(":");
  const seed = Number(seedText) >>> 0;
  const t = targets[0]!;
  const input = hex ? fromHex(hex) : t.generate(new Rng(seed));
  for (const v of variants) {
    try {
      await replay(t, v, seed, input);
      console.log(`${t.name}/${v}: seed ${seed} ran clean`);
    } catch (e) {
      console.log(`${t.name}/${v}: seed ${seed} failed: ${e instanceof Error ? e.stack : String(e)}`);
      return 1;
    }
  }
  await t.close?.();
  return 0;
}

async function main(): Promise<number> {
  if (values.replay) return replayOne(values.replay);
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) throw new Error(`--minutes: not a positive number: ${values.minutes}`);
  // Each target and build runs in slices of this many seconds; by default about three rounds fit the time.
  const sliceMs =
    1000 *
    (values.slice !== undefined
      ? Number(values.slice)
      : Math.min(30, Math.max(2, (minutes * 60) / (targets.length * variants.length * 3))));
  const end = Date.now() + minutes * 60_000;
  const seeds = new Rng(values.seed !== undefined ? Number(values.seed) : (Math.random() * 2 ** 32) >>> 0);
  const totals = new Map<string, TargetStats>();
  // All targets share this process's Wasm memory (per build), and it never shrinks: the largest bound applies.
  const memoryBound = Math.max(...targets.map((t) => t.memoryBound));
  console.log(`fuzz: ${minutes} min, targets ${targets.map((t) => t.name).join(", ")}, builds ${variants.join(", ")}`);
  let round = 0;
  while (Date.now() < end) {
    round++;
    for (const t of targets) {
      for (const variant of variants) {
        const left = end - Date.now();
        if (left <= 0) break;
        const seed = seeds.u32();
        const s = await runTarget(t, { variant, seed, budgetMs: Math.min(sliceMs, left), memoryBound });
        const key = `${t.name}/${variant}`;
        const acc = totals.get(key);
        if (!acc) totals.set(key, s);
        else {
          acc.inputs += s.inputs;
          acc.traps += s.traps;
          acc.heapFailures += s.heapFailures;
          acc.errors += s.errors;
          acc.mismatches += s.mismatches;
          acc.uncaught += s.uncaught;
          acc.maxMemory = Math.max(acc.maxMemory, s.maxMemory);
          acc.maxInputMs = Math.max(acc.maxInputMs, s.maxInputMs);
          acc.failures.push(...s.failures.slice(0, Math.max(0, 10 - acc.failures.length)));
        }
        for (const f of s.failures) console.log(`FAIL (run seed ${seed}) ${formatFailure(f)}`);
      }
    }
    console.log(
      `round ${round}: ${[...totals.values()].map((s) => `${s.target}/${s.variant} ${s.inputs}`).join(", ")}`,
    );
  }
  console.log(
    `\ncorpus: vectors ${corpusInfo.vectorsDir ?? "not found (built-in seeds only)"}; frame seeds ` +
      `${corpusInfo.frames}, HPACK blocks ${corpusInfo.hpack}, baggage values ${corpusInfo.baggage}`,
  );
  let failed = 0;
  for (const s of totals.values()) {
    console.log(formatStats(s));
    failed += s.traps + s.heapFailures + s.errors + s.mismatches + s.uncaught;
  }
  for (const s of totals.values()) for (const f of s.failures) console.log(formatFailure(f));
  console.log(failed ? `${failed} failing inputs` : "no failures");
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(2);
  },
);
