// The hbone command runs with NODE_FLAGS (host/runtime-config.ts) whichever way it starts: the bin's shebang,
// `npm start`, the container image's entrypoint. V8 reads them at process start only, so each launcher carries them.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../host/runtime-config.js";
import { repoRoot } from "../bench/harness.js";

const read = (...p: string[]) => readFileSync(join(repoRoot(), ...p), "utf8");

describe("NODE_FLAGS", () => {
  it("is on every launcher of the hbone command", () => {
    expect(NODE_FLAGS.length).toBeGreaterThan(0);
    const flags = NODE_FLAGS.join(" ");
    // The built bin keeps the shebang (tsc copies it), which `env -S` splits into node and its flags.
    expect(read("host", "cli.ts").split("\n")[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    expect(read("dist", "host", "cli.js").split("\n")[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toContain(`node ${flags} dist/host/cli.js start`);
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(read("deploy", "Containerfile"));
    expect(JSON.parse(entry![1]!)).toEqual(["node", ...NODE_FLAGS, "/app/dist/host/cli.js"]);
  });

  it("are flags this node accepts (node refuses a misspelt one)", () => {
    expect(spawnSync(process.execPath, [...NODE_FLAGS, "-e", "0"]).status).toBe(0);
    expect(spawnSync(process.execPath, ["--max-semi-space-sise=1", "-e", "0"]).status).not.toBe(0);
  });
});
