// Two clusters on loopback, as multicluster ambient runs them: cluster1/network1 on
// 127.0.<a>.x and cluster2/network2 on 127.0.<b>.x, one shared root CA with an intermediate
// each, a node proxy per workload (each on its own IP's :15008, as pods on nodes), an
// east-west gateway per network, echo apps that say who they are, a global service `echo`
// (istio.io/global=true) with endpoints in both clusters and a local-only service `hello`.
// Each cluster's config is what its istiod would send: local workloads with addresses,
// remote ones address-less behind their network's gateway. Used by `npm start` and by tests.

import { initOrClose } from "../errors.js";
import net from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { once } from "node:events";
import { createPluginCa } from "../identity/ca.js";
import { startProxy, type Mesh, type ProxyOptions } from "../app.js";

export interface TwoClusterOptions {
  /** A scratch directory for CA files and configs. */
  dir: string;
  /** Third octets of the two clusters' loopback ranges (distinct per concurrent user). */
  octets?: [number, number];
  /** HBONE port of every proxy and gateway (each on its own IP). */
  hbonePort?: number;
  /** Passed to every proxy (e.g. outlier detection settings). */
  proxy?: Partial<ProxyOptions>;
}

export type Distribution = "default" | "PreferClose";

/** Where a series of tunnels from cluster1 went. */
export interface Tally {
  local: number;
  remote: number;
  failed: number;
}

export interface WorkloadSpec {
  name: string;
  namespace: string;
  sa: string;
  ip: string; // last octet
  service?: "echo" | "hello";
  gateway?: boolean;
  client?: boolean;
}

export const WORKLOADS: readonly WorkloadSpec[] = [
  { name: "sleep", namespace: "default", sa: "sleep", ip: "2", client: true },
  { name: "echo-a", namespace: "default", sa: "echo", ip: "3", service: "echo" },
  { name: "echo-b", namespace: "default", sa: "echo", ip: "4", service: "echo" },
  { name: "hello", namespace: "default", sa: "hello", ip: "5", service: "hello" },
  { name: "eastwest", namespace: "istio-system", sa: "istio-eastwestgateway", ip: "100", gateway: true },
];

export const APP_PORT = 9000;

/** The services' VIPs (as the config below names them). */
export const VIPS: Record<string, string> = {
  "echo.default.svc.cluster.local": "10.96.0.10",
  "hello.default.svc.cluster.local": "10.96.0.11",
};

export class TwoClusters {
  readonly clusters = ["cluster1", "cluster2"] as const;
  readonly proxies = new Map<string, Mesh>(); // "cluster1/echo-a" -> its node proxy
  protected readonly apps = new Map<string, net.Server>();
  private distribution: Distribution = "default";
  private readonly octets: [number, number];
  protected readonly hbonePort: number;

  /** `prefix`: the first two octets of every workload IP (loopback here; the node-mode demo's pod range). */
  protected constructor(
    protected readonly o: TwoClusterOptions,
    private readonly prefix = "127.0",
  ) {
    this.octets = o.octets ?? [1, 2];
    this.hbonePort = o.hbonePort ?? 15008;
  }

  static async start(o: TwoClusterOptions): Promise<TwoClusters> {
    const t = new TwoClusters(o);
    return initOrClose(t, () => t.init());
  }

  ip(cluster: string, last: string): string {
    return `${this.prefix}.${this.octets[cluster === "cluster1" ? 0 : 1]}.${last}`;
  }

  network(cluster: string): string {
    return cluster === "cluster1" ? "network1" : "network2";
  }

  caDir(cluster: string): string {
    return join(this.o.dir, `ca-${cluster}`);
  }

  configPath(cluster: string): string {
    return join(this.o.dir, `${cluster}.yaml`);
  }

  /** The client proxy of cluster1 (workload sleep). */
  get client(): Mesh {
    return this.proxies.get("cluster1/sleep")!;
  }

  /** What runs where, in one line (the demo prints it). */
  describe(): string {
    return (
      `cluster1/network1 on ${this.ip("cluster1", "x")}, cluster2/network2 on ${this.ip("cluster2", "x")}, one root CA, ` +
      `an intermediate each; ${this.proxies.size} node proxies (one per workload) and 2 east-west gateways on :15008`
    );
  }

  /** The workloads of cluster `c` (the client only in cluster1). */
  protected workloads(c: string): WorkloadSpec[] {
    return WORKLOADS.filter((w) => !w.client || c === "cluster1");
  }

  /** The CAs and both clusters' configs. */
  protected async prepare(): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true });
    // One root, an intermediate per cluster: clusters trust each other.
    await createPluginCa({ outDir: this.caDir("cluster1"), trustDomain: "cluster.local", cluster: "cluster1" });
    await createPluginCa({
      outDir: this.caDir("cluster2"),
      trustDomain: "cluster.local",
      cluster: "cluster2",
      rootDir: this.caDir("cluster1"),
    });
    for (const c of this.clusters) writeFileSync(this.configPath(c), this.config(c));
  }

  protected async init(): Promise<void> {
    await this.prepare();
    for (const c of this.clusters) {
      for (const w of this.workloads(c)) {
        if (w.service) {
          const srv = appServer(c, w);
          this.apps.set(`${c}/${w.name}`, srv);
          srv.listen(APP_PORT, this.ip(c, w.ip));
          await once(srv, "listening");
        }
        await this.startProxy(c, w);
      }
    }
  }

  private async startProxy(c: string, w: WorkloadSpec): Promise<void> {
    const m = await startProxy({
      config: this.configPath(c),
      caDir: this.caDir(c),
      workload: `${w.namespace}/${w.name}/${w.sa}`,
      cluster: c,
      network: this.network(c),
      inboundPort: this.hbonePort,
      hbonePort: this.hbonePort,
      socks5Port: false,
      adminPort: w.client || w.gateway ? 0 : false,
      metricsPort: 0,
      readinessPort: false,
      gateway: w.gateway,
      ...this.o.proxy,
    });
    this.proxies.set(`${c}/${w.name}`, m);
  }

  /** Stops (or restarts) a workload's node proxy, as when its pods go away and come back. */
  async stopProxy(c: string, name: string): Promise<void> {
    const key = `${c}/${name}`;
    await this.proxies.get(key)?.close();
    this.proxies.delete(key);
  }

  async restartProxy(c: string, name: string): Promise<void> {
    const w = WORKLOADS.find((x) => x.name === name)!;
    await this.startProxy(c, w);
  }

  /** Switches the echo service's trafficDistribution (as istiod maps it) in both clusters' configs. */
  async setDistribution(d: Distribution): Promise<void> {
    this.distribution = d;
    for (const c of this.clusters) writeFileSync(this.configPath(c), this.config(c));
    // The file sources debounce and reload; wait until every proxy applied it.
    const want = d === "PreferClose" ? "FAILOVER" : undefined;
    for (let i = 0; i < 100; i++) {
      const done = [...this.proxies.values()].every(
        (m) => m.state.serviceByHost("echo.default.svc.cluster.local")?.loadBalancer?.mode === want,
      );
      if (done) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("config reload did not reach every proxy");
  }

  /** Cluster `c`'s config, as its istiod would send it. */
  config(c: string): string {
    const other = c === "cluster1" ? "cluster2" : "cluster1";
    const lines: string[] = ["workloads:"];
    const workload = (cl: string, w: WorkloadSpec, local: boolean) => {
      const net = this.network(cl);
      lines.push(
        `  - uid: ${cl}//v1/Pod/${w.namespace}/${w.name}`,
        `    name: ${w.name}`,
        `    namespace: ${w.namespace}`,
        `    serviceAccount: ${w.sa}`,
        `    workloadName: ${w.name}`,
        `    workloadType: deployment`,
        `    canonicalName: ${w.service ?? w.name}`,
        `    canonicalRevision: v1`,
        `    protocol: HBONE`,
        `    clusterId: ${cl}`,
        `    network: ${net}`,
        `    node: ${cl}-node`,
        `    locality: { region: region-${cl}, zone: zone-${cl}, subzone: "" }`,
      );
      // Remote pods are address-less: reachable only through their network's gateway. Local pods name it too (as
      // istiod does for every pod of a network with a gateway): that is how an inbound knows the gateway's address.
      if (local || w.gateway) lines.push(`    workloadIps: [${this.ip(cl, w.ip)}]`);
      if (!w.gateway)
        lines.push(
          `    networkGateway: { destination: "${net}/${this.ip(cl, "100")}", hboneMtlsPort: ${this.hbonePort} }`,
        );
      if (w.service) {
        lines.push(
          "    services:",
          `      default/${w.service}.default.svc.cluster.local:`,
          `        ${APP_PORT}: ${APP_PORT}`,
        );
      }
    };
    for (const w of WORKLOADS) if (!w.client || c === "cluster1") workload(c, w, true);
    for (const w of WORKLOADS) if (!w.client && (w.service || w.gateway)) workload(other, w, false);
    const lb =
      this.distribution === "PreferClose"
        ? "\n    loadBalancer: { mode: FAILOVER, routingPreferences: [NETWORK, REGION, ZONE] }"
        : "";
    lines.push(
      "services:",
      "  - name: echo",
      "    namespace: default",
      "    hostname: echo.default.svc.cluster.local",
      `    vips: [${this.network(c)}/10.96.0.10]`,
      `    ports: { ${APP_PORT}: ${APP_PORT} }`,
      "    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]",
      '    labels: { istio.io/global: "true" }' + lb,
      "  - name: hello",
      "    namespace: default",
      "    hostname: hello.default.svc.cluster.local",
      `    vips: [${this.network(c)}/10.96.0.11]`,
      `    ports: { ${APP_PORT}: ${APP_PORT} }`,
      "    subjectAltNames: [spiffe://cluster.local/ns/default/sa/hello]",
    );
    return lines.join("\n") + "\n";
  }

  /** Opens a tunnel from cluster1's sleep to `dest`, sends `msg`, returns who answered and the echo. */
  async ask(dest: string, msg = "ping"): Promise<{ who: string; echo: string }> {
    const t = await this.client.connect(dest);
    t.end(msg);
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const nl = text.indexOf("\n");
    return { who: text.slice(0, nl), echo: text.slice(nl + 1) };
  }

  /** Opens `n` tunnels to `dest` from cluster1's sleep, one after another: where they went. */
  async tally(dest: string, n: number): Promise<Tally> {
    const t: Tally = { local: 0, remote: 0, failed: 0 };
    for (let i = 0; i < n; i++) {
      try {
        const { who } = await this.ask(dest);
        if (who.endsWith("@cluster1")) t.local++;
        else t.remote++;
      } catch {
        t.failed++;
      }
    }
    return t;
  }

  async close(): Promise<void> {
    for (const m of new Set([...this.proxies.values()].reverse())) await m.close();
    this.proxies.clear();
    for (const s of this.apps.values()) s.close();
    this.apps.clear();
  }
}

/** An app that first says who it is (`name@cluster`), then echoes (half-close aware). */
export function appServer(c: string, w: WorkloadSpec): net.Server {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.write(`${w.name}@${c}\n`);
    s.pipe(s);
  });
  srv.on("error", () => {});
  return srv;
}
