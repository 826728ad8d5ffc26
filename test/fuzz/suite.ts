// The short fuzz budget of `npm test`: each target on both Wasm builds, with a fixed seed and one random seed
// (printed in the test name and in every failure, with the reproducer of each failing input).

import { describe, expect, it } from "vitest";
import type { Variant } from "../../host/wasm/instance.js";
import { formatFailure, formatStats, runTarget, type Target } from "./harness.js";

export function fuzzSuite(target: Target, o: { budgetMs?: number; minInputs: number }): void {
  const budgetMs = o.budgetMs ?? 800;
  const random = (Math.random() * 2 ** 32) >>> 0;
  describe(`fuzz: ${target.name}`, () => {
    for (const variant of ["release", "debug"] as Variant[]) {
      for (const seed of [1, random]) {
        it(
          `${variant} build, seed ${seed}: no trap, heap_check clean, memory under ` +
            `${target.memoryBound >> 20} MiB`,
          async () => {
            const stats = await runTarget(target, { variant, seed, budgetMs });
            console.log(`fuzz seed ${seed}: ${formatStats(stats)}`);
            expect(stats.failures.map(formatFailure), `fuzz seed ${seed}`).toEqual([]);
            expect(stats.maxMemory).toBeLessThanOrEqual(target.memoryBound);
            // A run that did (almost) nothing proves nothing.
            expect(stats.inputs).toBeGreaterThanOrEqual(o.minInputs);
          },
          budgetMs + 30_000,
        );
      }
    }
  });
}
