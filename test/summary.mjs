#!/usr/bin/env node
// Runs vitest (its usual report on the terminal, plus its JSON report) and ends with one
// plain line "N passed, N failed, N skipped", so a run that executed no test is visible. Before it, one
// line per missing system peer (test/helpers/system.ts writes them to HBONE_SYSTEM_REPORT).
// Exits non-zero when vitest does, or when no test ran at all.

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const root = fileURLToPath(new URL("..", import.meta.url));
const outDir = join(root, "dist", "test-report");
mkdirSync(outDir, { recursive: true });
const out = join(outDir, "vitest.json");
rmSync(out, { force: true });
const systemReport = join(outDir, "missing-system.txt");
rmSync(systemReport, { force: true });

const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
const args = [
  vitest,
  "run",
  "--config",
  "test/vitest.config.ts",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${out}`,
  ...process.argv.slice(2),
];
const env = { ...process.env, HBONE_SYSTEM_REPORT: systemReport };
const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit", env });

let passed = 0,
  failed = 0,
  skipped = 0;
try {
  const report = JSON.parse(readFileSync(out, "utf8"));
  passed = report.numPassedTests;
  failed = report.numFailedTests + (report.numRuntimeErrorTestSuites ?? 0);
  skipped = report.numPendingTests + report.numTodoTests;
  for (const suite of report.testResults ?? [])
    if (suite.status === "failed" && suite.assertionResults.length === 0) failed++;
} catch (err) {
  console.error(`test summary: no vitest report (${err.message})`);
  failed++;
}
if (existsSync(systemReport)) {
  for (const line of new Set(readFileSync(systemReport, "utf8").split("\n").filter(Boolean))) console.log(line);
}
const summary = `${passed} passed, ${failed} failed, ${skipped} skipped`;
console.log(summary);
writeFileSync(join(outDir, "summary.txt"), summary + "\n"); // .ci/run repeats it at the very end
const code = r.status ?? 1;
process.exit(code !== 0 ? code : passed === 0 || failed > 0 ? 1 : 0);
