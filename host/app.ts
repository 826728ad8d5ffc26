// Wiring of a node proxy, in ztunnel's app.rs order: config -> state, certificates, metrics, the inputs every proxy
// room shares (proxy/inputs.ts), then the workloads served and admin. Modes (ztunnel's PROXY_MODE): dedicated (one
// workload, --workload) and shared (every workload of NODE_NAME, each with its own identity, certificate, inbound and
// outbound: node/workload-proxy.ts), in-pod when the istio-cni agent hands pods over ZDS (listeners inside each pod's
// netns). `startProxy` returns the NodeProxy: what the CLI runs and a Node application embeds.

import { initOrClose } from "./errors.js";
import { listen } from "./net.js";
import type net from "node:net";
import { readFileSync } from "node:fs";
import type http from "node:http";
import type { Duplex } from "node:stream";
import { type MeshConfig, type Workload } from "./model/index.js";
import { ProxyState, ProxyStateUpdater } from "./state/index.js";
import type { LocalConfigSource } from "./xds/local.js";
import type { XdsClient } from "./xds/client.js";
import type { IstioCaClient } from "./identity/istio-ca.js";
import { Identity } from "./identity/identity.js";
import { CertificateAuthority, type WorkloadCertificate } from "./identity/ca.js";
import type { CertificateSource } from "./identity/manager.js";
import { WorkloadCertificates } from "./identity/workload-certs.js";
import type { SessionOptions } from "./h2/session.js";
import { HbonePool, type PoolOptions } from "./proxy/pool.js";
import type { Acceptor } from "./proxy/inbound.js";
import { Gateway } from "./proxy/gateway.js";
import { LoadBalancer } from "./lb/index.js";
import { OutboundError } from "./proxy/outbound.js";
import { createSocksListener, createForwardListener } from "./proxy/forward.js";
import { ownErrors } from "./proxy/pipe.js";
import type { ProxyInputs } from "./proxy/inputs.js";
import { PROXY_PORTS, parseHostPort, type HostPort } from "./proxy/authority.js";
import { Metrics } from "./metrics.js";
import { startStatusServers } from "./admin.js";
import { WorkloadProxy, type PodNetns } from "./node/workload-proxy.js";
import type { InpodClient } from "./inpod/client.js";
import { RedirectListeners } from "./node/redirect.js";
import type { WorkloadInfo } from "./inpod/zds.js";
import { DEFAULTS, PORTS } from "./runtime-config.js";
import { logger } from "./log.js";
import { VERSION } from "./version.js";
import type { Dispatcher } from "undici";
import type https from "node:https";
import { meshAgent, meshHttpsAgent, meshDispatcher, type MeshDispatcherOptions } from "./http/agent.js";
import { serveTunnels, type ConnectionServer } from "./http/serve.js";

const log = logger("proxy");

/** How long an in-pod add waits for the pod's workload to appear in the config (ztunnel: 5 s). */
const POD_WORKLOAD_WAIT_MS = 5_000;

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
  /** The workload this proxy serves: "namespace/name/serviceAccount" (ztunnel's PROXY_WORKLOAD_INFO, dedicated mode).
   *  Without it the proxy runs in shared (node) mode: every workload of `nodeName`. */
  workload?: string;
  /** Shared mode: the node whose workloads are served (NODE_NAME). */
  nodeName?: string;
  /** In-pod mode (shared): pods come from the istio-cni agent over ZDS on this socket (INPOD_UDS), each served
   *  inside its own network namespace. */
  inpod?: { uds: string; ports?: PodNetns["ports"] };
  /** Redirect mode (no istio-cni): one listener set 15001/15006/15008/15053 in the host's namespace (`{}`) or in
   *  the named one, where `hbone capture rules` sends the traffic; the proxy's sockets there carry the mark. */
  redirect?: { netns?: string };
  /** Mark on sockets opened from a pod (capture rules let them pass; PACKET_MARK, 0x539). */
  packetMark?: number;
  /** This proxy's own pod, for the xDS node id (INSTANCE_IP, POD_NAME, POD_NAMESPACE; default: the environment). */
  self?: { ip?: string; podName?: string; podNamespace?: string };
  /** Dialling a peer proxy or the application (10 s). */
  connectTimeoutMs?: number;
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
  /** The proxy's own network: locality, VIP choice and the double-HBONE decision for a workload whose record names
   *  none (NETWORK). */
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running node proxy: every workload it serves, and the embeddable API (`connect`, `accept`). */
export class NodeProxy {
  readonly addresses: Addresses = { forward: [] };
  readonly state = new ProxyState();
  readonly pool: HbonePool;
  /** Inner (double HBONE) sessions, pooled per destination identities. */
  readonly innerPool: HbonePool;
  private gateway?: Gateway;
  private lb?: LoadBalancer;
  /** Dedicated mode (and a gateway): the one workload served. Shared mode: unset. */
  identity!: Identity;
  workload!: Workload;
  /** The dedicated workload's proxy (library API); undefined in shared mode. */
  private primary?: WorkloadProxy;
  /** Every workload served, by uid (in-pod: the pod's uid). */
  private readonly locals = new Map<string, WorkloadProxy>();
  private readonly updater = new ProxyStateUpdater(this.state);
  private source?: LocalConfigSource;
  private xds?: XdsClient;
  private istioCa?: IstioCaClient;
  private certs!: WorkloadCertificates;
  private inpod?: InpodClient;
  private redirect?: RedirectListeners;
  private inputs!: ProxyInputs;
  /** SOCKS5 and forward listeners: closed first on drain. */
  private listeners: net.Server[] = [];
  /** Admin, metrics, readiness: kept until close (readiness reports the drain). */
  private httpServers: http.Server[] = [];
  private outboundTunnels = 0;
  /** istio_tcp_* series and process metrics (:15020). */
  metrics!: Metrics;
  private ready = false;
  private snapshotSeen = false;
  private closed = false;

  private constructor(private readonly o: ProxyOptions) {
    // Every local workload's inbound listens for state updates (re-checking its tunnels): a node has many.
    this.state.setMaxListeners(0);
    this.pool = new HbonePool(o.pool);
    this.innerPool = new HbonePool(o.pool);
  }

  static async start(o: ProxyOptions): Promise<NodeProxy> {
    const m = new NodeProxy(o);
    return initOrClose(m, () => m.init());
  }

  /** "dedicated" (one workload) or "shared" (every workload of the node; in-pod when pods come over ZDS). */
  get mode(): "dedicated" | "shared" {
    return this.o.workload || this.o.gateway ? "dedicated" : "shared";
  }

  private async init(): Promise<void> {
    const o = this.o;
    if (this.mode === "shared" && !o.nodeName && !o.inpod)
      throw new Error("shared (node) mode needs NODE_NAME or in-pod mode");
    // Config -> state.
    const rootsPem =
      o.xdsAddress || o.caAddress
        ? readFileSync(o.rootCertPath ?? "/var/run/secrets/istio/root-cert.pem", "utf8")
        : undefined;
    const tokenFile = o.tokenFile ?? "/var/run/secrets/tokens/istio-token";
    const clusterId = o.clusterId ?? o.cluster;
    const serverIdentities = o.istiodIdentity ? [o.istiodIdentity] : undefined;
    if (o.xdsAddress) {
      const self = o.workload ? parseWorkloadInfo(o.workload) : undefined;
      // Loaded when used (gRPC, the generated xDS code): a proxy on a local config never holds them.
      const { XdsClient } = await import("./xds/client.js");
      this.xds = new XdsClient({
        address: o.xdsAddress,
        rootsPem,
        tokenFile,
        clusterId,
        serverIdentities,
        updater: this.updater,
        node: {
          ip: o.self?.ip ?? process.env.INSTANCE_IP ?? "",
          podName: o.self?.podName ?? process.env.POD_NAME ?? self?.name ?? "ztunnel",
          namespace: o.self?.podNamespace ?? process.env.POD_NAMESPACE ?? self?.namespace ?? "istio-system",
          nodeName: o.nodeName ?? process.env.NODE_NAME,
          clusterId,
        },
      }).start();
      await this.xds.waitReady(o.xdsReadyTimeoutMs ?? DEFAULTS.xdsReadyTimeoutMs);
    } else if (typeof o.config === "string") {
      // Loaded when used (the YAML parser, ~1 MB of heap): a proxy on xDS never holds it.
      const { LocalConfigSource } = await import("./xds/local.js");
      this.source = new LocalConfigSource(o.config, this.updater);
      this.source.load();
      this.source.watch();
    } else if (o.config) {
      this.updater.apply(o.config);
    } else {
      throw new Error("no config: give config (a file or a MeshConfig) or xdsAddress");
    }

    // Certificates: one per local identity (shared by its workloads), from the CA directory or istiod.
    const ttl = o.certificateTtlMs;
    let source: CertificateSource;
    if (o.caAddress) {
      // Shared mode asks for each workload's identity with the proxy's own token (ztunnel's impersonation).
      const { IstioCaClient } = await import("./identity/istio-ca.js");
      this.istioCa = new IstioCaClient({
        address: o.caAddress,
        rootsPem: rootsPem!,
        tokenFile,
        clusterId,
        serverIdentities,
        ttlMs: ttl,
        impersonate: this.mode === "shared",
      });
      source = this.istioCa;
    } else if (o.caDir) {
      const ca = await CertificateAuthority.load(o.caDir);
      source = { issue: (id) => ca.issue(id, ttl ? { validityMs: ttl } : undefined) };
    } else {
      throw new Error("no certificate source: give caDir or caAddress");
    }
    this.certs = new WorkloadCertificates(source);
    this.certs.on("rotated", (id: Identity, c: WorkloadCertificate) => {
      for (const wp of this.locals.values()) if (wp.identity.equals(id)) wp.setCertificate(c);
      if (this.gateway && id.equals(this.identity)) this.gateway.setCertificate(c);
      log.info("workload certificate rotated", { identity: String(id), notAfter: c.notAfter.toISOString() });
    });

    this.lb = new LoadBalancer(this.state, { outlier: o.outlier, local: this.localityOf() });
    this.metrics = new Metrics(
      {
        activeTunnels: () => ({ inbound: this.inboundTunnels, outbound: this.activeOutbound }),
        pool: () => ({ connections: this.pool.size, ...this.pool.stats }),
      },
      { version: VERSION },
    );
    const inboundPort = o.inboundPort ?? PORTS.hbone;
    this.inputs = {
      state: this.state,
      metrics: this.metrics,
      pool: this.pool,
      innerPool: this.innerPool,
      session: o.session,
      hbonePort: o.hbonePort ?? (typeof inboundPort === "number" && inboundPort !== 0 ? inboundPort : PORTS.hbone),
      connectTimeoutMs: o.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      responseBaggage: o.responseBaggage ?? envFlag("ENABLE_RESPONSE_BAGGAGE", true),
      lb: this.lb,
      ownPorts: () => this.ownPorts(),
      network: o.network,
    };

    if (o.redirect) {
      if (o.inpod || o.gateway)
        throw new Error("redirect mode is for a host without istio-cni: not with in-pod mode or a gateway");
      const ns = o.workload
        ? parseWorkloadInfo(o.workload).namespace
        : this.state.config.workloads.find((w) => w.node === o.nodeName)?.namespace;
      this.redirect = await RedirectListeners.open(
        this.inputs,
        { netns: o.redirect.netns, mark: this.mark, namespace: ns },
        () => [...this.locals.values()],
      );
    }
    if (this.mode === "dedicated") await this.startDedicated(inboundPort);
    else if (o.inpod) await this.startInpod(o.inpod);
    else {
      this.state.on(
        "updated",
        () => void this.syncNode(inboundPort).catch((e: Error) => log.error("node sync failed", { error: e })),
      );
      await this.syncNode(inboundPort);
    }

    if (this.primary && o.socks5Port !== false) {
      this.addresses.socks5 = await listen(
        this.keep(
          createSocksListener(
            (d, c) => this.connect(d, c),
            (d) => this.track(d),
          ),
        ),
        { host: "127.0.0.1", port: o.socks5Port ?? PORTS.socks5 },
      );
    }
    for (const f of o.forward ?? []) {
      if (!this.primary) throw new Error("forward listeners need a workload (dedicated mode)");
      const srv = createForwardListener(
        f.to,
        (d, c) => this.connect(d, c),
        (d) => this.track(d),
      );
      this.addresses.forward.push(await listen(this.keep(srv), f.listen));
    }

    const status = await startStatusServers({
      statusAddress: o.statusAddress ?? "127.0.0.1",
      ports: {
        admin: o.adminPort ?? PORTS.admin,
        metrics: o.metricsPort ?? PORTS.metrics,
        readiness: o.readinessPort ?? PORTS.readiness,
      },
      metrics: this.metrics,
      ready: () => this.isReady(),
      configDump: () => this.configDump(),
      quit: () =>
        void this.drain().then(
          () => this.emitQuit(),
          (err: Error) => log.error("drain failed", { error: err }),
        ),
    });
    this.httpServers.push(...status.servers);
    Object.assign(this.addresses, { admin: status.admin, metrics: status.metrics, readiness: status.readiness });
    this.ready = true;
    log.info("proxy ready", {
      mode: this.mode,
      inpod: !!this.inpod,
      node: o.nodeName,
      workload: o.workload,
      identity: this.identity && String(this.identity),
      workloads: this.locals.size,
      inbound: this.addresses.inbound && `${this.addresses.inbound.address}:${this.addresses.inbound.port}`,
      socks5: this.addresses.socks5 && `127.0.0.1:${this.addresses.socks5.port}`,
      admin: this.addresses.admin?.port,
      metrics: this.addresses.metrics?.port,
      readiness: this.addresses.readiness?.port,
    });
  }

  private get mark(): number {
    return this.o.packetMark ?? DEFAULTS.packetMark;
  }

  /** Redirect mode: workloads dial from the captured namespace, marked, and listen through its one listener set. */
  private get redirectNetns(): PodNetns | undefined {
    return this.redirect ? { netnsFd: this.redirect.fd, mark: this.mark, listeners: false } : undefined;
  }

  /** Where this proxy is, for locality ranking: the dedicated workload's, else the proxy's own network. */
  private localityOf(): { network: string; clusterId?: string } {
    if (this.o.workload) {
      const w = this.findSelf(parseWorkloadInfo(this.o.workload));
      return { network: w?.network || this.o.network || "", clusterId: w?.clusterId || this.o.cluster };
    }
    return { network: this.o.network ?? "", clusterId: this.o.cluster };
  }

  private identityOf(w: Workload): Identity {
    return new Identity(
      this.o.trustDomain ?? (w.trustDomain || DEFAULTS.trustDomain),
      w.namespace,
      w.serviceAccount || "default",
    );
  }

  /** Dedicated mode (and a gateway): the one workload named by --workload. */
  private async startDedicated(inboundPort: number | false): Promise<void> {
    const o = this.o;
    const info = parseWorkloadInfo(o.workload ?? "");
    const w = this.findSelf(info);
    if (!w) throw new Error(`workload ${info.namespace}/${info.name} is not in the config`);
    if ((w.serviceAccount || "default") !== info.serviceAccount) {
      throw new Error(
        `workload ${info.namespace}/${info.name} runs as ${w.serviceAccount}, not ${info.serviceAccount}`,
      );
    }
    this.workload = w;
    this.identity = new Identity(
      o.trustDomain ?? (w.trustDomain || DEFAULTS.trustDomain),
      w.namespace,
      info.serviceAccount,
    );
    const uid = w.uid || `${w.namespace}/${w.name}`;
    this.certs.add({
      uid,
      trustDomain: this.identity.trustDomain,
      namespace: w.namespace,
      serviceAccount: info.serviceAccount,
    });
    const cert = await this.certs.fetch(this.identity);
    this.state.on("updated", () => {
      const now = this.findSelf(info);
      if (now) {
        this.workload = now;
        this.primary?.setWorkload(now);
      }
    });
    if (o.gateway) {
      if (inboundPort === false) throw new Error("a gateway needs its HBONE port");
      this.gateway = new Gateway({
        inputs: this.inputs,
        workload: w,
        certificate: cert,
        trustDomain: this.identity.trustDomain,
      });
      const ip = w.workloadIps[0];
      if (!ip) throw new Error(`gateway workload ${w.namespace}/${w.name} has no workloadIps to listen on`);
      this.addresses.inbound = await this.gateway.listen(ip, inboundPort);
      return;
    }
    // Inbound on the workload's own IP, so proxies of several workloads share a machine.
    const wp = new WorkloadProxy(
      this.inputs,
      w,
      this.identity,
      cert,
      () => this.certs.fetch(this.identity),
      this.redirectNetns,
    );
    this.primary = wp;
    this.locals.set(uid, wp);
    await wp.start(inboundPort);
    this.addresses.inbound = wp.inboundAddress;
  }

  /** Shared mode from the config: serve exactly the workloads whose node is ours (added and removed live). */
  private syncing = Promise.resolve();
  private syncNode(inboundPort: number | false): Promise<void> {
    const run = async () => {
      if (this.closed) return;
      const mine = new Map<string, Workload>();
      for (const w of this.state.config.workloads) {
        if (
          w.node === this.o.nodeName &&
          w.workloadIps.length > 0 &&
          (!this.o.cluster || !w.clusterId || w.clusterId === this.o.cluster)
        ) {
          mine.set(w.uid || `${w.namespace}/${w.name}`, w);
        }
      }
      for (const [uid, wp] of this.locals) {
        const now = mine.get(uid);
        if (now && this.identityOf(now).equals(wp.identity) && now.workloadIps[0] === wp.workload.workloadIps[0]) {
          wp.setWorkload(now);
          continue;
        }
        await this.removeLocal(uid); // gone, or its identity or address changed: rebuilt below
      }
      // Every new identity's certificate is asked for at once (WorkloadCertificates caps requests in flight at 8),
      // not one workload after the other.
      for (const [uid, w] of mine) if (!this.locals.has(uid)) this.prefetch(uid, w);
      for (const [uid, w] of mine) {
        if (this.locals.has(uid)) continue;
        try {
          await this.addLocal(uid, w, inboundPort);
        } catch (err) {
          log.error("cannot serve a local workload", { workload: `${w.namespace}/${w.name}`, error: err as Error });
        }
      }
    };
    this.syncing = this.syncing.then(run, run);
    return this.syncing;
  }

  /** A workload appeared: its identity's certificate is fetched ahead (once per identity; idempotent per uid). */
  private prefetch(uid: string, w: Workload): Identity {
    const id = this.identityOf(w);
    this.certs.add({ uid, trustDomain: id.trustDomain, namespace: w.namespace, serviceAccount: id.serviceAccount });
    return id;
  }

  private async addLocal(
    uid: string,
    w: Workload,
    inboundPort: number | false,
    netns?: PodNetns,
  ): Promise<WorkloadProxy> {
    const id = this.prefetch(uid, w);
    try {
      const cert = await this.certs.fetch(id);
      const wp = new WorkloadProxy(this.inputs, w, id, cert, () => this.certs.fetch(id), netns ?? this.redirectNetns);
      await wp.start(inboundPort);
      this.locals.set(uid, wp);
      log.info("serving workload", { uid, workload: `${w.namespace}/${w.name}`, identity: String(id), inpod: !!netns });
      return wp;
    } catch (err) {
      this.certs.remove(uid);
      throw err;
    }
  }

  private async removeLocal(uid: string): Promise<void> {
    const wp = this.locals.get(uid);
    if (!wp) return;
    this.locals.delete(uid);
    await wp.close();
    this.certs.remove(uid);
    log.info("stopped serving workload", { uid, workload: `${wp.workload.namespace}/${wp.workload.name}` });
  }

  /** In-pod mode: pods from the istio-cni agent; each add builds that pod's listeners inside its namespace. */
  private async startInpod(o: NonNullable<ProxyOptions["inpod"]>): Promise<void> {
    const { InpodClient } = await import("./inpod/client.js"); // with its protobuf code: in-pod mode only
    this.inpod = new InpodClient({
      path: o.uds,
      onAdd: async (uid, info, netnsFd) => {
        const w = await this.podWorkload(uid, info);
        await this.addLocal(uid, w, false, { netnsFd, mark: this.mark, listeners: true, ports: o.ports });
      },
      onDel: (uid) => this.removeLocal(uid),
    });
    this.inpod.on("ready", () => (this.snapshotSeen = true));
    this.inpod.start();
  }

  /**
   * The workload record of a pod the agent added: by uid, else by (namespace, service account) then name, waiting
   * up to 5 s for the config to name it (xDS may lag behind the CNI).
   */
  private async podWorkload(uid: string, info: WorkloadInfo | undefined): Promise<Workload> {
    const deadline = Date.now() + POD_WORKLOAD_WAIT_MS;
    for (;;) {
      const ws = this.state.config.workloads;
      const byUid = ws.find((w) => w.uid === uid);
      if (byUid) return byUid;
      if (info) {
        const same = ws.filter(
          (w) =>
            w.namespace === info.namespace && (w.serviceAccount || "default") === (info.serviceAccount || "default"),
        );
        const named = same.filter((w) => w.name === info.name);
        const pick = named.find((w) => !this.o.nodeName || w.node === this.o.nodeName) ?? named[0];
        if (pick) return pick;
      }
      if (Date.now() >= deadline || this.closed) {
        throw new Error(
          `no workload in the config for pod ${info ? `${info.namespace}/${info.name} (sa ${info.serviceAccount})` : uid}`,
        );
      }
      await sleep(100);
    }
  }

  /**
   * Our workload in the config: by namespace/name, in our cluster when one is set (the same
   * name may exist in other clusters, namespace sameness), one with an address first.
   */
  private findSelf(info: { namespace: string; name: string }): Workload | undefined {
    const named = this.state.config.workloads.filter(
      (x) =>
        x.namespace === info.namespace &&
        x.name === info.name &&
        (!this.o.cluster || !x.clusterId || x.clusterId === this.o.cluster),
    );
    return named.find((x) => x.workloadIps.length > 0) ?? named[0];
  }

  private quitHandlers: (() => void)[] = [];
  /** What :15021 answers. In-pod mode: ready once the agent's first snapshot is in (ztunnel's readiness). */
  isReady(): boolean {
    return this.ready && (!this.inpod || this.snapshotSeen);
  }

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
    let n = this.gateway?.activeTunnels ?? 0;
    for (const wp of this.locals.values()) n += wp.inbound.activeTunnels;
    return n;
  }

  private get inboundConnections(): number {
    let n = this.gateway?.openConnections ?? 0;
    for (const wp of this.locals.values()) n += wp.inbound.openConnections;
    return n;
  }

  private get activeOutbound(): number {
    let n = this.outboundTunnels;
    for (const wp of this.locals.values()) n += wp.activeOutbound;
    return n;
  }

  /** Counts an outbound tunnel of the SOCKS5 and forward listeners (+1 accepted, -1 done). */
  private track(delta: 1 | -1): void {
    this.outboundTunnels += delta;
  }

  /**
   * Opens a tunnel from this workload to `dest` ("reviews.default.svc.cluster.local:9080",
   * "10.96.0.10:9080", or a workload "ip:port"). Resolves with a Duplex once the far side
   * accepted it (HBONE 200, or TCP connected). Dedicated mode only: in shared mode a connection's source is
   * the workload whose listener accepted it.
   */
  async connect(dest: string | HostPort, client?: HostPort): Promise<Duplex> {
    if (this.closed) throw new OutboundError("closed", "proxy is closed");
    if (!this.primary)
      throw new OutboundError(
        "bad-destination",
        "no workload to connect from: connect() needs dedicated mode (--workload)",
      );
    const hp = typeof dest === "string" ? parseHostPort(dest) : dest;
    if (!hp) throw new OutboundError("bad-destination", `destination "${String(dest)}" is not host:port`);
    const tunnel = await this.primary.outbound.open(hp, client);
    // A peer's reset must never crash the process, even if the caller forgets 'error'.
    ownErrors(tunnel);
    return tunnel;
  }

  /** Tunnels that reach this workload on `port` are handed to `fn` instead of dialling an application,
   *  or to an http / http2 / net server as connections (`req.socket.peerIdentity` names the caller). */
  accept(port: number, fn: Acceptor | ConnectionServer): void {
    if (!this.primary) throw new Error("inbound is disabled");
    this.primary.inbound.accept(port, typeof fn === "function" ? fn : serveTunnels(fn));
  }

  /** What the admin /config_dump shows: each local workload, its certificate, listeners and open tunnels. */
  configDump(): unknown {
    const cert = this.identity ? this.certs?.current(this.identity) : undefined;
    return {
      mode: this.mode,
      inpod: this.inpod ? { connected: this.inpod.connected, snapshot: this.snapshotSeen } : undefined,
      redirect: this.redirect
        ? { netns: this.o.redirect?.netns ?? "host", listeners: this.redirect.status() }
        : undefined,
      workload: this.workload,
      identity: this.identity && String(this.identity),
      certificates: cert
        ? [{ identity: String(cert.identity), notBefore: cert.notBefore, notAfter: cert.notAfter }]
        : [],
      workloads: [...this.locals].map(([uid, wp]) => {
        const c = this.certs.current(wp.identity);
        return {
          uid,
          namespace: wp.workload.namespace,
          name: wp.workload.name,
          addresses: wp.workload.workloadIps,
          certificate: { identity: String(wp.identity), notAfter: c?.notAfter },
          ...wp.dump(),
        };
      }),
      config: this.state.config,
      pool: { connections: this.pool.size, ...this.pool.stats },
      innerPool: { connections: this.innerPool.size, ...this.innerPool.stats },
    };
  }

  /**
   * Graceful stop: readiness fails, listeners stop accepting, GOAWAY on every HBONE connection,
   * in-flight tunnels finish (bounded by drainTimeoutMs), then everything closes.
   */
  async drain(timeoutMs = this.o.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs): Promise<void> {
    if (this.closed) return;
    this.ready = false;
    for (const l of this.listeners) l.close();
    for (const wp of this.locals.values()) wp.drain();
    this.gateway?.drain();
    this.innerPool.drain();
    this.pool.drain();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && (this.inboundTunnels > 0 || this.activeOutbound > 0)) await sleep(20);
    const left = this.inboundTunnels + this.activeOutbound;
    if (left > 0) log.warn("drain timeout: closing tunnels still open", { tunnels: left });
    // The tunnels are done, but their last bytes may still be on the way out of the HBONE connections, which
    // close themselves now (GOAWAY sent, no stream left): exiting before they have would cut those tails.
    else while (Date.now() < deadline && this.inboundConnections > 0) await sleep(20);
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.source?.close();
    this.xds?.close();
    await this.inpod?.close();
    await this.redirect?.close();
    for (const uid of [...this.locals.keys()]) await this.removeLocal(uid);
    this.certs?.close();
    this.istioCa?.close();
    this.gateway?.close();
    this.innerPool.close();
    this.pool.close();
    this.lb?.close();
    for (const l of this.listeners) l.close();
    await Promise.all(
      this.httpServers.map(
        (s) =>
          new Promise((r) => {
            s.close(() => r(undefined));
            s.closeAllConnections();
          }),
      ),
    );
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

function envFlag(name: string, dflt: boolean): boolean {
  const v = process.env[name];
  return v === undefined ? dflt : !["false", "0", "no", "off"].includes(v.toLowerCase());
}

/** The old name of NodeProxy (kept for embedders). */
export const Mesh = NodeProxy;
export type Mesh = NodeProxy;

/** Starts a node proxy (what `hbone proxy` runs). */
export function startProxy(o: ProxyOptions): Promise<NodeProxy> {
  return NodeProxy.start(o);
}
