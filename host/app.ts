// Wiring of a node proxy, in ztunnel's app.rs order: config -> state, certificates, metrics
// and admin, then the proxy (inbound, outbound, SOCKS5, forward listeners). `startProxy`
// returns a Mesh: the same object the CLI runs and a Node application embeds.

import net from "node:net";
import { readFileSync } from "node:fs";
import type http from "node:http";
import type { Duplex } from "node:stream";
import { parseMeshConfig, type MeshConfig, type Workload } from "./config.js";
import { ProxyState, ProxyStateUpdater } from "./state/index.js";
import { LocalConfigSource } from "./xds/local.js";
import { XdsClient } from "./xds/client.js";
import { IstioCaClient } from "./identity/istio-ca.js";
import { Identity } from "./identity/identity.js";
import { CertificateAuthority, type WorkloadCertificate } from "./identity/ca.js";
import { SecretManager, type CertificateSource } from "./identity/manager.js";
import type { SessionOptions } from "./h2/session.js";
import { HbonePool, type PoolOptions } from "./proxy/pool.js";
import { Inbound, type Acceptor } from "./proxy/inbound.js";
import { Gateway } from "./proxy/gateway.js";
import { LoadBalancer } from "./lb.js";
import { Outbound, OutboundError } from "./proxy/outbound.js";
import { createSocks5Server, SOCKS_OK } from "./proxy/socks5.js";
import { pipeTunnel, resetSocket } from "./proxy/pipe.js";
import { PROXY_PORTS, parseHostPort, type HostPort } from "./proxy/authority.js";
import { Metrics } from "./metrics.js";
import { serveHttp, jsonResponse, loggingRoute } from "./admin.js";
import { logger } from "./log.js";
import { VERSION } from "./version.js";
import type { Dispatcher } from "undici";
import type https from "node:https";
import { meshAgent, meshHttpsAgent, meshDispatcher, type MeshDispatcherOptions } from "./http/agent.js";
import { serveTunnels, type ConnectionServer } from "./http/serve.js";

const log = logger("proxy");

export interface ForwardListener {
  /** Where to listen, e.g. 127.0.0.1:9080. */
  listen: HostPort;
  /** Where its connections go, e.g. reviews.default.svc.cluster.local:9080. */
  to: string;
}

export interface ProxyOptions {
  /** The mesh config: a YAML file in ztunnel's local format (watched and reloaded), or the model itself.
   *  Not needed with xdsAddress. */
  config?: string | MeshConfig;
  /** The workload this proxy serves: "namespace/name/serviceAccount" (ztunnel's PROXY_WORKLOAD_INFO). */
  workload: string;
  /** An Istio plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem) that signs our certificate.
   *  Not needed with caAddress. */
  caDir?: string;
  /** istiod's xDS endpoint (ztunnel XDS_ADDRESS, e.g. https://istiod.istio-system.svc:15012): the config comes
   *  from Delta ADS instead of `config`; start() waits for the first ACK of both types. */
  xdsAddress?: string;
  /** istiod's CA endpoint (ztunnel CA_ADDRESS): our certificate comes from CreateCertificate instead of caDir. */
  caAddress?: string;
  /** Bearer token for both (default /var/run/secrets/tokens/istio-token). */
  tokenFile?: string;
  /** The mesh root istiod's TLS and issued chains must chain to (default /var/run/secrets/istio/root-cert.pem). */
  rootCertPath?: string;
  /** The `clusterid` header (default: `cluster`). */
  clusterId?: string;
  /** How long start() waits for xDS readiness (default 30 s). */
  xdsReadyTimeoutMs?: number;
  /** Also accept istiod's TLS certificate when its URI SAN is this SPIFFE id (an istiod serving a mesh certificate,
   *  as the tests' does); otherwise a DNS SAN must match the address's host, as ztunnel checks. */
  istiodIdentity?: string;
  trustDomain?: string;
  cluster?: string;
  network?: string;
  /** Ports: 0 picks a free one; false turns the listener off. Defaults are ztunnel's. */
  inboundPort?: number | false;
  socks5Port?: number | false;
  adminPort?: number | false;
  metricsPort?: number | false;
  readinessPort?: number | false;
  /** Where metrics and readiness listen (default 127.0.0.1; in a pod 0.0.0.0, so the kubelet and Prometheus reach them,
   *  as ztunnel binds them). Admin stays on 127.0.0.1. */
  statusAddress?: string;
  /** The port other node proxies accept HBONE on (default: ours, or 15008). */
  hbonePort?: number;
  forward?: ForwardListener[];
  session?: SessionOptions;
  pool?: PoolOptions;
  /** SIGTERM/drain: how long in-flight tunnels may take to finish. */
  drainTimeoutMs?: number;
  /** Workload certificate lifetime (renewed at half-life). */
  certificateTtlMs?: number;
  /** ENABLE_RESPONSE_BAGGAGE: our metadata on every 200 (default on, env ENABLE_RESPONSE_BAGGAGE). */
  responseBaggage?: boolean;
  /** Run as an east-west gateway: :15008 routes svc-host:port CONNECTs to local endpoints (no inbound to an app). */
  gateway?: boolean;
  /** Passive outlier detection: eject an endpoint after `failures` failed dials in a row, for a growing time. */
  outlier?: { failures?: number; baseEjectionMs?: number; maxEjectionMs?: number };
}

function envFlag(name: string, dflt: boolean): boolean {
  const v = process.env[name];
  return v === undefined ? dflt : !["false", "0", "no", "off"].includes(v.toLowerCase());
}

export interface Addresses {
  inbound?: net.AddressInfo;
  socks5?: net.AddressInfo;
  admin?: net.AddressInfo;
  metrics?: net.AddressInfo;
  readiness?: net.AddressInfo;
  forward: net.AddressInfo[];
}


function parseWorkloadInfo(s: string): { namespace: string; name: string; serviceAccount: string } {
  const parts = s.split("/");
  if (parts.length !== 3 || parts.some((p) => p === "")) {
    throw new Error(`--workload must be namespace/name/serviceAccount, got "${s}"`);
  }
  return { namespace: parts[0], name: parts[1], serviceAccount: parts[2] };
}

async function listenOn(server: net.Server, host: string, port: number): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server.address() as net.AddressInfo;
}

/** A running node proxy; also the embeddable API (`connect`, `accept`). */
export class Mesh {
  readonly addresses: Addresses = { forward: [] };
  readonly state = new ProxyState();
  readonly pool: HbonePool;
  /** Inner (double HBONE) sessions, pooled per destination identities. */
  readonly innerPool: HbonePool;
  private gateway?: Gateway;
  /** Locality-aware endpoint choice (Wasm tables), outlier detection, P2C at the gateway. */
  private lb?: LoadBalancer;
  identity!: Identity;
  workload!: Workload;
  private readonly updater = new ProxyStateUpdater(this.state);
  private source?: LocalConfigSource;
  private xds?: XdsClient;
  private istioCa?: IstioCaClient;
  private secrets!: SecretManager;
  private inbound?: Inbound;
  private outbound!: Outbound;
  /** SOCKS5 and forward listeners: closed first on drain. */
  private listeners: net.Server[] = [];
  /** Admin, metrics, readiness: kept until close (readiness reports the drain). */
  private httpServers: http.Server[] = [];
  private outboundTunnels = 0;
  /** istio_tcp_* series and process metrics (:15020). */
  metrics!: Metrics;
  private ready = false;
  private closed = false;

  private constructor(private readonly o: ProxyOptions) {
    this.pool = new HbonePool(o.pool);
    this.innerPool = new HbonePool(o.pool);
  }

  static async start(o: ProxyOptions): Promise<Mesh> {
    const m = new Mesh(o);
    try {
      await m.init();
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  }

  private async init(): Promise<void> {
    const o = this.o;
    // Config -> state.
    const rootsPem = o.xdsAddress || o.caAddress
      ? readFileSync(o.rootCertPath ?? "/var/run/secrets/istio/root-cert.pem", "utf8") : undefined;
    const tokenFile = o.tokenFile ?? "/var/run/secrets/tokens/istio-token";
    const clusterId = o.clusterId ?? o.cluster;
    const serverIdentities = o.istiodIdentity ? [o.istiodIdentity] : undefined;
    if (o.xdsAddress) {
      const self = parseWorkloadInfo(o.workload);
      this.xds = new XdsClient({
        address: o.xdsAddress, rootsPem, tokenFile, clusterId, serverIdentities, updater: this.updater,
        node: { ip: process.env.INSTANCE_IP ?? "", podName: process.env.POD_NAME ?? self.name,
          namespace: process.env.POD_NAMESPACE ?? self.namespace, nodeName: process.env.NODE_NAME, clusterId },
      }).start();
      await this.xds.waitReady(o.xdsReadyTimeoutMs ?? 30_000);
    } else if (typeof o.config === "string") {
      this.source = new LocalConfigSource(o.config, this.updater);
      this.source.load();
      this.source.watch();
    } else if (o.config) {
      this.updater.apply(o.config);
    } else {
      throw new Error("no config: give config (a file or a MeshConfig) or xdsAddress");
    }
    const info = parseWorkloadInfo(o.workload);
    const w = this.findSelf(info);
    if (!w) throw new Error(`workload ${info.namespace}/${info.name} is not in the config`);
    if ((w.serviceAccount || "default") !== info.serviceAccount) {
      throw new Error(`workload ${info.namespace}/${info.name} runs as ${w.serviceAccount}, not ${info.serviceAccount}`);
    }
    this.workload = w;
    this.identity = new Identity(o.trustDomain ?? (w.trustDomain || "cluster.local"), w.namespace, info.serviceAccount);
    this.state.on("updated", () => {
      const now = this.findSelf(info);
      if (now) {
        this.workload = now;
        this.inbound?.setWorkload(now);
        this.outbound?.setSource(now);
      }
    });

    // Certificates.
    const ttl = o.certificateTtlMs;
    let certs: CertificateSource;
    if (o.caAddress) {
      this.istioCa = new IstioCaClient({ address: o.caAddress, rootsPem: rootsPem!, tokenFile, clusterId, serverIdentities,
        ttlMs: ttl });
      certs = this.istioCa;
    } else if (o.caDir) {
      const ca = await CertificateAuthority.load(o.caDir);
      certs = { issue: (id) => ca.issue(id, ttl ? { validityMs: ttl } : undefined) };
    } else {
      throw new Error("no certificate source: give caDir or caAddress");
    }
    this.secrets = new SecretManager(certs);
    const cert = await this.secrets.fetch(this.identity);
    this.secrets.on("rotated", (id: Identity, c: WorkloadCertificate) => {
      if (id.equals(this.identity)) {
        this.inbound?.setCertificate(c);
        this.gateway?.setCertificate(c);
      }
      log.info("workload certificate rotated", { identity: String(id), notAfter: c.notAfter.toISOString() });
    });

    this.lb = new LoadBalancer(this.state, { outlier: o.outlier, local: { network: w.network, clusterId: w.clusterId } });
    const lb = this.lb;

    this.metrics = new Metrics({
      activeTunnels: () => ({ inbound: this.inboundTunnels, outbound: this.outboundTunnels }),
      pool: () => ({ connections: this.pool.size, ...this.pool.stats }),
    }, { version: VERSION });

    // Inbound on the workload's own IP, so proxies of several workloads share a machine.
    const inboundPort = o.inboundPort ?? 15008;
    const hbonePort = o.hbonePort ?? (typeof inboundPort === "number" && inboundPort !== 0 ? inboundPort : 15008);
    if (o.gateway) {
      if (inboundPort === false) throw new Error("a gateway needs its HBONE port");
      this.gateway = new Gateway({ state: this.state, workload: w, certificate: cert, hbonePort, session: o.session,
        trustDomain: this.identity.trustDomain,
        pick: (host, port, active) => {
          // Namespace sameness: the service of that name, its endpoints on this gateway's network.
          const svc = this.state.serviceByHost(host);
          return svc && lb.pickLeastLoaded(svc, port, active);
        } });
      const ip = w.workloadIps[0];
      if (!ip) throw new Error(`gateway workload ${w.namespace}/${w.name} has no workloadIps to listen on`);
      this.addresses.inbound = await this.gateway.listen(ip, inboundPort);
    } else if (inboundPort !== false) {
      this.inbound = new Inbound({ state: this.state, workload: w, certificate: cert, identity: this.identity,
        session: o.session, metrics: this.metrics, responseBaggage: o.responseBaggage ?? envFlag("ENABLE_RESPONSE_BAGGAGE", true),
        ownPorts: () => this.ownPorts() });
      const ip = w.workloadIps[0];
      if (!ip) throw new Error(`workload ${w.namespace}/${w.name} has no workloadIps to listen on`);
      this.addresses.inbound = await this.inbound.listen(ip, inboundPort);
    }

    this.outbound = new Outbound({
      state: this.state,
      pool: this.pool,
      source: w,
      sourceIdentity: this.identity,
      certificate: () => this.secrets.fetch(this.identity),
      hbonePort,
      session: o.session,
      metrics: this.metrics,
      innerPool: this.innerPool,
      pick: (src, svc, port) => lb.pick(src, svc, port),
      report: (ep, ok) => (ok ? lb.reportSuccess(ep) : lb.reportFailure(ep)),
      ownPorts: () => this.ownPorts(),
    });

    if (o.socks5Port !== false) {
      const socks = createSocks5Server(async (dest, socket) => {
        try {
          const tunnel = await this.connect(dest, { host: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 });
          return { code: SOCKS_OK, start: () => void this.track(pipeTunnel(socket, tunnel)) };
        } catch (err) {
          log.limited.info("outbound refused", { dest: `${dest.host}:${dest.port}`, error: err as Error });
          return { code: err instanceof OutboundError ? err.socks : 0x01 };
        }
      });
      this.addresses.socks5 = await listenOn(this.keep(socks), "127.0.0.1", o.socks5Port ?? 15080);
    }

    for (const f of o.forward ?? []) {
      const to = parseHostPort(f.to);
      if (!to) throw new Error(`forward destination "${f.to}" is not host:port`);
      const srv = net.createServer({ allowHalfOpen: true }, (socket) => {
        // Owned from the first moment: a client may reset (TCP RST) while its tunnel is set up.
        socket.on("error", (e) => log.debug("forward client socket error", { error: e }));
        socket.setNoDelay(true);
        socket.pause();
        this.connect(to, { host: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 }).then(
          (tunnel) => {
            // With the client already gone, the pipe closes the tunnel at once.
            void this.track(pipeTunnel(socket, tunnel));
            socket.resume();
          },
          (err: Error) => {
            log.limited.info("forward refused", { to: f.to, error: err });
            resetSocket(socket); // a FIN would read as an empty answer: the client must see the failure
          },
        );
      });
      this.addresses.forward.push(await listenOn(this.keep(srv), f.listen.host, f.listen.port));
    }

    // Readiness, admin, metrics endpoints.
    const metrics = this.metrics;
    const metricsRoute = async (_req: unknown, res: http.ServerResponse) => {
      res.writeHead(200, { "content-type": metrics.registry.contentType });
      res.end(await metrics.text());
    };
    if (o.metricsPort !== false) {
      const s = await serveHttp(o.statusAddress ?? "127.0.0.1", o.metricsPort ?? 15020, { "/metrics": metricsRoute, "/stats/prometheus": metricsRoute });
      this.addresses.metrics = s.address() as net.AddressInfo;
      this.httpServers.push(s);
    }
    if (o.readinessPort !== false) {
      const s = await serveHttp(o.statusAddress ?? "127.0.0.1", o.readinessPort ?? 15021, {
        "/healthz/ready": (_req, res) => {
          res.writeHead(this.ready ? 200 : 503).end(this.ready ? "ready\n" : "not ready\n");
        },
      });
      this.addresses.readiness = s.address() as net.AddressInfo;
      this.httpServers.push(s);
    }
    if (o.adminPort !== false) {
      // Localhost Host only, and the state-changing routes on POST only: a web page the operator
      // visits can neither read the config (DNS rebinding) nor stop the proxy (a GET or a form).
      const s = await serveHttp("127.0.0.1", o.adminPort ?? 15000, {
        "/config_dump": (_req, res) => jsonResponse(res, 200, this.configDump()),
        "/logging": loggingRoute,
        "/quitquitquit": { methods: ["POST"], handler: (_req, res) => {
          res.end("OK\n");
          this.drain().then(() => this.emitQuit(), (err: Error) => log.error("drain failed", { error: err }));
        } },
      }, { localHostOnly: true });
      this.addresses.admin = s.address() as net.AddressInfo;
      this.httpServers.push(s);
    }
    this.ready = true;
    log.info("proxy ready", {
      workload: o.workload,
      identity: String(this.identity),
      inbound: this.addresses.inbound && `${this.addresses.inbound.address}:${this.addresses.inbound.port}`,
      socks5: this.addresses.socks5 && `127.0.0.1:${this.addresses.socks5.port}`,
      admin: this.addresses.admin?.port,
      metrics: this.addresses.metrics?.port,
      readiness: this.addresses.readiness?.port,
    });
  }

  /**
   * Our workload in the config: by namespace/name, in our cluster when one is set (the same
   * name may exist in other clusters, namespace sameness), one with an address first.
   */
  private findSelf(info: { namespace: string; name: string }): Workload | undefined {
    const named = this.state.config.workloads.filter((x) => x.namespace === info.namespace && x.name === info.name &&
      (!this.o.cluster || !x.clusterId || x.clusterId === this.o.cluster));
    return named.find((x) => x.workloadIps.length > 0) ?? named[0];
  }

  private quitHandlers: (() => void)[] = [];
  /** Called after /quitquitquit has drained (the CLI exits). */
  onQuit(fn: () => void): void {
    this.quitHandlers.push(fn);
  }
  private emitQuit(): void {
    for (const f of this.quitHandlers) f();
  }

  private keep<T extends net.Server>(s: T): T {
    this.listeners.push(s);
    s.on("error", (e) => log.warn("listener error", { error: e }));
    return s;
  }

  /** Every port this proxy listens on, and ztunnel's own (capture 15001/15006, HBONE 15008, SOCKS5 15080). */
  private ownPorts(): ReadonlySet<number> {
    if (this.ownPortSet) return this.ownPortSet;
    const a = this.addresses;
    const ports = new Set(PROXY_PORTS);
    for (const x of [a.inbound, a.socks5, a.admin, a.metrics, a.readiness, ...a.forward]) if (x) ports.add(x.port);
    // Known once every listener is up (a tunnel can arrive before: keep the partial set uncached).
    if (this.ready) this.ownPortSet = ports;
    return ports;
  }
  private ownPortSet?: ReadonlySet<number>;

  private get inboundTunnels(): number {
    return (this.inbound?.activeTunnels ?? 0) + (this.gateway?.activeTunnels ?? 0);
  }

  private async track<T>(p: Promise<T>): Promise<T> {
    this.outboundTunnels++;
    try {
      return await p;
    } finally {
      this.outboundTunnels--;
    }
  }

  /**
   * Opens a tunnel from this workload to `dest` ("reviews.default.svc.cluster.local:9080",
   * "10.96.0.10:9080", or a workload "ip:port"). Resolves with a Duplex once the far side
   * accepted it (HBONE 200, or TCP connected).
   */
  async connect(dest: string | HostPort, client?: HostPort): Promise<Duplex> {
    if (this.closed) throw new OutboundError("proxy is closed", 0x01);
    const hp = typeof dest === "string" ? parseHostPort(dest) : dest;
    if (!hp) throw new OutboundError(`destination "${String(dest)}" is not host:port`, 0x01);
    const tunnel = await this.outbound.open(hp, client);
    // A peer's reset must never crash the process, even if the caller forgets 'error'.
    tunnel.on("error", (e) => log.debug("tunnel ended with an error", { error: e }));
    return tunnel;
  }

  /** Tunnels that reach this workload on `port` are handed to `fn` instead of dialling an application,
   *  or to an http / http2 / net server as connections (`req.socket.peerIdentity` names the caller). */
  accept(port: number, fn: Acceptor | ConnectionServer): void {
    if (!this.inbound) throw new Error("inbound is disabled");
    this.inbound.accept(port, typeof fn === "function" ? fn : serveTunnels(fn));
  }

  /** What the admin /config_dump shows. */
  configDump(): unknown {
    const cert = this.secrets?.current(this.identity);
    return {
      workload: this.workload,
      identity: String(this.identity),
      certificates: cert ? [{ identity: String(cert.identity), notBefore: cert.notBefore, notAfter: cert.notAfter }] : [],
      config: this.state.config,
      pool: { connections: this.pool.size, ...this.pool.stats },
      innerPool: { connections: this.innerPool.size, ...this.innerPool.stats },
    };
  }

  /**
   * Graceful stop: readiness fails, listeners stop accepting, GOAWAY on every HBONE connection,
   * in-flight tunnels finish (bounded by drainTimeoutMs), then everything closes.
   */
  async drain(timeoutMs = this.o.drainTimeoutMs ?? 30_000): Promise<void> {
    if (this.closed) return;
    this.ready = false;
    for (const l of this.listeners) l.close();
    this.inbound?.drain();
    this.gateway?.drain();
    this.innerPool.drain();
    this.pool.drain();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && (this.inboundTunnels > 0 || this.outboundTunnels > 0)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const left = this.inboundTunnels + this.outboundTunnels;
    if (left > 0) log.warn("drain timeout: closing tunnels still open", { tunnels: left });
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.source?.close();
    this.xds?.close();
    this.secrets?.close();
    this.istioCa?.close();
    this.inbound?.close();
    this.gateway?.close();
    this.innerPool.close();
    this.pool.close();
    this.lb?.close();
    for (const l of this.listeners) l.close();
    await Promise.all(this.httpServers.map((s) => new Promise((r) => {
      s.close(() => r(undefined));
      s.closeAllConnections();
    })));
  }

  /** A node:http Agent whose connections are tunnels from this workload (service names resolved by the mesh). */
  agent(options?: http.AgentOptions): http.Agent {
    return meshAgent((dest) => this.connect(dest), options);
  }

  /** An https.Agent: the app's own TLS inside tunnels from this workload. */
  httpsAgent(options?: https.AgentOptions): https.Agent {
    return meshHttpsAgent((dest) => this.connect(dest), options);
  }

  /** An undici Dispatcher for `fetch(url, { dispatcher })` through the mesh (https:// too, with `tls`). */
  dispatcher(options?: MeshDispatcherOptions): Dispatcher {
    return meshDispatcher((dest) => this.connect(dest), options);
  }
}

/** Starts a node proxy (what `hbone proxy` runs). */
export function startProxy(o: ProxyOptions): Promise<Mesh> {
  return Mesh.start(o);
}

export { parseMeshConfig };
