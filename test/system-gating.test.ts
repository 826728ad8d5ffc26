// test/helpers/system.ts as `npm test` uses it: a vitest run of a suite gated on openssl (hidden through
// HBONE_HIDE_SYSTEM) skips it with one line naming the apt command, and fails under CI=true.

import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const vitest = join(root, "node_modules", "vitest", "vitest.mjs");

interface Run {
  status: number | null;
  /** stdout and stderr. */
  output: string;
  report: { numPassedTests: number; numFailedTests: number; numPendingTests: number };
}

function runFixture(env: Record<string, string | undefined>): Run {
  const dir = mkdtempSync(join(tmpdir(), "hbone-gating-"));
  try {
    const out = join(dir, "report.json");
    const e: NodeJS.ProcessEnv = { ...process.env, CI: undefined, HBONE_SYSTEM_REPORT: undefined, ...env };
    for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
    const r = spawnSync(
      process.execPath,
      [
        vitest,
        "run",
        "--config",
        "test/fixtures/gating/vitest.config.ts",
        "--reporter=default",
        "--reporter=json",
        `--outputFile.json=${out}`,
      ],
      { cwd: root, env: e, encoding: "utf8", timeout: 60_000 },
    );
    return {
      status: r.status,
      output: r.stdout + r.stderr,
      report: JSON.parse(readFileSync(out, "utf8")) as Run["report"],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("system peer gating", () => {
  it("runs the suite when the peer is here", () => {
    const r = runFixture({ HBONE_HIDE_SYSTEM: "python3-h2" }); // hides something else
    expect(r.report).toMatchObject({ numPassedTests: 1, numFailedTests: 0, numPendingTests: 0 });
    expect(r.status).toBe(0);
  });

  it("skips it with one line naming the peer and its apt command when missing and CI is unset", () => {
    const r = runFixture({ HBONE_HIDE_SYSTEM: "python3-h2,openssl" });
    expect(r.report).toMatchObject({ numPassedTests: 0, numFailedTests: 0, numPendingTests: 1 });
    expect(r.output.match(/missing system peer: .*/g)).toEqual([
      "missing system peer: openssl (apt-get install -y openssl), tests skipped",
    ]);
  });

  it("fails the run when missing under CI=true", () => {
    const r = runFixture({ HBONE_HIDE_SYSTEM: "openssl", CI: "true" });
    expect(r.report).toMatchObject({ numPassedTests: 0, numFailedTests: 1, numPendingTests: 1 });
    expect(r.status).not.toBe(0);
  });
});
