// Outbound: from an application's destination (service VIP or hostname, or a workload IP) to
// a tunnel: resolve and load-balance from ProxyState, then HBONE through the pool to the
// endpoint's node proxy (:15008), or plain TCP when the endpoint does not speak HBONE.

import net from "node:net";
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type { ProxyState } from "../state/index.js";
import type { Service, Workload } from "../config.js";
import { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { connectHbone } from "../tls/contexts.js";
import { H2Session, type SessionOptions } from "../h2/session.js";
import { HbonePool } from "./pool.js";
import { PROXY_PORTS, formatAuthority, type HostPort } from "./authority.js";
import { logger } from "../log.js";

const log = logger("outbound");

/** Why a destination could not be reached; `socks` is the SOCKS5 reply code that says so. */
export class OutboundError extends Error {
  constructor(message: string, readonly socks: number, readonly status?: number) {
    super(message);
    this.name = "OutboundError";
  }
}

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
}

export interface OutboundOptions {
  state: ProxyState;
  pool: HbonePool;
  /** The workload this proxy speaks for. */
  source: Workload;
  sourceIdentity: Identity;
  certificate: () => Promise<WorkloadCertificate>;
  /** The port destination node proxies listen on for HBONE (15008). */
  hbonePort: number;
  session?: SessionOptions;
  connectTimeoutMs?: number;
}

function identityOf(w: Workload): Identity {
  return new Identity(w.trustDomain || "cluster.local", w.namespace, w.serviceAccount || "default");
}

/** Capacity-weighted random choice among healthy endpoints (locality rules arrive with the LB tables). */
function pickEndpoint<T extends { workload: Workload }>(eps: T[]): T | undefined {
  const healthy = eps.filter((e) => e.workload.status !== "Unhealthy" && e.workload.workloadIps.length > 0);
  let total = 0;
  for (const e of healthy) total += Math.max(1, e.workload.capacity || 1);
  let r = Math.random() * total;
  for (const e of healthy) {
    r -= Math.max(1, e.workload.capacity || 1);
    if (r < 0) return e;
  }
  return healthy.at(-1);
}

export class Outbound {
  constructor(private readonly o: OutboundOptions) {}

  /** Where `dest` leads, from the config in force. */
  resolve(dest: HostPort): Route {
    const { state } = this.o;
    if (PROXY_PORTS.has(dest.port) && state.workloadByIp(dest.host)) {
      throw new OutboundError(`${formatAuthority(dest.host, dest.port)} is a proxy port`, 0x02);
    }
    const svc = net.isIP(dest.host) ? state.serviceByVip(dest.host, this.o.source.network)
      : state.serviceByHost(dest.host, this.o.source.namespace);
    if (svc) {
      if (svc.ports[dest.port] === undefined && Object.keys(svc.ports).length > 0) {
        throw new OutboundError(`service ${svc.hostname} has no port ${dest.port}`, 0x05);
      }
      const ep = pickEndpoint(state.endpoints(svc, dest.port));
      if (!ep) throw new OutboundError(`service ${svc.hostname} has no healthy endpoint`, 0x04);
      return this.routeTo(ep.workload, ep.targetPort, svc);
    }
    if (!net.isIP(dest.host)) throw new OutboundError(`unknown host ${dest.host}`, 0x04);
    const w = state.workloadByIp(dest.host);
    if (w) return this.routeTo(w, dest.port, undefined, dest.host);
    // Not in the mesh: passthrough.
    return { protocol: "TCP", target: dest, hop: dest, expected: [] };
  }

  private routeTo(w: Workload, port: number, service?: Service, ip = w.workloadIps[0]): Route {
    const expected = [identityOf(w)];
    for (const san of service?.subjectAltNames ?? []) {
      const id = Identity.tryParse(san);
      if (id && !expected.some((e) => e.equals(id))) expected.push(id);
    }
    return {
      protocol: w.protocol === "HBONE" ? "HBONE" : "TCP",
      target: { host: ip, port },
      hop: { host: ip, port: this.o.hbonePort },
      expected,
      service,
      workload: w,
    };
  }

  /**
   * Opens a tunnel to `dest` for a client at `client`: an H2Stream (HBONE, after its 200) or a
   * TCP socket. Throws OutboundError.
   */
  async open(dest: HostPort, client?: HostPort): Promise<Duplex> {
    const route = this.resolve(dest);
    if (route.protocol === "TCP") return this.dialTcp(route.target);
    const session = await this.session(route);
    const headers: [string, string][] = [];
    if (client) {
      headers.push(["forwarded", `for="${formatAuthority(client.host, client.port)}"` +
        (route.service ? `;host=${route.service.hostname}` : "")]);
    }
    headers.push(["traceparent", `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-00`]);
    const authority = formatAuthority(route.target.host, route.target.port);
    let stream;
    try {
      stream = await session.connect(authority, headers);
    } catch (err) {
      throw new OutboundError(`HBONE CONNECT ${authority} failed: ${(err as Error).message}`, 0x01);
    }
    if (stream.status !== 200) {
      stream.destroy();
      throw new OutboundError(`HBONE CONNECT ${authority} answered ${stream.status}`, stream.status === 401 ? 0x02 : 0x05,
        stream.status);
    }
    return stream;
  }

  private session(route: Route): Promise<H2Session> {
    const key = { src: this.o.sourceIdentity.toString(), dst: route.expected.map(String), hop: formatAuthority(route.hop.host, route.hop.port) };
    return this.o.pool.checkout(key, async () => {
      try {
        const { socket } = await connectHbone({
          host: route.hop.host,
          port: route.hop.port,
          certificate: await this.o.certificate(),
          expected: route.expected,
          timeoutMs: this.o.connectTimeoutMs ?? 10_000,
        });
        return H2Session.client(socket, this.o.session);
      } catch (err) {
        log.warn("HBONE connection failed", { hop: key.hop, error: err as Error,
          hint: "maybe a NetworkPolicy or firewall is blocking HBONE port 15008, or the peer's certificate is not trusted" });
        throw new OutboundError(`HBONE to ${key.hop}: ${(err as Error).message}`, 0x05);
      }
    });
  }

  private dialTcp(target: HostPort): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true });
      const timer = setTimeout(() => sock.destroy(new Error("connect timeout")), this.o.connectTimeoutMs ?? 10_000);
      sock.once("connect", () => {
        clearTimeout(timer);
        resolve(sock);
      });
      sock.once("error", (err) => {
        clearTimeout(timer);
        reject(new OutboundError(`TCP ${formatAuthority(target.host, target.port)}: ${err.message}`, 0x05));
      });
    });
  }
}
