// The proxy's GC ballast (host/gc-ballast.ts): sized by HBONE_GC_BALLAST_MB, 0 for none, a typo refused at start
// by the real CLI with the variable named, not an allocation that takes the machine's memory.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/host/cli.js", import.meta.url));

function proxyWith(value: string) {
  return spawnSync(
    process.execPath,
    [CLI, "proxy", "--config", "/nonexistent/mesh.yaml", "--ca-dir", "/nonexistent/ca", "--workload", "default/a/a"],
    {
      env: { ...process.env, HBONE_GC_BALLAST_MB: value },
      encoding: "utf8",
      timeout: 20_000,
    },
  );
}

describe("HBONE_GC_BALLAST_MB", () => {
  it("refuses a ballast too large or not a number, naming the variable", () => {
    for (const bad of ["100000", "-1", "6MB"]) {
      const r = proxyWith(bad);
      expect(r.status, bad).not.toBe(0);
      expect(r.stdout + r.stderr, bad).toContain("HBONE_GC_BALLAST_MB");
    }
  });

  it("accepts 0 (no ballast) and a few MB: start-up goes on to the config, which is what fails here", () => {
    for (const ok of ["0", "6"]) {
      const r = proxyWith(ok);
      expect(r.stdout + r.stderr, ok).not.toContain("HBONE_GC_BALLAST_MB");
      expect(r.stdout + r.stderr, ok).toMatch(/mesh\.yaml/);
    }
  });
});
