// Node mode, in-pod: ONE spawned node proxy serves every pod a test istio-cni agent (test/helpers/zds-agent.ts,
// ZDS over SOCK_SEQPACKET with real netns fds) hands it. Pods are network namespaces on one bridge ("the node"),
// each with istio-cni's redirect rules (host/capture/rules.ts). An unmodified client in pod A (`net.connect` to
// the service VIP) reaches pod B's app through HBONE byte-exact; metrics and access logs name both workloads; a
// DENY policy on A's identity refuses A while pod C still gets through; a client outside the mesh reaches B via
// 15006 only while policy allows it; an add whose namespace cannot be entered is acked with an error; `del` closes
// that pod's listeners; a proxy restart gets the snapshot again and serves the same pods. DNS inside pod A answers
// mesh names with their VIPs, among them a global service that exists only in cluster 2 (another network, its east-
// west gateway and the service's proxy in a namespace on the same wire): A's connection to it is carried by double
// HBONE through the gateway, the inner mTLS end to end (the remote proxy sees A's identity).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { captureRuleset } from "../../host/capture/rules.js";
import { createNetns, requireNetns, runInNetns, type Netns, type NetnsProcess } from "../helpers/netns.js";
import { ZdsAgent } from "../helpers/zds-agent.js";
import * as np from "../helpers/node-proxy.js";

const OK = requireNetns();

const NODE = "node-1";
const VIP = "10.96.0.10";
const IP = { a: "10.88.0.2", b: "10.88.0.3", c: "10.88.0.4", outside: "10.88.0.9" };

const config = (policies = "") => `workloads:
  - {uid: a, name: sleep-a, namespace: default, serviceAccount: sleep-a, workloadIps: [${IP.a}], protocol: HBONE, node: ${NODE}}
  - {uid: b, name: echo-b, namespace: svc, serviceAccount: echo, workloadIps: [${IP.b}], protocol: HBONE, node: ${NODE},
     services: {svc/echo.svc.svc.cluster.local: {80: 8080}}}
  - {uid: c, name: sleep-c, namespace: default, serviceAccount: sleep-c, workloadIps: [${IP.c}], protocol: HBONE, node: ${NODE}}
${REMOTE_WORKLOADS(false)}
services:
${REMOTE_SERVICE}
  - {name: echo, namespace: svc, hostname: echo.svc.svc.cluster.local, vips: [/${VIP}], ports: {80: 8080},
     subjectAltNames: [spiffe://cluster.local/ns/svc/sa/echo]}
${policies}`;

// Cluster 2 (another network) behind its east-west gateway: a global service `remote` that exists only there.
const GW = "10.88.0.100",
  REMOTE = "10.88.0.101";
const REMOTE_WORKLOADS = (
  local: boolean,
) => `  - {uid: gw, name: eastwest, namespace: istio-system, serviceAccount: istio-eastwestgateway, workloadIps: [${GW}],
     protocol: HBONE, clusterId: cluster2, network: net2}
  - {uid: r, name: remote-echo, namespace: default, serviceAccount: echo, protocol: HBONE, clusterId: cluster2, network: net2,
     ${local ? `workloadIps: [${REMOTE}], ` : ""}networkGateway: {destination: "net2/${GW}", hboneMtlsPort: 15008},
     services: {default/remote.default.svc.cluster.local: {80: 8080}}}`;
const REMOTE_SERVICE = `  - {name: remote, namespace: default, hostname: remote.default.svc.cluster.local, vips: [/10.96.0.30], ports: {80: 8080},
     subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo], labels: {istio.io/global: "true"}}`;
const CLUSTER2 = `workloads:
${REMOTE_WORKLOADS(true)}
services:
${REMOTE_SERVICE}
`;

const POLICIES = `policies:
  - {name: deny-a, namespace: svc, scope: Namespace, action: Deny, rules: [[[{principals: [cluster.local/ns/default/sa/sleep-a]}]]]}
  - {name: only-c, namespace: svc, scope: Namespace, action: Allow, rules: [[[{principals: [cluster.local/ns/default/sa/sleep-c]}]]]}
`;

describe.skipIf(!OK)("node proxy in in-pod mode (network namespaces, ZDS agent)", () => {
  let dir: string, caDir: string, configPath: string;
  const ns: Record<string, Netns> = {};
  let node: Netns;
  let agent: ZdsAgent;
  let app: NetnsProcess;
  let proxy: np.SpawnedProxy;
  let gwNs: Netns, remoteApp: NetnsProcess;
  const cluster2: np.SpawnedProxy[] = [];

  const spawnProxy = () =>
    np.spawnNodeProxy(["--config", configPath, "--ca-dir", caDir], {
      INPOD_ENABLED: "true",
      INPOD_UDS: agent.path,
      NODE_NAME: NODE,
      HBONE_LOG_LEVEL: "info",
    });

  const fromPod = (pod: Netns, host: string, port: number) => runInNetns(pod, np.ECHO_CLIENT, [host, String(port)]);
  const dump = async () =>
    (await (await fetch(`http://127.0.0.1:${proxy.admin}/config_dump`)).json()) as {
      workloads: {
        uid: string;
        listeners: { kind: string; address?: unknown }[];
        certificate: { identity: string; notAfter?: string };
      }[];
    };
  beforeAll(async () => {
    const m = await np.meshDir("node", { "mesh.yaml": config(), "cluster2.yaml": CLUSTER2 });
    dir = m.dir;
    caDir = m.caDir;
    configPath = m.file("mesh.yaml");
    // The node: a bridge in its own namespace; each pod a namespace with a veth onto it.
    node = createNetns();
    node.ip("link", "add", "br0", "type", "bridge");
    node.ip("link", "set", "br0", "up");
    let n = 0;
    for (const [name, ip] of Object.entries(IP)) {
      const pod = createNetns();
      ns[name] = pod;
      const inPod = `p${n}`,
        onNode = `n${n++}-${process.pid % 1000}`;
      pod.ip("link", "add", inPod, "type", "veth", "peer", "name", onNode, "netns", node.name);
      pod.ip("addr", "add", `${ip}/24`, "dev", inPod);
      pod.ip("link", "set", inPod, "up");
      pod.ip("route", "add", "10.96.0.0/16", "dev", inPod);
      node.ip("link", "set", onNode, "master", "br0");
      node.ip("link", "set", onNode, "up");
    }
    // Cluster 2 on the same wire: its east-west gateway and the remote echo's proxy and app in one namespace.
    gwNs = createNetns();
    gwNs.ip("link", "add", "g0", "type", "veth", "peer", "name", `gw-${process.pid % 1000}`, "netns", node.name);
    for (const ip of [GW, REMOTE]) gwNs.ip("addr", "add", `${ip}/24`, "dev", "g0");
    gwNs.ip("link", "set", "g0", "up");
    node.ip("link", "set", `gw-${process.pid % 1000}`, "master", "br0");
    node.ip("link", "set", `gw-${process.pid % 1000}`, "up");
    remoteApp = await np.startEchoApp(gwNs);
    const c2 = ["--config", join(dir, "cluster2.yaml"), "--ca-dir", caDir, "--cluster", "cluster2"];
    cluster2.push(
      await np.spawnNodeProxy(
        [...c2, "--workload", "istio-system/eastwest/istio-eastwestgateway"],
        {},
        { netns: gwNs.name, command: "gateway" },
      ),
    );
    cluster2.push(
      await np.spawnNodeProxy(
        [...c2, "--workload", "default/remote-echo/echo"],
        { HBONE_LOG_LEVEL: "info" },
        { netns: gwNs.name },
      ),
    );
    // istio-cni's redirection inside each mesh pod (not the outside client).
    for (const name of ["a", "b", "c"]) {
      writeFileSync(join(dir, `rules-${name}.nft`), captureRuleset());
      ns[name]!.exec("nft", "-f", join(dir, `rules-${name}.nft`));
    }
    app = await np.startEchoApp(ns.b!);
    agent = ZdsAgent.listen(join(dir, "ztunnel.sock"));
    for (const [uid, name, namespace, sa] of [
      ["a", "sleep-a", "default", "sleep-a"],
      ["b", "echo-b", "svc", "echo"],
      ["c", "sleep-c", "default", "sleep-c"],
    ] as const) {
      agent.pods.set(uid, { info: { name, namespace, serviceAccount: sa }, netns: `/var/run/netns/${ns[uid]!.name}` });
    }
    proxy = await spawnProxy();
    await agent.nextConnection(0);
    const ready = `http://127.0.0.1:${proxy.readiness}/healthz/ready`;
    expect((await fetch(ready)).status).toBe(503); // no snapshot yet
    expect(await agent.sendSnapshot()).toEqual({ a: "", b: "", c: "", snapshot_sent: "" });
    await np.waitFor("readiness", async () => (await fetch(ready)).status === 200);
  }, 90_000);

  afterAll(async () => {
    await proxy?.stop();
    for (const p of cluster2) await p.stop();
    await remoteApp?.stop();
    gwNs?.del();
    await app?.stop();
    agent?.close();
    for (const x of Object.values(ns)) x.del();
    node?.del();
  });

  it("an unmodified client in pod A reaches pod B's app through the VIP, byte-exact, over HBONE", async () => {
    expect(await fromPod(ns.a!, VIP, 80)).toBe(np.ECHO_EXPECTED);
    const d = await dump();
    expect(d.workloads.map((w) => w.uid).sort()).toEqual(["a", "b", "c"]);
    const b = d.workloads.find((w) => w.uid === "b")!;
    expect(b.certificate.identity).toBe("spiffe://cluster.local/ns/svc/sa/echo");
    expect(b.certificate.notAfter).toBeTruthy();
    expect(b.listeners.map((l) => l.kind).sort()).toEqual(["dns", "hbone", "inbound-plaintext", "outbound"]);
    // Metrics and access logs name both workloads, on both sides.
    await np.waitFor("metrics", async () => {
      const m = await (await fetch(`http://127.0.0.1:${proxy.metrics}/metrics`)).text();
      return (
        /istio_tcp_connections_opened_total\{[^}]*reporter="source"[^}]*source_workload="sleep-a"[^}]*destination_workload="echo-b"/.test(
          m,
        ) &&
        /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_workload="sleep-a"[^}]*destination_workload="echo-b"/.test(
          m,
        )
      );
    });
    await np.waitFor("access lines", async () => {
      const lines = proxy.accessLines();
      const named = (direction: string) =>
        lines.some(
          (l) =>
            l.direction === direction &&
            l["src.workload"] === "sleep-a" &&
            l["src.identity"] === "spiffe://cluster.local/ns/default/sa/sleep-a" &&
            l["dst.workload"] === "echo-b" &&
            l["dst.identity"] === "spiffe://cluster.local/ns/svc/sa/echo" &&
            l.bytes_recv === 65536 &&
            l.bytes_sent === 65536,
        );
      return named("inbound") && named("outbound");
    });
  });

  it("DNS inside a pod: mesh names (short forms of the pod's namespace, a service only in another cluster) answer with their VIPs", async () => {
    // Any resolver address: the pod's rules send UDP 53 to the pod's DNS proxy on 15053.
    const script = `
import { Resolver } from "node:dns/promises";
const r = new Resolver({ timeout: 3000, tries: 1 }); r.setServers(["10.88.0.53"]);
const out = [];
for (const n of process.argv.slice(-2)) out.push(await r.resolve4(n).then((a) => a.join(","), (e) => "ERR " + e.code));
console.log("RESULT " + out.join(" "));`;
    expect(await runInNetns(ns.a!, script, ["echo.svc", "remote"])).toBe(`${VIP} 10.96.0.30`);
  });

  it("a global service only in the other cluster is carried through its east-west gateway (double HBONE)", async () => {
    expect(await fromPod(ns.a!, "10.96.0.30", 80)).toBe(np.ECHO_EXPECTED);
    await np.waitFor("the remote proxy's inbound line", async () =>
      cluster2[1]!
        .accessLines()
        .some(
          (l) =>
            l.direction === "inbound" &&
            l["src.identity"] === "spiffe://cluster.local/ns/default/sa/sleep-a" &&
            l.bytes_recv === 65536,
        ),
    );
  });

  it("a client outside the mesh reaches pod B via 15006 while policy allows it", async () => {
    expect(await fromPod(ns.outside!, IP.b, 8080)).toBe(np.ECHO_EXPECTED);
    const m = await (await fetch(`http://127.0.0.1:${proxy.metrics}/metrics`)).text();
    expect(m).toMatch(
      /istio_tcp_connections_opened_total\{[^}]*destination_workload="echo-b"[^}]*connection_security_policy="unknown"/,
    );
  });

  it("a DENY on pod A's identity refuses A; pod C on the same node gets through; plaintext is refused by ALLOW", async () => {
    writeFileSync(configPath, config(POLICIES));
    await np.waitFor("policy in force", async () => (await fromPod(ns.a!, VIP, 80)) !== np.ECHO_EXPECTED, 15_000);
    expect(await fromPod(ns.a!, VIP, 80)).toMatch(/^ERR/);
    expect(await fromPod(ns.c!, VIP, 80)).toBe(np.ECHO_EXPECTED);
    expect(await fromPod(ns.outside!, IP.b, 8080)).toMatch(/^ERR/);
    writeFileSync(configPath, config());
    await np.waitFor("policy lifted", async () => (await fromPod(ns.a!, VIP, 80)) === np.ECHO_EXPECTED, 15_000);
  });

  it("hostile pod: its own capture ports as destinations, garbage and resets on 15001/15006/15008 — refused, still serving", async () => {
    // From inside pod A: 40 connections to each of the pod's proxy ports, directly (loopback and the pod's own address
    // are not redirected): half write garbage and reset at once, half wait for an answer. None may be carried anywhere
    // (a loop back into the proxy), none may take it down.
    const script = `
import net from "node:net";
const targets = process.argv.slice(-1)[0].split(",");
let answered = 0, done = 0, total = 0;
const finish = () => { if (++done === total) { console.log("RESULT answered=" + answered); process.exit(0); } };
setTimeout(() => { console.log("RESULT timeout answered=" + answered + " done=" + done); process.exit(0); }, 12000);
for (const t of targets) for (let i = 0; i < 40; i++) {
  total++;
  const [host, port] = [t.slice(0, t.lastIndexOf(":")), Number(t.slice(t.lastIndexOf(":") + 1))];
  const s = net.connect({ host, port });
  s.on("error", () => {}); s.on("close", finish);
  s.on("data", () => { answered++; s.destroy(); });
  s.on("connect", () => { s.write(Buffer.alloc(4096, 0x16)); if (i % 2) s.resetAndDestroy(); else setTimeout(() => s.destroy(), 1500); });
}`;
    const targets = ["127.0.0.1:15001", "127.0.0.1:15006", `${IP.a}:15001`, `${IP.a}:15006`, "127.0.0.1:15008"];
    const r = await runInNetns(ns.a!, script, [targets.join(",")], 20_000);
    // 15008 answers garbage with a TLS alert at most; the capture ports never carry a byte anywhere.
    expect(r).toMatch(/^answered=\d+$/);
    expect(Number(r.split("=")[1])).toBeLessThanOrEqual(40);
    expect(proxy.child.exitCode).toBeNull();
    expect(await fromPod(ns.c!, VIP, 80)).toBe(np.ECHO_EXPECTED);
    expect(await fromPod(ns.a!, VIP, 80)).toBe(np.ECHO_EXPECTED);
  }, 40_000);

  it("an add whose namespace cannot be entered is acked with an error; the others still work", async () => {
    const ack = await agent.add(
      "bad",
      { name: "sleep-a", namespace: "default", serviceAccount: "sleep-a" },
      "/proc/self/ns/mnt",
    );
    expect(ack).toMatch(/namespace/);
    expect(await fromPod(ns.c!, VIP, 80)).toBe(np.ECHO_EXPECTED);
  });

  it("del closes that pod's listeners; a restarted proxy gets the snapshot again and serves the same pods", async () => {
    expect(await agent.del("c")).toBe("");
    expect((await dump()).workloads.map((w) => w.uid).sort()).toEqual(["a", "b"]);
    // Pod C's outbound capture has no listener any more: its connection is refused.
    expect(await fromPod(ns.c!, VIP, 80)).toMatch(/^ERR/);
    await proxy.stop();
    const before = agent.connections;
    proxy = await spawnProxy();
    await agent.nextConnection(before);
    expect(await agent.sendSnapshot()).toEqual({ a: "", b: "", c: "", snapshot_sent: "" });
    await np.waitFor(
      "readiness after restart",
      async () => (await fetch(`http://127.0.0.1:${proxy.readiness}/healthz/ready`)).status === 200,
    );
    expect(await fromPod(ns.a!, VIP, 80)).toBe(np.ECHO_EXPECTED);
    expect(await fromPod(ns.c!, VIP, 80)).toBe(np.ECHO_EXPECTED);
  }, 60_000);
});
