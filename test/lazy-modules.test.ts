// A proxy loads only what its configuration runs (README "Memory of an idle proxy"): spawned `hbone proxy`
// processes report every CommonJS file they compile (a --require preload), so the YAML parser, ~1 MB of heap, must
// show up in a proxy on a config file and never in one on xDS (here an istiod address nothing answers: the proxy
// keeps dialling, past its start-up, until it is stopped).

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../host/runtime-config.js";
import { meshFixture, type MeshFixture } from "./helpers/mesh.js";
import { CLI, NO_STATUS_PORTS, spawnHbone } from "./helpers/attack.js";

const PRELOAD = `const M = require("node:module");
const compile = M.prototype._compile;
M.prototype._compile = function (content, filename) {
  process.stderr.write("CJS " + filename + "\\n");
  return compile.call(this, content, filename);
};
`;

let fx: MeshFixture;
let preload: string;

beforeAll(async () => {
  fx = await meshFixture();
  preload = join(fx.dir, "cjs-report.cjs");
  writeFileSync(preload, PRELOAD);
  writeFileSync(join(fx.dir, "token"), "test-token\n");
}, 30_000);
afterAll(async () => {
  await fx?.close();
});

/** Runs `hbone proxy args` until `until` matches its stdout (or `ms`), then stops it; its CommonJS files. */
async function compiledFiles(args: string[], until: RegExp, ms: number): Promise<{ files: string[]; out: string }> {
  const p = spawn(process.execPath, [...NODE_FLAGS, "--require", preload, CLI, "proxy", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stdout.on("data", (d) => (out += String(d)));
  p.stderr.on("data", (d) => (err += String(d)));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.stdout.on("data", () => {
      if (until.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  p.kill("SIGKILL");
  await once(p, "exit");
  return { files: [...err.matchAll(/^CJS (.*)$/gm)].map((m) => m[1]!), out };
}

const yamlFiles = (files: string[]) => files.filter((f) => f.includes("/node_modules/yaml/"));

describe("modules a proxy loads", () => {
  it("on a config file: the YAML parser (the preload sees it)", async () => {
    const { files, out } = await compiledFiles(
      [
        ...["--config", fx.configPath, "--ca-dir", fx.caDir, "--workload", "default/sleep/sleep"],
        ...["--inbound-port", "off", "--socks5-port", "off", ...NO_STATUS_PORTS],
      ],
      / ready \{/,
      20_000,
    );
    expect(out).toMatch(/hbone proxy ready/);
    expect(yamlFiles(files).length).toBeGreaterThan(10);
  }, 30_000);

  it("on xDS: never the YAML parser, while it starts and dials istiod", async () => {
    const { files, out } = await compiledFiles(
      [
        ...["--workload", "default/sleep/sleep", "--xds-address", "https://127.0.0.1:1"],
        ...["--ca-address", "https://127.0.0.1:1", "--xds-token-file", join(fx.dir, "token")],
        ...["--root-cert", join(fx.caDir, "root-cert.pem"), "--socks5-port", "off", ...NO_STATUS_PORTS],
      ],
      /xDS stream ended; reconnecting[^]*xDS stream ended; reconnecting/,
      15_000,
    );
    expect(out, "the proxy did not get as far as dialling istiod").toMatch(/xDS stream/);
    expect(
      files.some((f) => f.includes("/node_modules/@grpc/")),
      "the preload saw no gRPC",
    ).toBe(true);
    expect(yamlFiles(files)).toEqual([]);
  }, 30_000);
});

/**
 * PEM certificates among a proxy's heap strings once it is ready: a heap snapshot written on SIGUSR2
 * (`--heapsnapshot-signal`) into a directory of its own (`--diagnostic-dir`). `preload`, when given, runs first.
 */
async function pemStringsAtReady(name: string, preload?: string): Promise<number> {
  const dir = join(fx.dir, name);
  mkdirSync(dir, { recursive: true });
  const nodeArgs = [
    ...NODE_FLAGS,
    "--heapsnapshot-signal=SIGUSR2",
    `--diagnostic-dir=${dir}`,
    ...(preload ? ["--require", preload] : []),
  ];
  const p = await spawnHbone(
    "proxy",
    [
      ...["--config", fx.configPath, "--ca-dir", fx.caDir, "--workload", "default/sleep/sleep"],
      ...["--inbound-port", "0", "--socks5-port", "off", ...NO_STATUS_PORTS],
    ],
    nodeArgs,
    { readyTimeoutMs: 20_000 },
  );
  try {
    p.proc.kill("SIGUSR2");
    // The snapshot is written on the proxy's main thread: complete once it parses.
    for (let i = 0; i < 200; i++) {
      await sleep(100);
      const file = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot"));
      if (!file) continue;
      let snapshot: { strings: string[] };
      try {
        snapshot = JSON.parse(readFileSync(join(dir, file), "utf8")) as { strings: string[] };
      } catch {
        continue;
      }
      return snapshot.strings.filter((str) => str.startsWith("-----BEGIN CERTIFICATE-----")).length;
    }
    throw new Error("no heap snapshot written");
  } finally {
    await p.stop(0);
  }
}

describe("what a proxy keeps in memory", () => {
  it("never reads Node's bundled root certificates (an ESM import of node:tls would, ~0.2 MB)", async () => {
    const readRoots = join(fx.dir, "read-roots.cjs");
    writeFileSync(readRoots, 'require("node:tls").rootCertificates;\n');
    // The control: the same proxy after something read them holds the ~140 of Node's list.
    expect(await pemStringsAtReady("roots-read", readRoots)).toBeGreaterThan(100);
    expect(await pemStringsAtReady("roots-kept-out")).toBeLessThan(20);
  }, 60_000);
});
