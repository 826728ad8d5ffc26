// The package as a user gets it: what `npm pack` ships (scripts/check-pack.mjs), the exports map
// (the package imports itself by name, as a dependent would), and the `hbone` bin's usage text.

import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const node = (args: string[]) => spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", timeout: 60_000 });

describe("package", () => {
  it("packs only the library, the Wasm, README and LICENSE, and every packed import resolves", () => {
    const r = node(["scripts/check-pack.mjs"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^check-pack: \d+ files/);
  });

  it('resolves `import "hbone-wasm"` through the exports map to the compiled library', () => {
    const script = 'const m = await import("hbone-wasm"); console.log(typeof m.startProxy, typeof m.H2Session);';
    const r = node(["--input-type=module", "-e", script]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("function function");
  });

  it("hbone --help describes start as the two-cluster demo", () => {
    const r = node(["dist/host/cli.js", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\s+start\s+the two-cluster demo/m);
    expect(r.stdout).not.toMatch(/single-cluster/);
  });
});
