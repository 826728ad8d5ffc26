// `npm start` (the `hbone start` demo) in node mode, as root: spawned as a user runs it. What it prints is checked —
// one node proxy per node serving several pods (and its config_dump agrees: a certificate per identity, each pod's
// listeners), DNS inside a pod answering the service VIP, every tunnel answered, default spread across both
// clusters, failover to cluster2 and back, 1 MiB byte-exact from cluster1 through cluster2's east-west gateway —
// and what it leaves: a second run at the same time does not clash with the first (its own namespaces), SIGINT
// while serving and SIGTERM while starting both remove every namespace the run made. Without root (as nobody), or
// as root refused namespaces (no CAP_SYS_ADMIN), it says in one line why and runs the loopback layout.

import { afterAll, describe, expect, it } from "vitest";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { requireNetns } from "../helpers/netns.js";
import { asNobody } from "../helpers/system.js";
import { waitFor } from "../helpers/node-proxy.js";

const OK = requireNetns();
const CLI = "dist/host/cli.js";

interface Run {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function startDemo(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, "start", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, out: () => out, exited };
}

const demoNamespaces = (tag = "hb-demo-") =>
  execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter((n) => n.startsWith(tag));

/** The table row whose label starts with `label`: [tunnels, local, remote, failed]. */
function row(out: string, label: string): number[] {
  const line = out.split("\n").find((l) => l.startsWith(`| ${label}`));
  if (!line) throw new Error(`no row "${label}" in:\n${out}`);
  return line
    .split("|")
    .slice(2, 6)
    .map((c) => Number(/^\s*(\d+)/.exec(c)![1]));
}

describe.skipIf(!OK)("npm start in node mode (network namespaces, nftables)", () => {
  const runs: Run[] = [];
  afterAll(async () => {
    for (const r of runs) {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
      await r.exited;
    }
  });

  it("one proxy per node serves several pods; every tunnel answered; byte-exact across clusters; a second run does not clash; SIGINT cleans up", async () => {
    const a = startDemo(["--duration", "120"]);
    runs.push(a);
    await waitFor("run A serving", () => Promise.resolve(a.out().includes("serving for 120 s")), 120_000);
    const out = a.out();
    const tag = /\((hb-demo-[0-9a-f]{6})-\*\)/.exec(out)?.[1];
    expect(tag, out).toBeDefined();
    expect(out).not.toContain("node mode unavailable");
    expect(out).toContain(
      "cluster1-node's one proxy serves: default/sleep, default/echo-a, default/echo-b, default/hello",
    );
    expect(out).toContain("cluster2-node's one proxy serves: default/echo-a, default/echo-b, default/hello");
    expect(out).toContain(
      "DNS inside cluster1's sleep pod (its DNS proxy, no /etc/hosts): echo.default.svc.cluster.local -> 10.96.0.10",
    );
    const spread = row(out, "echo (global), default");
    expect(spread[0]).toBe(100);
    expect(spread[1]).toBeGreaterThan(0);
    expect(spread[2]).toBeGreaterThan(0);
    expect(row(out, "hello (local-only")).toEqual([30, 30, 0, 0]);
    expect(row(out, "echo, trafficDistribution PreferClose")).toEqual([100, 100, 0, 0]);
    expect(row(out, "echo, PreferClose, cluster1's echo pods stopped")).toEqual([50, 0, 50, 0]);
    expect(row(out, "echo, PreferClose, pods restarted")[3]).toBe(0);
    expect(out).toMatch(
      /byte-exact across clusters: 1 MiB from cluster1's sleep pod to echo-[ab]@cluster2 through cluster2's east-west gateway \(double HBONE\) came back identical/,
    );
    // The node proxy's own view: four pods, each with its identity's certificate and its listeners inside the pod.
    const admin = Number(/admin 127\.0\.0\.1:(\d+)\/config_dump/.exec(out)![1]);
    const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump`)).json()) as {
      workloads: { uid: string; certificate: { identity: string }; listeners: { kind: string }[] }[];
    };
    expect(dump.workloads).toHaveLength(4);
    expect(new Set(dump.workloads.map((w) => w.certificate.identity))).toEqual(
      new Set(["sleep", "echo", "hello"].map((sa) => `spiffe://cluster.local/ns/default/sa/${sa}`)),
    );
    for (const w of dump.workloads) expect(w.listeners.map((l) => l.kind)).toContain("outbound");
    const mine = demoNamespaces(`${tag}-`);
    expect(mine.length).toBeGreaterThanOrEqual(9); // the wire, 8 pods

    // A second run while the first serves: its own namespaces, it completes, and the first's are untouched.
    const b = startDemo(["--duration", "0"]);
    runs.push(b);
    expect(await b.exited).toBe(0);
    expect(b.out()).toContain("came back identical");
    const tagB = /\((hb-demo-[0-9a-f]{6})-\*\)/.exec(b.out())?.[1];
    expect(tagB).toBeDefined();
    expect(tagB).not.toBe(tag);
    expect(demoNamespaces(`${tagB}-`)).toEqual([]);
    expect(demoNamespaces(`${tag}-`).sort()).toEqual(mine.sort());

    a.child.kill("SIGINT");
    expect(await a.exited).toBe(0);
    expect(a.out()).toContain(`stopped; removed the namespaces ${tag}-*`);
    expect(demoNamespaces(`${tag}-`)).toEqual([]);
  }, 240_000);

  it("SIGTERM while it is still setting up: every namespace it had made is removed", async () => {
    // Other runs (other users of this machine) may come and go meanwhile: only this run's prefix is looked at.
    const c = startDemo(["--duration", "0"]);
    runs.push(c);
    let tag = "";
    await waitFor(
      "run C's prefix",
      () => Promise.resolve(!!(tag = /namespaces are (hb-demo-[0-9a-f]{6})-\*/.exec(c.out())?.[1] ?? "")),
      60_000,
    );
    await waitFor("run C's first pods", () => Promise.resolve(demoNamespaces(`${tag}-`).length >= 3), 60_000);
    c.child.kill("SIGTERM");
    expect(await c.exited).toBe(130);
    expect(demoNamespaces(`${tag}-`)).toEqual([]);
  }, 90_000);

  it("without root (as nobody) it says why in one line and runs the loopback layout", () => {
    // As nobody when nobody can run the CLI from this checkout; else (a private checkout) as root, asked for it.
    const nobody = asNobody(CLI);
    if (!nobody) console.log("nobody cannot run the CLI from this checkout: checking the fallback as root instead");
    const r = nobody
      ? spawnSync("setpriv", [...nobody, "start", "--duration", "0"], { encoding: "utf8", timeout: 120_000 })
      : spawnSync(process.execPath, [CLI, "start", "--duration", "0"], {
          encoding: "utf8",
          timeout: 120_000,
          env: { ...process.env, HBONE_DEMO_LAYOUT: "loopback" },
        });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    const why = nobody
      ? "needs root (network namespaces and nftables need CAP_NET_ADMIN)"
      : "HBONE_DEMO_LAYOUT=loopback asks for it";
    expect(lines[0]).toBe(
      `node mode unavailable: ${why}; running the loopback layout (a proxy per workload on 127.0.x.y)`,
    );
    expect(lines.filter((l) => l.includes("node mode unavailable"))).toHaveLength(1);
    expect(r.stdout).toMatch(/two clusters up in \d+ ms: cluster1\/network1 on 127\.0\.1\.x/);
    expect(row(r.stdout, "echo (global), default")[3]).toBe(0);
  }, 130_000);

  it("root without CAP_SYS_ADMIN (namespaces refused): one line naming the refusal, then the loopback layout, nothing left", () => {
    const r = spawnSync(
      "setpriv",
      ["--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", process.execPath, CLI, "start", "--duration", "0"],
      { encoding: "utf8", timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    const tag = /^node mode: starting; its network namespaces are (hb-demo-[0-9a-f]{6})-\*$/.exec(lines[0]!)?.[1];
    expect(tag, r.stdout).toBeDefined();
    expect(lines[1]).toMatch(
      new RegExp(`^node mode failed: ip netns add ${tag}-wire: .*; running the loopback layout instead$`),
    );
    expect(lines[2]).toMatch(/^two clusters up in \d+ ms: cluster1\/network1 on 127\.0\.1\.x/);
    expect(row(r.stdout, "echo (global), default")[3]).toBe(0);
    expect(demoNamespaces(`${tag}-`)).toEqual([]);
  }, 130_000);
});
