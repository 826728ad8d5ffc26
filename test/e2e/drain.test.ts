// `hbone proxy` as a real process: it prints its addresses, serves tunnels, and on SIGTERM
// drains (GOAWAY, refuses new tunnels, lets the one in flight finish, no byte lost), then exits 0.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { once } from "node:events";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { pattern, writeAroundMidway } from "../helpers/net.js";
import { CLI, proxyArgs, spawnHbone, type HboneProcess } from "../helpers/attack.js";

const ECHO = "echo.default.svc.cluster.local:9000";
let fx: MeshFixture;
let proxy: HboneProcess;
let a: Mesh;
let ready: { inbound: string; admin: number; readiness: number; forward: string[] };
let stdout = "";

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  proxy = await spawnHbone(
    "proxy",
    proxyArgs(fx, "default/echo/echo", "--drain-timeout", "20", "--forward", `127.0.0.1:0=${ECHO}`),
    [],
    { env: { HBONE_LOG_LEVEL: "info" }, onLine: (l) => (stdout += l + "\n") },
  );
  ready = proxy.ready as typeof ready;
  a = await fx.proxy({
    workload: "default/sleep/sleep",
    inboundPort: false,
    hbonePort: Number(ready.inbound.split(":")[1]),
  });
}, 60_000);
afterAll(async () => {
  proxy?.proc.kill("SIGKILL");
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
    const t = await a.connect(ECHO);
    t.end("hi");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("hi");
  });

  it("drains on SIGTERM: the tunnel in flight finishes with no byte lost, new ones are refused, exit 0", async () => {
    const t = await a.connect(ECHO);
    const data = pattern(24 << 20, 77);
    const got: Buffer[] = [];
    t.on("data", (d: Buffer) => got.push(d));
    const ended = once(t, "end");
    const exited = once(proxy.proc, "exit");
    await writeAroundMidway(
      t,
      data,
      async () => {
        proxy.proc.kill("SIGTERM");
        await new Promise((r) => setTimeout(r, 200));
        // Drain has begun: a new tunnel cannot start.
        await expect(a.connect(ECHO)).rejects.toThrow();
      },
      5,
    );
    await ended;
    expect(Buffer.concat(got).equals(data)).toBe(true);
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
