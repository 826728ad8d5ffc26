// `hbone proxy --workers 2` as a real process: two worker processes share the forward listener
// (connections spread over both: each worker reports its share as it stops, its log lines name it), a config file
// change reaches both (each logs its own reload), and SIGTERM drains both: the tunnel in flight
// finishes with no byte lost, every worker logs its drain, the primary exits 0. The status endpoints are the
// primary's and speak for the set: /metrics sums the workers (the same total at every scrape), readiness and
// /metrics answer 503 while a worker is stopped (SIGSTOP) and recover when it runs again, POST /logging reaches
// every worker, and POST /quitquitquit drains them all.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { pattern, writeAroundMidway } from "../helpers/net.js";
import { CLI, proxyArgs, spawnHbone, type HboneProcess } from "../helpers/attack.js";
import { freePort } from "../../bench/topologies/procs.js";

const WORKERS = 2;
let fx: MeshFixture;
let proxy: HboneProcess;
let stdout = "";
let forward: { host: string; port: number };
let tunnels = 0; // opened through the forward listener so far
let sleep: Mesh; // an in-process client proxy that opens HBONE tunnels into the workers' shared inbound
let status: { admin: number; metrics: number; readiness: number };
let pids: number[];

interface Line {
  msg?: string;
  worker?: number;
  [k: string]: unknown;
}
const lines = (): Line[] =>
  stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
const workersThatLogged = (msg: string) =>
  new Set(
    lines()
      .filter((l) => l.msg === msg)
      .map((l) => l.worker),
  );

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${stdout.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One tunnel through the forward listener: sends `data`, FIN, resolves with what came back. */
async function echo(data: Buffer): Promise<Buffer> {
  const s = net.connect(forward);
  s.on("error", () => {});
  const got: Buffer[] = [];
  s.on("data", (d: Buffer) => got.push(d));
  await once(s, "connect");
  s.end(data);
  await once(s, "close");
  return Buffer.concat(got);
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  // The workers serve echo: HBONE on a shared inbound port, and a forward listener whose tunnels come back to it.
  const hbone = await freePort("127.0.0.3");
  proxy = await spawnHbone(
    "proxy",
    proxyArgs(
      fx,
      "default/echo/echo",
      "--workers",
      String(WORKERS),
      "--inbound-port",
      String(hbone),
      "--hbone-port",
      String(hbone),
      "--drain-timeout",
      "20",
      "--forward",
      "127.0.0.1:0=echo.default.svc.cluster.local:9000",
    ),
    [],
    { env: { HBONE_LOG_LEVEL: "info" }, onLine: (l) => (stdout += l + "\n") },
  );
  const ready = proxy.ready as {
    forward: string[];
    workers: number;
    pids: number[];
    admin: number;
    metrics: number;
    readiness: number;
  };
  expect(ready.workers).toBe(WORKERS);
  expect(new Set(ready.pids).size).toBe(WORKERS);
  pids = ready.pids;
  status = { admin: ready.admin, metrics: ready.metrics, readiness: ready.readiness };
  for (const p of Object.values(status)) expect(p).toBeGreaterThan(0);
  const [host, port] = ready.forward[0].split(":");
  forward = { host, port: Number(port) };
  sleep = await fx.proxy({ workload: "default/sleep/sleep", inboundPort: false, hbonePort: hbone });
}, 60_000);

afterAll(async () => {
  for (const pid of pids ?? []) signal(pid, "SIGCONT");
  proxy?.proc.kill("SIGKILL");
  await fx?.close();
});

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** One request to a status port of the primary: its status and body. */
async function http(port: number, path: string, method = "GET"): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: r.status, body: await r.text() };
}

/** The sum of a metric family's samples in Prometheus text. */
function sumOf(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe("hbone proxy --workers 2", () => {
  it("serves tunnels through the shared forward listener, each byte-exact", async () => {
    const n = 40;
    for (let i = 0; i < n; i += 8) {
      const batch = await Promise.all(Array.from({ length: 8 }, (_, k) => echo(Buffer.from(`tunnel ${i + k}`))));
      batch.forEach((b, k) => expect(b.toString()).toBe(`tunnel ${i + k}`));
    }
    tunnels += n;
  });

  it("the primary's /metrics sums every worker's figures, the same total at every scrape", async () => {
    // Round-robin gave each worker a share: one worker's counters alone would be about half of these, and
    // scrapes that reached either worker would alternate between the two shares (a counter reset each time).
    for (let i = 0; i < 4; i++) {
      const m = await http(status.metrics, "/metrics");
      expect(m.status).toBe(200);
      // A forward tunnel is counted twice: at its outbound and at the inbound it reached.
      expect(sumOf(m.body, "istio_tcp_connections_opened_total")).toBe(2 * tunnels);
      // Info series are not summed; process figures are (the primary and both workers: over 3 x 30 MB).
      expect(sumOf(m.body, "istio_build")).toBe(1);
      expect(sumOf(m.body, "nodejs_version_info")).toBe(1);
      expect(sumOf(m.body, "process_resident_memory_bytes")).toBeGreaterThan(90e6);
      expect(sumOf(m.body, "process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000);
    }
  });

  it("readiness and /metrics are 503 while a worker does not answer (SIGSTOP), and recover when it runs again", async () => {
    expect(await http(status.readiness, "/healthz/ready")).toEqual({ status: 200, body: "ready\n" });
    signal(pids[1]!, "SIGSTOP");
    try {
      expect((await http(status.readiness, "/healthz/ready")).status).toBe(503);
      const m = await http(status.metrics, "/metrics");
      expect(m.status).toBe(503);
      expect(m.body).toMatch(/worker \d+ did not answer metrics/);
      // The primary still answers what it can by itself.
      expect((await http(status.admin, "/logging")).status).toBe(200);
    } finally {
      signal(pids[1]!, "SIGCONT");
    }
    const end = Date.now() + 5_000;
    while ((await http(status.readiness, "/healthz/ready")).status !== 200) {
      if (Date.now() > end) throw new Error("not ready again 5 s after SIGCONT");
      await new Promise((r) => setTimeout(r, 50));
    }
    // The stopped worker's late answers were dropped; the sums are whole again.
    expect(sumOf((await http(status.metrics, "/metrics")).body, "istio_tcp_connections_opened_total")).toBe(
      2 * tunnels,
    );
  }, 30_000);

  it("POST /logging on the primary reaches every worker; /config_dump answers from one", async () => {
    const completes = () => lines().filter((l) => l.msg === "connection complete");
    const batch = async (k: number) => {
      const got = await Promise.all(Array.from({ length: 8 }, (_, j) => echo(Buffer.from(`log ${k} ${j}`))));
      got.forEach((b, j) => expect(b.toString()).toBe(`log ${k} ${j}`));
      tunnels += 8;
    };
    // warn: no worker writes its access lines (INFO) any more.
    const quiet = await http(status.admin, "/logging?level=warn", "POST");
    expect(quiet.status).toBe(200);
    expect(JSON.parse(quiet.body)).toMatchObject({ level: "warn" });
    const before = completes().length;
    await batch(1);
    await batch(2);
    await new Promise((r) => setTimeout(r, 300)); // log lines go out every 20 ms
    expect(completes().length).toBe(before);
    // info again: both workers write them.
    expect((await http(status.admin, "/logging?level=info", "POST")).status).toBe(200);
    const after = completes().length;
    await batch(3);
    await batch(4);
    await until("access lines from every worker", () => {
      return (
        new Set(
          completes()
            .slice(after)
            .map((l) => l.worker),
        ).size === WORKERS
      );
    });
    // A bad spec changes nothing anywhere.
    expect((await http(status.admin, "/logging?level=loud", "POST")).status).toBe(400);
    const dump = await http(status.admin, "/config_dump");
    expect(dump.status).toBe(200);
    expect(JSON.parse(dump.body)).toMatchObject({ mode: "dedicated", identity: expect.stringContaining("/sa/echo") });
  });

  it("a config file change reaches every worker", async () => {
    const before = lines().filter((l) => l.msg === "config reloaded").length;
    // One more workload: every worker reloads the same file on its own.
    writeFileSync(
      fx.configPath,
      readFileSync(fx.configPath, "utf8").replace(
        "\nservices:\n",
        "\n  - uid: test//v1/Pod/default/extra\n    name: extra\n    namespace: default\n    workloadIps: [127.0.0.9]\n" +
          "    protocol: TCP\nservices:\n",
      ),
    );
    await until("a reload in every worker", () => {
      const reloads = lines()
        .filter((l) => l.msg === "config reloaded")
        .slice(before);
      return new Set(reloads.map((l) => l.worker)).size === WORKERS;
    });
    const last = lines()
      .filter((l) => l.msg === "config reloaded")
      .slice(-WORKERS);
    for (const l of last) expect(l.workloads).toBe(4);
  });

  it("drains every worker on SIGTERM (the tunnel in flight finishes, no byte lost, exit 0); the tunnels were spread over both", async () => {
    // Into a worker's inbound from an in-process client proxy, which the drain does not stop (a forward tunnel's
    // client side would be a worker draining too; test/e2e/drain-forward covers those).
    const s = await sleep.connect("echo.default.svc.cluster.local:9000");
    s.on("error", () => {});
    const data = pattern(8 << 20, 7);
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    const closed = once(s, "close");
    const exited = once(proxy.proc, "exit");
    await writeAroundMidway(s, data, async () => {
      // Echoed bytes prove a worker accepted it and the tunnel is up (one still in the shared accept queue
      // when the listeners close is refused, as by any listener that stops accepting).
      proxy.proc.kill("SIGTERM");
      await until("every worker draining", () => workersThatLogged("draining").size === WORKERS);
    });
    await closed;
    expect(Buffer.concat(got).equals(data)).toBe(true);
    const [code] = await exited;
    expect(code).toBe(0);
    expect(workersThatLogged("drained, exiting")).toEqual(new Set([1, 2]));
    // Each worker's share, from its own metrics (logged as it stopped): round-robin gives about half each.
    // A forward tunnel is counted twice (its outbound and, in whichever worker accepted it, its inbound).
    const stats = lines().filter((l) => l.msg === "worker stopping");
    expect(new Set(stats.map((l) => l.worker))).toEqual(new Set([1, 2]));
    const opened = stats.map((l) => l.tunnelsOpened as number);
    expect(opened.reduce((a, b) => a + b, 0)).toBe(2 * tunnels + 1);
    for (const o of opened) expect(o).toBeGreaterThanOrEqual(tunnels / 8);
  });
});

describe("hbone proxy --workers 2, POST /quitquitquit", () => {
  it("drains every worker and exits 0", async () => {
    let out = "";
    const p = await spawnHbone(
      "proxy",
      proxyArgs(fx, "default/echo/echo", "--workers", "2", "--inbound-port", "off", "--drain-timeout", "5"),
      [],
      { env: { HBONE_LOG_LEVEL: "info" }, onLine: (l) => (out += l + "\n") },
    );
    try {
      const exited = once(p.proc, "exit");
      const admin = (p.ready as { admin: number }).admin;
      expect(await http(admin, "/quitquitquit", "POST")).toEqual({ status: 200, body: "OK\n" });
      const [code] = await exited;
      expect(code).toBe(0);
      const drained = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Line)
        .filter((l) => l.msg === "drained, exiting");
      expect(new Set(drained.map((l) => l.worker))).toEqual(new Set([1, 2]));
    } finally {
      p.proc.kill("SIGKILL");
    }
  }, 30_000);
});
