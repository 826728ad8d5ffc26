// The two clusters of the demo in node mode, as ambient runs them on real nodes: every pod is a network namespace
// (named hb-demo-<random>-…, so two runs never clash) on one bridge, with istio-cni's capture rules
// (capture/rules.ts); each cluster has one node whose ONE node proxy (in-pod mode) serves all its pods, handed
// over by a stand-in istio-cni agent over ZDS (./zds-agent.ts) with the pods' netns fds; the east-west gateway of
// each network runs in its own pod namespace (a spawned `hbone gateway`). Apps are unmodified: they listen inside
// their pod, and the client just connects to a service VIP from inside its pod — the capture rules send it to the
// node proxy. Same config, services and story as the loopback layout (./two-clusters.ts); needs root,
// iproute2 and nftables (`nodeModeUnavailable` says what is missing).

import { initOrClose } from "../errors.js";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { closeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type net from "node:net";
import * as packet from "dns-packet";
import { startProxy, type Mesh } from "../app.js";
import { applyRules } from "../capture/rules.js";
import { nativeAvailable } from "../sys/libc.js";
import { openNetns } from "../sys/netns.js";
import { adoptServer, createListenSocketIn, createUdpSocketIn, dialFrom } from "../sys/socket.js";
import { APP_PORT, TwoClusters, VIPS, appServer, type TwoClusterOptions, type WorkloadSpec } from "./two-clusters.js";
import { ZdsAgent } from "./zds-agent.js";
import { NODE_FLAGS } from "../runtime-config.js";

/** The pod range: 10.244.<cluster octet>.<workload>, on one bridge. */
const POD_PREFIX = "10.244";
const CLI = fileURLToPath(new URL("../cli.js", import.meta.url));
/** Bound on one demo tunnel (connect, answer, echo). */
const ASK_TIMEOUT_MS = 10_000;

/** True when `cmd args` runs and exits 0 (the demo's and the tests' check for ip, nft, openssl, …). */
export function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Why node mode cannot run here (root, iproute2, nftables, the native-call library), or undefined. */
export function nodeModeUnavailable(): string | undefined {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (network namespaces and nftables need CAP_NET_ADMIN)");
  if (!runs("ip", ["-V"])) missing.push("ip (apt-get install -y iproute2)");
  if (!runs("nft", ["--version"])) missing.push("nft (apt-get install -y nftables)");
  if (missing.length === 0 && !nativeAvailable()) missing.push("native calls (koffi did not load)");
  return missing.length > 0 ? `needs ${missing.join(", ")}` : undefined;
}

function ip(args: string[]): void {
  try {
    execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`ip ${args.join(" ")}: ${e.stderr?.toString().trim() || e.message}`);
  }
}

interface Pod {
  cluster: string;
  spec: WorkloadSpec;
  uid: string;
  netns: string;
  fd: number;
}

export class NodeClusters extends TwoClusters {
  /** Prefix of every namespace this run creates. */
  readonly tag = `hb-demo-${randomBytes(3).toString("hex")}`;
  private readonly namespaces: string[] = [];
  private readonly pods = new Map<string, Pod>(); // "cluster1/echo-a"
  private readonly agents = new Map<string, ZdsAgent>(); // cluster -> its node's agent
  readonly nodes = new Map<string, Mesh>(); // cluster -> its node proxy
  private readonly gateways: ChildProcess[] = [];
  private readonly sweep = () => this.sweepSync();

  private constructor(o: TwoClusterOptions) {
    super(o, POD_PREFIX);
  }

  /** `announce` hears the run's namespace prefix before anything is made. */
  static async startNodes(o: TwoClusterOptions, announce?: (tag: string) => void): Promise<NodeClusters> {
    const t = new NodeClusters(o);
    announce?.(t.tag);
    return initOrClose(t, () => t.init());
  }

  override describe(): string {
    const served = [...this.nodes.keys()].map((c) => `${c}-node: ${this.podsOf(c).length} pods`).join(", ");
    return (
      `node mode: every pod a network namespace (${this.tag}-*) with istio-cni's capture rules, on one bridge; ` +
      `cluster1/network1 pods on ${this.ip("cluster1", "x")}, cluster2/network2 on ${this.ip("cluster2", "x")}; ` +
      `one node proxy per node, in-pod mode over ZDS (${served}); an east-west gateway pod per network`
    );
  }

  /** The pods a node proxy serves (every workload of the cluster but its gateway). */
  private podsOf(c: string): Pod[] {
    return [...this.pods.values()].filter((p) => p.cluster === c && !p.spec.gateway);
  }

  private addNetns(name: string): string {
    ip(["netns", "add", name]);
    this.namespaces.push(name);
    ip(["-n", name, "link", "set", "lo", "up"]);
    return name;
  }

  protected override async init(): Promise<void> {
    process.on("exit", this.sweep);
    await this.prepare();
    const wire = this.addNetns(`${this.tag}-wire`);
    ip(["-n", wire, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", wire, "link", "set", "br0", "up"]);
    let n = 0;
    for (const c of this.clusters) {
      for (const w of this.workloads(c)) {
        const ns = this.addNetns(`${this.tag}-${c === "cluster1" ? "c1" : "c2"}-${w.name}`);
        const port = `p${n++}`;
        ip(["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", wire]);
        ip(["-n", ns, "addr", "add", `${this.ip(c, w.ip)}/16`, "dev", "eth0"]);
        ip(["-n", ns, "link", "set", "eth0", "up"]);
        // Everything else (the VIPs, 10.96.0.0/16) routes out of the pod: the rules capture it first.
        ip(["-n", ns, "route", "add", "default", "dev", "eth0"]);
        ip(["-n", wire, "link", "set", port, "master", "br0"]);
        ip(["-n", wire, "link", "set", port, "up"]);
        if (!w.gateway) await applyRules({ netns: ns });
        const pod: Pod = { cluster: c, spec: w, uid: this.uid(c, w), netns: ns, fd: openNetns(ns) };
        this.pods.set(`${c}/${w.name}`, pod);
        if (w.service) await this.startPodApp(pod);
      }
    }
    for (const c of this.clusters) {
      await this.startGateway(c);
      await this.startNode(c);
    }
  }

  private uid(c: string, w: WorkloadSpec): string {
    return `${c}//v1/Pod/${w.namespace}/${w.name}`; // as the config names it
  }

  /** The app, listening inside its pod (an unmodified server: 0.0.0.0:9000). */
  private async startPodApp(pod: Pod): Promise<void> {
    const srv = appServer(pod.cluster, pod.spec);
    this.apps.set(`${pod.cluster}/${pod.spec.name}`, srv);
    await adoptServer(srv, createListenSocketIn(pod.fd, { host: "0.0.0.0", port: APP_PORT }).fd);
  }

  /** The node's proxy (in-pod mode) and its istio-cni stand-in, which hands it the node's pods. */
  private async startNode(c: string): Promise<void> {
    const agent = ZdsAgent.listen(join(this.o.dir, `${c}-ztunnel.sock`));
    this.agents.set(c, agent);
    for (const p of this.podsOf(c)) {
      const { name, namespace, sa } = p.spec;
      agent.pods.set(p.uid, { info: { name, namespace, serviceAccount: sa }, netns: `/var/run/netns/${p.netns}` });
    }
    const node = await startProxy({
      config: this.configPath(c),
      caDir: this.caDir(c),
      cluster: c,
      network: this.network(c),
      nodeName: `${c}-node`,
      inpod: { uds: agent.path },
      inboundPort: false,
      hbonePort: this.hbonePort,
      socks5Port: false,
      adminPort: 0,
      metricsPort: 0,
      readinessPort: false,
      ...this.o.proxy,
    });
    this.nodes.set(c, node);
    for (const p of this.podsOf(c)) this.proxies.set(`${c}/${p.spec.name}`, node);
    await agent.nextConnection(0);
    const acks = await agent.sendSnapshot();
    const refused = Object.entries(acks).filter(([, e]) => e !== "");
    if (refused.length > 0) throw new Error(`${c}-node refused pods: ${JSON.stringify(Object.fromEntries(refused))}`);
  }

  /** The network's east-west gateway, a spawned `hbone gateway` inside its own pod namespace. */
  private async startGateway(c: string): Promise<void> {
    const gw = this.pods.get(`${c}/eastwest`)!;
    const { namespace, name, sa } = gw.spec;
    const child = spawn(
      "ip",
      [
        ...["netns", "exec", gw.netns, process.execPath, ...NODE_FLAGS, CLI, "gateway"],
        ...["--config", this.configPath(c), "--ca-dir", this.caDir(c), "--workload", `${namespace}/${name}/${sa}`],
        ...["--cluster", c, "--network", this.network(c), "--inbound-port", String(this.hbonePort)],
        ...["--admin-port", "off", "--metrics-port", "off", "--readiness-port", "off"],
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HBONE_LOG_LEVEL: "error" } },
    );
    this.gateways.push(child);
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${c}'s gateway not ready in 20 s: ${out.slice(-1000)}`)), 20_000);
      const onData = (d: Buffer) => {
        if (out.length < 16_384) out += d.toString();
        if (out.includes("hbone gateway ready")) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.on("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
      child.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`${c}'s gateway exited ${code}: ${out.slice(-1000)}`));
      });
    });
    child.removeAllListeners("exit");
  }

  /** An unmodified client in cluster1's sleep pod: connects to the service's VIP, sends `msg`, reads to the end. */
  override async ask(dest: string, msg: string | Buffer = "ping"): Promise<{ who: string; echo: string }> {
    const text = (await this.exchange(dest, msg)).toString("latin1");
    const nl = text.indexOf("\n");
    return { who: text.slice(0, nl), echo: text.slice(nl + 1) };
  }

  private exchange(dest: string, msg: string | Buffer): Promise<Buffer> {
    const i = dest.lastIndexOf(":");
    const vip = VIPS[dest.slice(0, i)];
    if (!vip) return Promise.reject(new Error(`no VIP for ${dest}`));
    const sleep = this.pods.get("cluster1/sleep")!;
    return new Promise((resolve, reject) => {
      const s: net.Socket = dialFrom(sleep.fd, vip, Number(dest.slice(i + 1)));
      s.allowHalfOpen = true;
      const chunks: Buffer[] = [];
      const t = setTimeout(
        () => s.destroy(new Error(`no answer from ${dest} in ${ASK_TIMEOUT_MS} ms`)),
        ASK_TIMEOUT_MS,
      );
      s.on("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
      s.on("connect", () => s.end(msg));
      s.on("data", (d: Buffer) => chunks.push(d));
      s.on("end", () => {
        clearTimeout(t);
        s.destroy();
        resolve(Buffer.concat(chunks));
      });
    });
  }

  /**
   * Sends `bytes` of a pattern from cluster1's sleep to `dest` until a cluster2 pod answers (at most `tries`):
   * who answered and whether every byte came back (sha256 compared).
   */
  async exactRemote(dest: string, bytes: number, tries = 20): Promise<{ who: string; exact: boolean; sha: string }> {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 7 + 3) & 255;
    const sha = createHash("sha256").update(data).digest("hex");
    for (let n = 0; n < tries; n++) {
      const got = await this.exchange(dest, data);
      const nl = got.indexOf(10);
      const who = got.subarray(0, nl).toString();
      if (!who.endsWith("@cluster2")) continue;
      const echo = got.subarray(nl + 1);
      return { who, exact: createHash("sha256").update(echo).digest("hex") === sha, sha };
    }
    throw new Error(`no cluster2 pod answered ${dest} in ${tries} tries`);
  }

  /** A DNS lookup from inside cluster1's sleep pod, to any resolver address: the rules send it to its DNS proxy. */
  async lookupInPod(name: string): Promise<string[]> {
    const sleep = this.pods.get("cluster1/sleep")!;
    const sock = dgram.createSocket("udp4");
    sock.bind({ fd: createUdpSocketIn(sleep.fd, { host: "0.0.0.0", port: 0 }) });
    try {
      return await new Promise<string[]>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no DNS answer for ${name} in 5 s`)), 5_000);
        sock.on("error", (err) => {
          clearTimeout(t);
          reject(err);
        });
        sock.on("message", (m) => {
          clearTimeout(t);
          const r = packet.decode(m);
          resolve((r.answers ?? []).map((a) => ("data" in a ? String(a.data) : "")).filter(Boolean));
        });
        const q = packet.encode({
          type: "query",
          id: 7,
          flags: packet.RECURSION_DESIRED,
          questions: [{ type: "A", name }],
        });
        sock.send(q, 53, "10.96.0.53");
      });
    } finally {
      sock.close();
    }
  }

  /** The node proxy's view: the pods it serves (config_dump's workloads). */
  async served(c: string): Promise<string[]> {
    const admin = this.nodes.get(c)!.addresses.admin!.port;
    const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump`)).json()) as {
      workloads: { workload?: string; name?: string; namespace?: string; uid: string }[];
    };
    return dump.workloads.map((w) => w.uid.split("/").slice(-2).join("/"));
  }

  /** Its pods go away (the agent's `del`): their listeners close, as when the pods stop. */
  override async stopProxy(c: string, name: string): Promise<void> {
    const ack = await this.agents.get(c)!.del(this.pods.get(`${c}/${name}`)!.uid);
    if (ack !== "") throw new Error(`del ${c}/${name}: ${ack}`);
  }

  override async restartProxy(c: string, name: string): Promise<void> {
    const p = this.pods.get(`${c}/${name}`)!;
    const ack = await this.agents
      .get(c)!
      .add(p.uid, { name, namespace: p.spec.namespace, serviceAccount: p.spec.sa }, `/var/run/netns/${p.netns}`);
    if (ack !== "") throw new Error(`add ${c}/${name}: ${ack}`);
  }

  override async close(): Promise<void> {
    for (const g of this.gateways) {
      if (g.exitCode !== null || g.signalCode !== null) continue;
      const exited = new Promise((r) => g.once("exit", r));
      g.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000).unref())]);
    }
    await super.close(); // the node proxies and apps
    for (const a of this.agents.values()) a.close();
    this.agents.clear();
    for (const p of this.pods.values()) closeSync(p.fd);
    this.pods.clear();
    this.sweepSync();
    process.off("exit", this.sweep);
  }

  /** Synchronous last resort (process exit): kills the gateways, deletes every namespace this run made. */
  private sweepSync(): void {
    for (const g of this.gateways) if (g.exitCode === null && g.signalCode === null) g.kill("SIGKILL");
    for (const ns of this.namespaces.splice(0)) {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
      } catch {
        // already gone
      }
    }
  }
}
