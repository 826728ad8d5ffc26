// Inbound (:15008): mTLS (SPIFFE, trust domain checked) -> HTTP/2 -> CONNECT, terminated as
// ztunnel's serve_connect does: parse the authority, check it names this workload, map the
// service port to the target port, dial the application, and only then answer 200.
// 400: bad request; 503: unknown port or the application cannot be reached.

import { header } from "../h2/headers.js";
import { dialTcp } from "../net.js";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { MeshConfig, Service, Workload } from "../model/index.js";
import type { ProxyInputs, Dialer } from "./inputs.js";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import type { H2Stream, Respond } from "../h2/session.js";
import { keepRecord, RECORD_SLOT, type StreamRecord } from "../h2/stream.js";
import { HboneListener } from "./listener.js";
import type { HeaderList } from "../h2/hpack.js";
import { PROXY_PORTS, parseIpAuthority, parseHostPort, formatAuthority } from "./authority.js";
import { startTunnel, ownErrors } from "./pipe.js";
import { tcpLabels, type ServiceLabels, type ConnectionResult, type TunnelBytes, type ByteSource } from "../metrics.js";
import { logConnectionComplete, logConnectionFailed, peersFromLabels, sharedField } from "./access-log.js";
import { workloadLabels, workloadBaggage, inboundSourceLabels, serviceLabels } from "./peer-labels.js";
import { authorize, type RbacConnection } from "../state/policy.js";
import { H2Error } from "../errors.js";
import * as abi from "../../assembly/abi.js";
import { logger } from "../log.js";

const NO_SERVICE = serviceLabels(undefined);
/** Inbound.serviceOf's answers, per config snapshot and workload record. */
const servicesByConfig = new WeakMap<MeshConfig, WeakMap<Workload, Map<number, ServiceLabels>>>();

const log = logger("inbound");

const NO_HEADERS: HeaderList = [];

/**
 * An HBONE tunnel's record for as long as it is open: what authorized it (the policy recheck reads it as its
 * RbacConnection), its metrics, its byte counts (read from its stream) and its access-log fields. One object and
 * no listener of its own (its stream tells it at destroy, keepRecord): a closure made in serveConnect would hold its
 * whole scope.
 */
class InboundTunnel implements RbacConnection, ByteSource, StreamRecord {
  accepted = false;
  readonly startMs = performance.now();

  constructor(
    readonly inbound: Inbound,
    readonly stream: H2Stream,
    readonly result: ConnectionResult | undefined,
    readonly source: Identity,
    readonly sourceIp: string,
    readonly destinationIp: string,
    readonly destinationPort: number,
    readonly authority: string,
  ) {}

  tunnelBytes(): TunnelBytes {
    return { clientToServer: this.stream.pushed, serverToClient: this.stream.written };
  }

  /** Its stream closed: its metrics, its access log. */
  streamClosed(): void {
    this.inbound.tunnelClosed(this);
  }
}

/** What an in-process acceptor learns about a tunnel. */
export interface TunnelInfo {
  /** The verified SPIFFE identity of the peer proxy (the source workload). */
  peer: Identity;
  /** The port the tunnel targets (after service port mapping). */
  port: number;
  headers: HeaderList;
}

export type Acceptor = (stream: Duplex, info: TunnelInfo) => void;

export interface InboundOptions {
  inputs: ProxyInputs;
  workload: Workload;
  certificate: WorkloadCertificate;
  /** Our SPIFFE identity (destination_principal). */
  identity: Identity;
  /** How the application is dialled (in a pod: from its namespace, marked); default net.connect. */
  dial?: Dialer;
}

/** An open tunnel, for config_dump. */
export interface OpenTunnel {
  peer: string;
  source: string;
  destination: string;
  plaintext?: true;
}

export class Inbound extends HboneListener {
  private readonly acceptors = new Map<number, Acceptor>();
  /** Open plaintext (15006) connections and what authorized them; an HBONE tunnel's is its stream's record. */
  private readonly plaintext = new Map<Duplex, RbacConnection>();
  private workload: Workload;
  /** Tunnels opened (200 sent) and refused, for tests and metrics. */
  readonly stats = { accepted: 0, refused: 0 };

  constructor(private readonly o: InboundOptions) {
    // Peers are checked against our own trust domain (--trust-domain), not the workload record's.
    super({ ...o.workload, trustDomain: o.identity.trustDomain }, o.certificate, o.inputs.session);
    this.workload = o.workload;
    // An accept error (EMFILE when descriptors run out) must not take the process down.
    this.server.on("error", (e) => log.warn("inbound listener error", { error: e }));
    o.inputs.state.on("updated", this.recheck);
  }

  /**
   * Open tunnels and what authorized them, re-checked when policies change (ztunnel's PolicyWatcher): an HBONE
   * tunnel is its session's open stream with a record (set once it passed the policy), a plaintext one is listed.
   */
  private *openTunnels(): IterableIterator<[Duplex, RbacConnection]> {
    for (const s of this.openStreams()) {
      const t = s[RECORD_SLOT];
      if (t instanceof InboundTunnel) yield [s, t];
    }
    yield* this.plaintext;
  }

  /** Closes open tunnels that the policies in force now deny. */
  private readonly recheck = (): void => {
    const policies = this.o.inputs.state.policiesFor(this.workload);
    for (const [stream, conn] of this.openTunnels()) {
      const d = authorize(policies, conn);
      if (d.allowed) continue;
      log.info("closing a tunnel the new policy denies", {
        reason: d.reason,
        peer: String(conn.source),
        destination: `${conn.destinationIp}:${conn.destinationPort}`,
      });
      this.plaintext.delete(stream);
      const id = (stream as H2Stream).id;
      stream.destroy(id === undefined ? undefined : H2Error.stream(id, abi.CONNECT_ERROR, d.reason));
    }
  };

  /** Tunnels to `port` are handed to `fn` in-process instead of dialling an application. */
  accept(port: number, fn: Acceptor): void {
    this.acceptors.set(port, fn);
  }

  /** The workload's record changed (config reload). */
  setWorkload(w: Workload): void {
    this.workload = w;
  }

  override close(): void {
    this.o.inputs.state.off("updated", this.recheck);
    super.close();
  }

  /**
   * What a CONNECT authority names here: `ip:port` of this workload, or — for double HBONE,
   * whose inner CONNECT keeps the service's name — `svc-host:port` of a service this workload
   * serves. A string is the reason it names nothing here.
   */
  private destination(authority: string): { appHost: string; port: number } | string {
    const ip = parseIpAuthority(authority);
    if (ip) {
      // The workload's own copy of the address: an open tunnel keeps it, and every tunnel then shares one.
      const appHost = this.workload.workloadIps.find((w) => w === ip.host);
      if (appHost === undefined) return `${ip.host} is not this workload's address`;
      return { appHost, port: ip.port };
    }
    const hp = parseHostPort(authority);
    if (!hp) return "authority is not ip:port or svc-host:port";
    const svc = this.o.inputs.state.serviceByHost(hp.host, this.workload.namespace);
    if (!svc || this.workload.services[`${svc.namespace}/${svc.hostname}`] === undefined) {
      return `this workload does not serve ${hp.host}`;
    }
    const appHost = this.workload.workloadIps[0];
    if (!appHost) return "this workload has no address";
    return { appHost, port: hp.port };
  }

  /** The port the application listens on for a tunnel to `port`, or null if this workload has no such port. */
  private targetPort(port: number): number | null {
    const w = this.workload;
    const maps = Object.entries(w.services);
    if (maps.length === 0) return port; // no services declared: any port of the workload
    for (const [key, ports] of maps) {
      if (ports[port] !== undefined) return ports[port];
      const [ns, host] = key.split("/", 2);
      const svc: Service | undefined = this.o.inputs.state.serviceByHost(host, ns);
      if (svc?.ports[port] !== undefined) return svc.ports[port] || port;
    }
    // A target port itself is fine too.
    for (const [, ports] of maps) if (Object.values(ports).includes(port)) return port;
    return null;
  }

  /** The service a port of this workload belongs to, for destination_service labels: one object per config
   *  snapshot, workload record and port (the labels of every tunnel to it). */
  private serviceOf(port: number): ServiceLabels {
    const cfg = this.o.inputs.state.config;
    let byWorkload = servicesByConfig.get(cfg);
    if (!byWorkload) servicesByConfig.set(cfg, (byWorkload = new WeakMap()));
    let byPort = byWorkload.get(this.workload);
    if (!byPort) byWorkload.set(this.workload, (byPort = new Map()));
    let v = byPort.get(port);
    if (v === undefined) {
      v = this.findServiceOf(port);
      // Only a service's ports are kept (the config bounds them), never each port a peer names.
      if (v !== NO_SERVICE) byPort.set(port, v);
    }
    return v;
  }

  private findServiceOf(port: number): ServiceLabels {
    for (const [key, ports] of Object.entries(this.workload.services)) {
      if (ports[port] === undefined && !Object.values(ports).includes(port)) continue;
      const [ns, host] = key.split("/", 2);
      const svc = this.o.inputs.state.serviceByHost(host, ns);
      return { hostname: host, namespace: ns, name: svc?.name };
    }
    return NO_SERVICE;
  }

  /** An accepted TCP connection for this workload's HBONE port (a pod's 15008 listener): TLS, HTTP/2, CONNECT. */
  handle(socket: net.Socket): void {
    this.server.emit("connection", socket);
  }

  /** Open tunnels now (config_dump). */
  tunnels(): OpenTunnel[] {
    const out: OpenTunnel[] = [];
    for (const [, c] of this.openTunnels()) {
      out.push({
        peer: c.source ? String(c.source) : "",
        source: c.sourceIp,
        destination: formatAuthority(c.destinationIp, c.destinationPort),
        ...(c.source ? {} : { plaintext: true as const }),
      });
    }
    return out;
  }

  protected serveConnect(stream: H2Stream, headers: HeaderList, respond: Respond, peer: Identity, from: string): void {
    // The stream is ours from here: a reset in the same write as the CONNECT, a bad WINDOW_UPDATE,
    // the connection closing or a policy closing it mid-dial all end it with an error (and an
    // in-process acceptor that forgets 'error' must not crash the process either).
    ownErrors(stream);
    const authority = header(headers, ":authority") ?? "";
    const self = this.workload.workloadIps[0] ?? "";
    const refuse = (status: number, why: string) => {
      this.stats.refused++;
      log.limited.info("tunnel refused", { status, reason: why, authority, peer: String(peer), limitKey: status });
      logConnectionFailed({
        direction: "inbound",
        srcAddr: from,
        dstAddr: formatAuthority(self, this.o.inputs.hbonePort),
        error: `${status}: ${why}`,
      });
      respond(status);
    };
    const dst = this.destination(authority);
    if (typeof dst === "string") return refuse(400, dst);
    // Config, else baggage (x-forwarded-network only from a known gateway). A series is made only once the tunnel
    // passes its checks (accept() below); a refused one is counted on the labels the peer cannot choose.
    const src = inboundSourceLabels(this.o.inputs.state, this.workload, from, peer, headers);
    const me = workloadLabels(this.workload, String(this.o.identity));
    const svc = this.serviceOf(dst.port);
    const result = this.o.inputs.metrics?.checking(
      tcpLabels("destination", src.labels, me, svc),
      tcpLabels("destination", src.trusted, me, svc),
    );
    const fail = (status: number, why: string) => {
      result?.close(true, "CONNECT");
      refuse(status, why);
    };
    const ok: HeaderList = !this.o.inputs.responseBaggage ? [] : workloadBaggage(this.workload);
    // A port with an in-process acceptor is served here whatever the config says.
    const port = this.acceptors.has(dst.port) ? dst.port : this.targetPort(dst.port);
    if (port === null) return fail(503, `workload has no port ${dst.port}`);
    // ztunnel's illegal ports: the proxy's own, checked on the port the dial would reach.
    if (!this.acceptors.has(port) && (PROXY_PORTS.has(port) || this.o.inputs.ownPorts().has(port))) {
      return fail(400, `port ${port} is a proxy port`);
    }
    // L4 authorization on the target port, with the TLS identity and the connection's source address.
    const t = new InboundTunnel(this, stream, result, peer, from, dst.appHost, port, sharedField(authority));
    result?.countFrom(t);
    if (!this.authorized(t)) {
      result?.close(true, "DENY");
      return refuse(401, "denied by policy");
    }
    keepRecord(stream, t);
    const acceptor = this.acceptors.get(port);
    if (acceptor) {
      this.stats.accepted++;
      result?.accept();
      respond(200, ok);
      t.accepted = true;
      acceptor(stream, { peer, port, headers });
      return;
    }
    // The request headers are not needed once the CONNECT is served: an idle tunnel must not keep them.
    stream.headers = NO_HEADERS;
    this.dialApp(
      dst.appHost,
      port,
      stream,
      () => {
        this.stats.accepted++;
        result?.accept();
        respond(200, ok);
        t.accepted = true;
      },
      (why) => fail(503, why),
    );
  }

  /**
   * A connection captured on 15006 (a client outside the mesh, plaintext): the policies apply with no peer
   * identity (a rule naming principals cannot match), counted with connection_security_policy="unknown", then
   * piped to the application on the port it was sent to.
   */
  servePlaintext(socket: net.Socket, dst: { address: string; port: number }): void {
    const from = socket.remoteAddress ?? "";
    const srcAddr = formatAuthority(from, socket.remotePort ?? 0);
    const dstAddr = formatAuthority(dst.address, dst.port);
    const known = this.o.inputs.state.workloadByIp(from);
    const srcLabels = known ? workloadLabels(known) : {};
    const me = workloadLabels(this.workload, String(this.o.identity));
    const labels = tcpLabels("destination", srcLabels, me, this.serviceOf(dst.port), "-", false);
    const result = this.o.inputs.metrics?.checking(labels, labels);
    const bytes = { tunnelBytes: () => ({ clientToServer: socket.bytesRead, serverToClient: socket.bytesWritten }) };
    result?.countFrom(bytes);
    const refuse = (flag: string, why: string) => {
      this.stats.refused++;
      result?.close(true, flag);
      logConnectionFailed({ direction: "inbound", srcAddr, dstAddr, error: why });
      socket.destroy();
    };
    if (!this.workload.workloadIps.includes(dst.address)) {
      return refuse("CONNECT", `${dst.address} is not this workload's address`);
    }
    if (PROXY_PORTS.has(dst.port) || this.o.inputs.ownPorts().has(dst.port))
      return refuse("CONNECT", `port ${dst.port} is a proxy port`);
    const conn: RbacConnection = { sourceIp: from, destinationIp: dst.address, destinationPort: dst.port };
    if (!this.authorized(conn)) return refuse("DENY", "denied by policy (plaintext, no peer identity)");
    const stream = socket;
    this.plaintext.set(stream, conn);
    stream.once("close", () => {
      this.plaintext.delete(stream);
      result?.close();
    });
    const started = performance.now();
    this.dialApp(
      dst.address,
      dst.port,
      socket,
      () => {
        this.stats.accepted++;
        result?.accept();
        socket.once("close", () => this.logComplete(result, srcAddr, dstAddr, undefined, started, bytes.tunnelBytes()));
      },
      (why) => refuse("CONNECT", why),
    );
  }

  /** @internal A tunnel's stream closed (InboundTunnel.streamClosed). */
  tunnelClosed(t: InboundTunnel): void {
    t.result?.close();
    if (t.accepted)
      this.logComplete(
        t.result,
        t.sourceIp,
        formatAuthority(t.destinationIp, t.destinationPort),
        t.authority,
        t.startMs,
        t.tunnelBytes(),
      );
  }

  private authorized(conn: RbacConnection): boolean {
    const decision = authorize(this.o.inputs.state.policiesFor(this.workload), conn);
    if (decision.dryRun.length > 0)
      log.limited.info("dry-run policy matched", { policies: decision.dryRun, allowed: decision.allowed });
    if (!decision.allowed)
      log.info("tunnel denied", { reason: decision.reason, source: conn.source ? String(conn.source) : conn.sourceIp });
    return decision.allowed;
  }

  private logComplete(
    result: ConnectionResult | undefined,
    srcAddr: string,
    dstAddr: string,
    hboneAddr: string | undefined,
    startMs: number,
    bytes: TunnelBytes,
  ): void {
    const peers = result ? peersFromLabels(result.labels) : {};
    logConnectionComplete({ direction: "inbound", srcAddr, dstAddr, hboneAddr, ...peers, bytes, startMs });
  }

  /** Dials the application; `connected` then pipes, `failed` says why it could not be reached. */
  private dialApp(
    host: string,
    port: number,
    peer: Duplex,
    connected: () => void,
    failed: (why: string) => void,
  ): void {
    // Half-open: the app may still answer after our FIN (END_STREAM from the peer).
    let made: net.Socket | undefined;
    try {
      made = this.o.dial?.(host, port); // in a pod: from its namespace, marked
    } catch (err) {
      return failed(`application ${formatAuthority(host, port)}: ${(err as Error).message}`);
    }
    // The peer gave up (reset, connection gone, policy) before the app answered: stop dialling.
    const cancel = () => app.destroy();
    const app = dialTcp(
      { host, port, timeoutMs: this.o.inputs.connectTimeoutMs, socket: made },
      () => {
        peer.off("close", cancel);
        if (peer.destroyed) return app.destroy();
        connected();
        startTunnel(app, peer, null);
      },
      (err) => {
        if (peer.destroyed) return;
        failed(`application ${formatAuthority(host, port)} unreachable: ${err.message}`);
      },
    );
    peer.once("close", cancel);
  }
}
