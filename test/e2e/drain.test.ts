// `hbone proxy` as a real process: it prints its addresses, serves tunnels, and on SIGTERM
// drains (GOAWAY, refuses new tunnels, lets the one in flight finish, no byte lost), then exits 0.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { pattern } from "../helpers/net.js";
import { ANY_STATUS_PORTS } from "../helpers/attack.js";

const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));
let fx: MeshFixture;
let child: ChildProcess;
let a: Mesh;
let ready: { inbound: string; admin: number; readiness: number; forward: string[] };
let stdout = "";

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  child = spawn(
    process.execPath,
    [
      CLI,
      "proxy",
      "--config",
      fx.configPath,
      "--workload",
      "default/echo/echo",
      "--ca-dir",
      fx.caDir,
      "--inbound-port",
      "0",
      "--socks5-port",
      "off",
      ...ANY_STATUS_PORTS,
      "--drain-timeout",
      "20",
      "--forward",
      "127.0.0.1:0=echo.default.svc.cluster.local:9000",
    ],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, HBONE_LOG_LEVEL: "info" } },
  );
  child.stdout!.on("data", (d) => (stdout += d));
  while (!stdout.includes("hbone proxy ready")) await once(child.stdout!, "data");
  ready = JSON.parse(/hbone proxy ready (\{.*\})/.exec(stdout)![1]);
  a = await fx.proxy({
    workload: "default/sleep/sleep",
    inboundPort: false,
    hbonePort: Number(ready.inbound.split(":")[1]),
  });
}, 60_000);
afterAll(async () => {
  child?.kill("SIGKILL");
  await fx?.close();
});

describe("hbone proxy process", () => {
  it("refuses a bad config file at start with its file, line and field", () => {
    const bad = join(fx.dir, "bad.yaml");
    writeFileSync(bad, "workloads:\n  - uid: x\n    name: x\n    namespace: default\n    workloadIPs: [127.0.0.9]\n");
    const r = spawnSync(
      process.execPath,
      [CLI, "proxy", "--config", bad, "--workload", "default/x/default", "--ca-dir", fx.caDir],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:5:5: workloads\[0\]\.workloadIPs: unknown field/);
  });

  it("reports ready, logs JSON, and serves a tunnel", async () => {
    const r = await fetch(`http://127.0.0.1:${ready.readiness}/healthz/ready`);
    expect(r.status).toBe(200);
    // A forward listener on port 0 got a free port, printed at start-up.
    expect(ready.forward).toHaveLength(1);
    expect(ready.forward[0]).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    const lines = stdout.split("\n").filter((l) => l.startsWith("{"));
    expect(lines.map((l) => JSON.parse(l).msg)).toContain("proxy ready");
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    t.end("hi");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("hi");
  });

  it("drains on SIGTERM: the tunnel in flight finishes with no byte lost, new ones are refused, exit 0", async () => {
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    const data = pattern(24 << 20, 77);
    const got: Buffer[] = [];
    t.on("data", (d: Buffer) => got.push(d));
    const ended = once(t, "end");
    const exited = once(child, "exit");
    const half = data.length / 2;
    for (let off = 0; off < half; off += 1 << 20)
      if (!t.write(data.subarray(off, off + (1 << 20)))) await once(t, "drain");
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    // Drain has begun: a new tunnel cannot start.
    await expect(a.connect("echo.default.svc.cluster.local:9000")).rejects.toThrow();
    for (let off = half; off < data.length; off += 1 << 20) {
      if (!t.write(data.subarray(off, off + (1 << 20)))) await once(t, "drain");
      await new Promise((r) => setTimeout(r, 5));
    }
    t.end();
    await ended;
    expect(Buffer.concat(got).equals(data)).toBe(true);
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
