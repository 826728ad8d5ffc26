// Outbound: from an application's destination (service VIP or hostname, or a workload IP) to
// a tunnel: resolve and load-balance from ProxyState, then HBONE through the pool to the
// endpoint's node proxy (:15008), or plain TCP when the endpoint does not speak HBONE.

import { dialTcp } from "../net.js";
import { OutboundError } from "../errors.js";
import net from "node:net";
import os from "node:os";
import { randomFillSync } from "node:crypto";
import type { Duplex } from "node:stream";
import type { ProxyInputs, Dialer } from "./inputs.js";
import type { Service, Workload } from "../model/index.js";
import { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { connectHbone } from "../tls/contexts.js";
import { H2Session, type H2Stream } from "../h2/session.js";
import { keepRecord, RECORD_SLOT, type StreamRecord } from "../h2/stream.js";
import { PROXY_PORTS, formatAuthority, type HostPort } from "./authority.js";
import { tcpLabels, type PeerLabels, type ConnectionResult, type TunnelBytes, type ByteSource } from "../metrics.js";
import { logConnectionComplete, logConnectionFailed, peersFromLabels, sharedField } from "./access-log.js";
import {
  workloadLabels,
  workloadBaggage,
  peerBaggageLabels,
  workloadIdentity,
  serviceLabels,
  sanIdentities,
} from "./peer-labels.js";
import { logger } from "../log.js";

const log = logger("outbound");

const NO_HEADERS: [string, string][] = [];

export { OutboundError, type OutboundErrorKind } from "../errors.js";

export interface Route {
  protocol: "HBONE" | "TCP";
  /** Where the application's bytes go: the endpoint workload IP and (target) port. */
  target: HostPort;
  /** HBONE: the node proxy to dial (endpoint IP, HBONE port). */
  hop: HostPort;
  /** Identities the endpoint may present (its workload identity and the service's SANs). */
  expected: Identity[];
  service?: Service;
  workload?: Workload;
  /**
   * Double HBONE: the endpoint is on another network. The outer tunnel goes to that network's
   * east-west gateway (`hop`, `expected`: the gateway's identities) with `authority`
   * svc-host:svc-port; the inner one, end to end, must present one of the route's `expected`
   * (the service's subjectAltNames only).
   */
  via?: { hop: HostPort; expected: Identity[]; authority: string };
}

export interface OutboundOptions {
  inputs: ProxyInputs;
  /** The workload this outbound speaks for: the one whose listener (or library call) the connection came from. */
  source: Workload;
  sourceIdentity: Identity;
  certificate: () => Promise<WorkloadCertificate>;
  /** How peers and passthrough destinations are dialled (in a pod: from its namespace, marked). Default: a
   *  net.connect from the workload's IP when this machine has it. */
  dial?: Dialer;
}

/** An address this machine can send from: loopback, or one of its interfaces'. */
function isLocalAddress(ip: string): boolean {
  if (ip.startsWith("127.") || ip === "::1") return true;
  return Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.address === ip));
}

/** An address a dial would reach this machine on: local ones, the unspecified ones, IPv4-mapped loopback. */
function reachesThisHost(ip: string): boolean {
  const v4 = ip.toLowerCase().startsWith("::ffff:") ? ip.slice(7) : ip;
  return v4 === "0.0.0.0" || v4 === "::" || isLocalAddress(v4);
}

// Random ids for traceparent, drawn from a pool refilled 4 KiB at a time (one syscall per 170 tunnels).
const randomPool = Buffer.alloc(4096);
let randomPos = randomPool.length;

/** `00-<32 hex trace id>-<16 hex span id>-00`, random per connection (as ztunnel sends it). */
function traceparent(): string {
  if (randomPos + 24 > randomPool.length) {
    randomFillSync(randomPool);
    randomPos = 0;
  }
  const p = randomPos;
  randomPos += 24;
  return `00-${randomPool.toString("hex", p, p + 16)}-${randomPool.toString("hex", p + 16, p + 24)}-00`;
}

/** Dials per tunnel when service endpoints cannot be reached (each to an endpoint not tried yet). */
const CONNECT_ATTEMPTS = 4;
/** Endpoint picks per tunnel: a pick of an endpoint that already failed for it costs no dial. */
const MAX_PICKS = 32;

/**
 * Every stream of a client session gets an error owner when the session closes it (it emits
 * 'streamClosed' before it destroys the stream with the error): a 200 and a RST_STREAM in one
 * write would otherwise raise 'error' before the awaiting caller has even received the stream.
 */
function ownStreamErrors(session: H2Session): H2Session {
  session.on("streamClosed", (s: Duplex) => {
    if (s.listenerCount("error") === 0)
      s.on("error", (e) => log.debug("tunnel stream ended with an error", { error: e }));
  });
  return session;
}

// What an open tunnel keeps is made outside the functions that opened it: a closure made there would hold their
// whole scope (routes, labels, headers) for as long as the tunnel stays open.

/**
 * An open tunnel's record: its metrics, its byte counts (read from its stream or socket) and, at close, its access
 * log line. One object per tunnel: an HBONE stream tells it at destroy (keepRecord), a plain TCP socket through one
 * shared 'close' listener.
 */
class OutboundTunnel implements ByteSource, StreamRecord {
  /** The access log's fields, set once the tunnel is handed out. The client's address is formatted at close: a
   *  number and a shared host string instead of a string of its own per tunnel. */
  srcHost: string | undefined = undefined;
  srcPort = 0;
  dstAddr = "";
  hboneAddr: string | undefined = undefined;
  startMs = 0;

  constructor(
    readonly tunnel: H2Stream | net.Socket,
    readonly result: ConnectionResult | undefined,
  ) {}

  tunnelBytes(): TunnelBytes {
    const t = this.tunnel;
    return "pushed" in t
      ? { clientToServer: t.written, serverToClient: t.pushed }
      : { clientToServer: t.bytesWritten, serverToClient: t.bytesRead };
  }

  streamClosed(): void {
    this.result?.close();
    if (!this.startMs) return; // never handed out (openRoute logs only the tunnels it returned)
    logConnectionComplete({
      direction: "outbound",
      srcAddr: this.srcHost === undefined ? "" : formatAuthority(this.srcHost, this.srcPort),
      dstAddr: this.dstAddr,
      hboneAddr: this.hboneAddr,
      ...(this.result ? peersFromLabels(this.result.labels) : {}),
      bytes: this.tunnelBytes(),
      startMs: this.startMs,
    });
  }
}

/** The one 'close' listener of every plain TCP tunnel ('close' comes once: no once() wrapper). */
function onOutboundClose(this: net.Socket & { [RECORD_SLOT]?: OutboundTunnel }): void {
  this[RECORD_SLOT]?.streamClosed();
}

/** The tunnel's record counts its bytes from it and closes with it (an HBONE stream tells its record itself). */
function recordOf(tunnel: H2Stream | net.Socket, r: ConnectionResult | undefined): OutboundTunnel {
  const rec = new OutboundTunnel(tunnel, r);
  r?.countFrom(rec);
  if ("pushed" in tunnel) keepRecord(tunnel, rec);
  else {
    (tunnel as net.Socket & { [RECORD_SLOT]?: OutboundTunnel })[RECORD_SLOT] = rec;
    tunnel.on("close", onOutboundClose);
  }
  return rec;
}

export class Outbound {
  constructor(private readonly o: OutboundOptions) {}

  /** Our network: the workload's, else the proxy's own (--network). */
  private get network(): string {
    return this.o.source.network || this.o.inputs.network || "";
  }

  private report(w: Workload, ok: boolean): void {
    if (ok) this.o.inputs.lb.reportSuccess(w);
    else this.o.inputs.lb.reportFailure(w);
  }

  /** Pool keys: source identity and address (ztunnel's), so two pods of one service account never share a
   *  connection dialled from the other's namespace. */
  private get poolSource(): string {
    return `${String(this.o.sourceIdentity)}@${this.o.source.workloadIps[0] ?? ""}`;
  }

  /** Our own labels and baggage come from our workload's record (it may change on reload). */
  private get self(): PeerLabels {
    return workloadLabels(this.o.source, String(this.o.sourceIdentity));
  }

  /** Where `dest` leads, from the config in force. */
  resolve(dest: HostPort): Route {
    const route = this.route(dest);
    // ztunnel's SelfCall: never to the proxy's own ports, checked where the bytes would land
    // (after the service port -> target port mapping).
    const t = route.target;
    if (
      net.isIP(t.host) &&
      (reachesThisHost(t.host) || this.o.source.workloadIps.includes(t.host)) &&
      (PROXY_PORTS.has(t.port) || this.o.inputs.ownPorts().has(t.port))
    ) {
      throw new OutboundError("proxy-port", `${formatAuthority(t.host, t.port)} is a proxy port`);
    }
    return route;
  }

  private route(dest: HostPort): Route {
    const { state } = this.o.inputs;
    const svc = net.isIP(dest.host)
      ? state.serviceByVip(dest.host, this.network)
      : state.serviceByHost(dest.host, this.o.source.namespace);
    if (svc) {
      if (svc.ports[dest.port] === undefined && Object.keys(svc.ports).length > 0) {
        throw new OutboundError("no-service-port", `service ${svc.hostname} has no port ${dest.port}`);
      }
      const ep = this.o.inputs.lb.pick(this.o.source, svc, dest.port);
      if (!ep) throw new OutboundError("no-endpoint", `service ${svc.hostname} has no healthy endpoint`);
      if (ep.workload.network !== this.network) return this.routeViaGateway(ep.workload, svc, dest.port);
      return this.routeTo(ep.workload, ep.targetPort, svc);
    }
    if (!net.isIP(dest.host)) throw new OutboundError("unknown-host", `unknown host ${dest.host}`);
    const w = state.workloadByIp(dest.host);
    if (w) return this.routeTo(w, dest.port, undefined, dest.host);
    // Not in the mesh: passthrough.
    return { protocol: "TCP", target: dest, hop: dest, expected: [] };
  }

  /** Double HBONE to an endpoint behind another network's gateway (ztunnel build_request_through_gateway). */
  private routeViaGateway(w: Workload, svc: Service, svcPort: number): Route {
    const gw = w.networkGateway;
    if (!gw) throw new OutboundError("no-gateway", `endpoint ${w.name} is on network ${w.network} with no gateway`);
    // The inner handshake is end to end with whichever pod the gateway picks: only the service's SANs fit.
    const expected = svc.subjectAltNames.map((s) => Identity.tryParse(s)).filter((x): x is Identity => x !== undefined);
    if (expected.length === 0) {
      throw new OutboundError("no-identity", `service ${svc.hostname} has no subjectAltNames: double HBONE needs them`);
    }
    let gwIp: string | undefined;
    const gwExpected: Identity[] = [];
    const d = gw.destination;
    if ("address" in d) {
      gwIp = d.address;
      const gwWorkload =
        this.o.inputs.state.workloadByIp(d.address, d.network) ?? this.o.inputs.state.workloadByIp(d.address);
      if (gwWorkload) gwExpected.push(workloadIdentity(gwWorkload));
    } else {
      const gsvc = this.o.inputs.state.serviceByHost(d.hostname, d.namespace);
      const gep = gsvc ? this.o.inputs.lb.pickGateway(gsvc, gw.hboneMtlsPort, w.network) : undefined;
      gwIp = gep?.workload.workloadIps[0];
      if (gep) gwExpected.push(workloadIdentity(gep.workload));
      gwExpected.push(...sanIdentities(gsvc));
    }
    if (!gwIp || gwExpected.length === 0) {
      throw new OutboundError("no-gateway", `no reachable gateway with a known identity for network ${w.network}`);
    }
    const authority = `${svc.hostname}:${svcPort}`;
    return {
      protocol: "HBONE",
      target: { host: svc.hostname, port: svcPort },
      hop: { host: gwIp, port: gw.hboneMtlsPort },
      expected,
      service: svc,
      workload: w,
      via: { hop: { host: gwIp, port: gw.hboneMtlsPort }, expected: gwExpected, authority },
    };
  }

  private routeTo(w: Workload, port: number, service?: Service, ip = w.workloadIps[0]): Route {
    const expected = [workloadIdentity(w)];
    for (const id of sanIdentities(service)) if (!expected.some((e) => e.equals(id))) expected.push(id);
    return {
      protocol: w.protocol === "HBONE" ? "HBONE" : "TCP",
      target: { host: ip, port },
      hop: { host: ip, port: this.o.inputs.hbonePort },
      expected,
      service,
      workload: w,
    };
  }

  /**
   * Opens a tunnel to `dest` for a client at `client`: an H2Stream (HBONE, after its 200) or a
   * TCP socket. Counts it in the metrics; throws OutboundError.
   */
  async open(dest: HostPort, client?: HostPort): Promise<Duplex> {
    // A service endpoint that cannot be dialled is reported (outlier detection) and another one
    // tried: the failover users set up with DestinationRule outlierDetection and connect retries.
    // A CONNECT answered 503 (the far side could not reach the app) is as safe to retry as a
    // failed dial: no application byte has flowed yet.
    const failed = new Map<string, Error>(); // endpoint uid -> why it failed for this tunnel
    let dials = 0;
    for (let picks = 1; ; picks++) {
      const route = this.resolve(dest);
      const uid = route.workload?.uid;
      const before = uid !== undefined ? failed.get(uid) : undefined;
      if (before && route.workload) {
        // The balancer picked an endpoint that just failed for this very tunnel: count it again
        // (outlier detection then ejects it and the next pick goes elsewhere), without a dial.
        this.report(route.workload, false);
        if (picks >= MAX_PICKS) throw before;
        continue;
      }
      try {
        dials++;
        const tunnel = await this.openRoute(route, client);
        if (route.workload) this.report(route.workload, true);
        return tunnel;
      } catch (err) {
        const retryable = err instanceof OutboundError && (err.status === undefined || err.status === 503);
        if (route.workload && retryable) this.report(route.workload, false);
        if (!retryable || !route.service || dials >= CONNECT_ATTEMPTS || picks >= MAX_PICKS) throw err;
        if (uid !== undefined) failed.set(uid, err);
        log.debug("endpoint unreachable, trying another", {
          endpoint: route.workload?.name,
          dials,
          error: err as Error,
        });
      }
    }
  }

  private async openRoute(route: Route, client?: HostPort): Promise<Duplex> {
    const hboneAddr =
      route.protocol === "HBONE"
        ? route.via
          ? route.via.authority
          : formatAuthority(route.target.host, route.target.port)
        : undefined;
    try {
      const rec = await this.openRouteCounted(route, client);
      if (client) {
        rec.srcHost = sharedField(client.host);
        rec.srcPort = client.port;
      }
      rec.dstAddr = sharedField(formatAuthority(route.hop.host, route.hop.port));
      rec.hboneAddr = hboneAddr === undefined ? undefined : sharedField(hboneAddr);
      rec.startMs = performance.now();
      return rec.tunnel;
    } catch (err) {
      const srcAddr = client ? formatAuthority(client.host, client.port) : "";
      const dstAddr = formatAuthority(route.hop.host, route.hop.port);
      logConnectionFailed({ direction: "outbound", srcAddr, dstAddr: hboneAddr ?? dstAddr, error: err as Error });
      throw err;
    }
  }

  private async openRouteCounted(route: Route, client?: HostPort): Promise<OutboundTunnel> {
    const svc = serviceLabels(route.service);
    // Destination labels from config; the 200's baggage fills in a peer config does not know.
    let dst: PeerLabels = route.workload ? workloadLabels(route.workload, String(route.expected[0])) : {};
    const record = (mtls: boolean): ConnectionResult | undefined =>
      this.o.inputs.metrics?.opened(tcpLabels("source", this.self, dst, svc, "-", mtls));
    if (route.protocol === "TCP") {
      let sock: net.Socket;
      try {
        sock = await this.dialTcp(route.target);
      } catch (err) {
        record(false)?.close(true, "CONNECT");
        throw err;
      }
      return recordOf(sock, record(false));
    }
    const headers: [string, string][] = workloadBaggage(this.o.source);
    if (client) {
      headers.push([
        "forwarded",
        `for="${formatAuthority(client.host, client.port)}"` + (route.service ? `;host=${route.service.hostname}` : ""),
      ]);
    }
    headers.push(["traceparent", traceparent()]);
    const authority = route.via ? route.via.authority : formatAuthority(route.target.host, route.target.port);
    if (route.via && this.network) headers.push(["x-forwarded-network", this.network]);
    let stream;
    try {
      const session = route.via ? await this.innerSession(route) : await this.session(route);
      stream = await session.connect(authority, headers);
    } catch (err) {
      record(true)?.close(true, "CONNECT");
      if (err instanceof OutboundError) throw err;
      throw new OutboundError("connect-failed", `HBONE CONNECT ${authority} failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // A refusal (or a 200 reset at once) is counted on config labels: its baggage must not create series.
    if (stream.status !== 200) {
      stream.destroy();
      record(true)?.close(true, stream.status === 401 ? "DENY" : "CONNECT");
      throw new OutboundError(
        stream.status === 401 ? "denied" : "refused",
        `HBONE CONNECT ${authority} answered ${stream.status}`,
        { status: stream.status },
      );
    }
    if (stream.destroyed || stream.rstCode !== null) {
      // 200 and RST_STREAM in one write (the session destroys the stream a turn later): nothing flowed yet, so it is a failed dial (retryable).
      record(true)?.close(true, "CONNECT");
      throw new OutboundError("refused", `HBONE CONNECT ${authority} was reset right after its 200`);
    }
    // A peer config does not describe (or a pod behind a gateway) is labelled from the 200's baggage.
    if (!route.workload || route.via) {
      const peerBaggage = stream.header("baggage");
      const principal = String(this.innerPeer.get(stream.session) ?? route.expected[0] ?? "");
      if (peerBaggage) dst = peerBaggageLabels(peerBaggage, principal);
    }
    // The response headers are read: an idle tunnel must not keep them.
    stream.headers = NO_HEADERS;
    return recordOf(stream, record(true));
  }

  /** The peer identity each inner (double HBONE) session verified, for destination_principal. */
  private readonly innerPeer = new WeakMap<H2Session, Identity>();

  /**
   * Double HBONE: an inner HTTP/2 session over TLS inside an outer stream through the gateway.
   * Inner sessions are pooled per destination identities too (beyond ztunnel, its #1672), so
   * repeated tunnels cost no new inner handshake.
   */
  private innerSession(route: Route): Promise<H2Session> {
    const via = route.via!;
    const outerRoute: Route = { ...route, hop: via.hop, expected: via.expected, via: undefined };
    // One inner session per remote endpoint the load balancer picked: the gateway spreads the
    // sessions over its pods (P2C), so reuse does not pin every tunnel to one pod.
    const key = {
      src: this.poolSource,
      dst: route.expected.map(String),
      hop: `${formatAuthority(via.hop.host, via.hop.port)}/${via.authority}/${route.workload?.uid ?? ""}`,
    };
    return this.o.inputs.innerPool.checkout(key, async () => {
      const outerSession = await this.session(outerRoute);
      const outer = await outerSession.connect(via.authority, []);
      if (outer.status !== 200) {
        outer.destroy();
        throw new OutboundError("refused", `gateway ${key.hop} answered ${outer.status}`, { status: outer.status });
      }
      try {
        const { socket, peer } = await connectHbone({
          host: via.hop.host,
          port: via.hop.port,
          certificate: await this.o.certificate(),
          expected: route.expected,
          socket: outer,
          timeoutMs: this.o.inputs.connectTimeoutMs,
        });
        const inner = ownStreamErrors(H2Session.client(socket, this.o.inputs.session));
        this.innerPeer.set(inner, peer);
        return inner;
      } catch (err) {
        outer.destroy();
        throw new OutboundError("unreachable", `inner HBONE through ${key.hop}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    });
  }

  private session(route: Route): Promise<H2Session> {
    const key = {
      src: this.poolSource,
      dst: route.expected.map(String),
      hop: formatAuthority(route.hop.host, route.hop.port),
    };
    return this.o.inputs.pool.checkout(key, async () => {
      try {
        const { socket } = await connectHbone({
          host: route.hop.host,
          port: route.hop.port,
          certificate: await this.o.certificate(),
          expected: route.expected,
          socket: this.dialFromWorkload(route.hop),
          timeoutMs: this.o.inputs.connectTimeoutMs,
        });
        return ownStreamErrors(H2Session.client(socket, this.o.inputs.session));
      } catch (err) {
        log.limited.warn("HBONE connection failed", {
          hop: key.hop,
          error: err as Error,
          hint: "maybe a NetworkPolicy or firewall is blocking HBONE port 15008, or the peer's certificate is not trusted",
        });
        throw new OutboundError("unreachable", `HBONE to ${key.hop}: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  /**
   * The TCP connection under HBONE leaves from our workload's IP (as from a pod), so the
   * destination can identify us by address; loopback IPs all work on one machine.
   */
  private dialFromWorkload(hop: HostPort): net.Socket {
    if (this.o.dial) return this.o.dial(hop.host, hop.port);
    const ip = this.o.source.workloadIps[0];
    const bind = ip && net.isIP(ip) === net.isIP(hop.host) && isLocalAddress(ip);
    return net.connect({ host: hop.host, port: hop.port, noDelay: true, ...(bind ? { localAddress: ip } : {}) });
  }

  /** Closes this source's pooled connections (outer and inner): its workload left. */
  closePooled(): void {
    this.o.inputs.pool.closeSource(this.poolSource);
    this.o.inputs.innerPool.closeSource(this.poolSource);
  }

  /** The workload record changed (config reload). */
  setSource(w: Workload): void {
    this.o.source = w;
  }

  private dialTcp(target: HostPort): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const fail = (err: unknown) =>
        reject(
          new OutboundError(
            "unreachable",
            `TCP ${formatAuthority(target.host, target.port)}: ${(err as Error).message}`,
            { cause: err },
          ),
        );
      let made: net.Socket | undefined;
      try {
        made = this.o.dial?.(target.host, target.port); // in a pod: from its namespace, marked
      } catch (err) {
        return fail(err);
      }
      dialTcp({ ...target, timeoutMs: this.o.inputs.connectTimeoutMs, socket: made }, resolve, fail);
    });
  }
}
