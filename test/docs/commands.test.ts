// The guides' commands against the CLI's real flags: every `hbone …` command in a code block of
// docs/*.md and README.md names a command the CLI has and only flags that command parses, with a value
// where the flag takes one. The certificate step of docs/join-a-mesh.md runs for real (openssl
// verifies the chain), since it is the one step that needs no cluster.

import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { cliFlags, hboneCommands, checkCommand, shellWords } from "../helpers/cli-flags.js";

const ROOT = join(new URL(".", import.meta.url).pathname, "../..");
const pages = [
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
  "README.md",
];
const commands = pages.flatMap((p) => hboneCommands(readFileSync(join(ROOT, p), "utf8"), p));

describe("hbone commands in the docs", () => {
  it("are found", () => {
    expect(pages).toEqual(expect.arrayContaining(["docs/join-a-mesh.md", "docs/join-from-a-vm.md"]));
    const where = new Set(commands.map((c) => c.where.split(":")[0]));
    expect(where).toEqual(new Set(["docs/join-a-mesh.md", "docs/join-from-a-vm.md", "README.md"]));
    expect(commands.map((c) => c.words[0])).toEqual(expect.arrayContaining(["certs", "proxy", "capture"]));
  });

  it("use only the flags the CLI has", () => {
    const flags = cliFlags();
    expect(flags.get("proxy")?.has("xds-address")).toBe(true); // the flag table was read
    const errors: string[] = [];
    const missing = new Set<string>();
    for (const c of commands) {
      const r = checkCommand(c, flags);
      errors.push(...r.errors);
      if (r.missing) missing.add(r.missing);
    }
    // `hbone capture` comes with node mode (another branch); until merged, say so rather than pass quietly.
    for (const m of missing) {
      if (m !== "capture" || process.env.CI === "true") errors.push(`hbone ${m}: no such command in host/cli.ts`);
      else console.warn(`SKIP: hbone ${m} is not in this build's host/cli.ts; its flags in the docs are not checked`);
    }
    expect(errors).toEqual([]);
  });

  it("the check refuses a flag the CLI lacks, a missing value and an unknown command", () => {
    const flags = cliFlags();
    const check = (md: string) =>
      hboneCommands("```sh\n" + md + "\n```\n", "t.md").flatMap((c) => {
        const r = checkCommand(c, flags);
        return [...r.errors, ...(r.missing ? [`missing ${r.missing}`] : [])];
      });
    expect(check("sudo hbone proxy --xds-adress https://x:15012")).toEqual([
      expect.stringMatching(/no flag --xds-adress/),
    ]);
    expect(check("$ npx hbone certs --out")).toEqual([expect.stringMatching(/--out needs a value/)]);
    expect(check("hbone frobnicate --x")).toEqual(["missing frobnicate"]);
    expect(check("hbone proxy --workload a/b/c \\\n  --cluster c1")).toEqual([]);
  });

  it("the certificate step runs: one root, two intermediates that chain to it", () => {
    const certs = commands.filter((c) => c.where.startsWith("docs/join-a-mesh.md") && c.words[0] === "certs");
    expect(certs.length).toBe(2);
    const dir = mkdtempSync(join(tmpdir(), "hbone-docs-"));
    try {
      for (const c of certs) {
        execFileSync(process.execPath, [join(ROOT, "dist/host/cli.js"), ...c.words], { cwd: dir, timeout: 60_000 });
      }
      for (const n of ["cluster1", "cluster2"]) {
        const out = execFileSync(
          "openssl",
          ["verify", "-CAfile", "certs/cluster1/root-cert.pem", `certs/${n}/ca-cert.pem`],
          { cwd: dir, encoding: "utf8" },
        );
        expect(out.trim()).toBe(`certs/${n}/ca-cert.pem: OK`);
      }
      // The secret takes exactly the files hbone certs wrote (the root key stays out).
      const secret = readFileSync(join(ROOT, "docs/join-a-mesh.md"), "utf8").match(
        /create secret generic cacerts[\s\S]*?\n(?!\s)/,
      )![0];
      const files = shellWords(secret)
        .filter((w) => w.startsWith("--from-file="))
        .map((w) => w.split("/").pop());
      expect(files.sort()).toEqual(["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]);
      expect(readdirSync(join(dir, "certs/cluster2")).sort()).toEqual([
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
