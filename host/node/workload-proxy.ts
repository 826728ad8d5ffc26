// One workload this process serves (ztunnel's per-workload proxy): its identity and certificate, its inbound
// (HBONE terminated for it, plaintext from outside the mesh), its outbound (every connection it opens, with it as
// the source), and — in in-pod mode — the listener set inside its pod's network namespace (15001, 15006, 15008,
// DNS 15053), whose sockets toward peers and apps are dialled from that namespace with the proxy's mark.

import net from "node:net";
import type { Workload } from "../model/index.js";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { Inbound } from "../proxy/inbound.js";
import { Outbound } from "../proxy/outbound.js";
import type { ProxyInputs, Dialer } from "../proxy/inputs.js";
import { pipeTunnel } from "../proxy/pipe.js";
import { PodListeners, type ListenerStatus } from "../inpod/pod-listeners.js";
import { dialFrom, originalDestination, createListenSocketIn, createUdpSocketIn } from "../sys/socket.js";
import { closeQuietly } from "../sys/libc.js";
import dgram from "node:dgram";
import type { DnsProxy, DnsProxyOptions } from "../dns/server.js";
import type { UpstreamSockets } from "../dns/upstream.js";
import { logger } from "../log.js";

const log = logger("node");

export interface PodNetns {
  netnsFd: number;
  mark: number;
  /** In-pod mode: this workload's own listener set inside the namespace. Redirect mode: false (the namespace's one
   *  listener set, node/redirect.ts, hands each connection to its workload). */
  listeners: boolean;
  /** Listener ports inside the pod (tests may move them). */
  ports?: { outbound?: number; inboundPlaintext?: number; hbone?: number; dns?: number };
}

export class WorkloadProxy {
  readonly inbound: Inbound;
  readonly outbound: Outbound;
  private pod?: PodListeners;
  private dns?: DnsProxy;
  private address?: net.AddressInfo;
  private outboundTunnels = 0;

  constructor(
    private readonly inputs: ProxyInputs,
    public workload: Workload,
    readonly identity: Identity,
    certificate: WorkloadCertificate,
    fetchCertificate: () => Promise<WorkloadCertificate>,
    readonly netns?: PodNetns,
  ) {
    // Half-open both ways, as pipe.ts expects (FIN <-> END_STREAM): a socket made from an fd is not by default.
    const dial: Dialer | undefined = netns
      ? (host, port) => halfOpen(dialFrom(netns.netnsFd, host, port, { mark: netns.mark }))
      : undefined;
    this.inbound = new Inbound({ inputs, workload, certificate, identity, dial });
    this.outbound = new Outbound({
      inputs,
      source: workload,
      sourceIdentity: identity,
      certificate: fetchCertificate,
      dial,
    });
  }

  get key(): string {
    return this.workload.uid || `${this.workload.namespace}/${this.workload.name}`;
  }

  /** Listens: on the workload's IP (shared and dedicated mode), or inside its pod (in-pod mode). */
  async start(inboundPort: number | false): Promise<void> {
    if (this.netns?.listeners) return this.startInPod(this.netns);
    if (this.netns) return; // redirect mode: the namespace's listeners feed us
    if (inboundPort === false) return;
    const ip = this.workload.workloadIps[0];
    if (!ip)
      throw new Error(`workload ${this.workload.namespace}/${this.workload.name} has no workloadIps to listen on`);
    this.address = await this.inbound.listen(ip, inboundPort);
  }

  get inboundAddress(): net.AddressInfo | undefined {
    return this.address;
  }

  private async startInPod(ns: PodNetns): Promise<void> {
    const who = `${this.workload.namespace}/${this.workload.name}`;
    this.pod = await PodListeners.open({
      pod: who,
      netnsFd: ns.netnsFd,
      mark: ns.mark,
      ports: { outbound: ns.ports?.outbound, "inbound-plaintext": ns.ports?.inboundPlaintext, hbone: ns.ports?.hbone },
      handlers: {
        outbound: (sock) => this.captured(sock),
        "inbound-plaintext": (sock) => this.plaintext(sock),
        hbone: (sock) => this.inbound.handle(sock),
      },
      extras: async (fd) => {
        const dns = await startPodDns(this.inputs, fd, ns, this.workload);
        this.dns = dns;
        return dns;
      },
    });
  }

  /** A connection from outside the mesh captured on 15006: to the app on its original destination. */
  plaintext(sock: net.Socket): void {
    halfOpen(sock);
    const d = originalDestination(sock);
    this.inbound.servePlaintext(sock, { address: d.address, port: d.port });
  }

  /** A connection the pod's app opened, captured on 15001: its original destination, with this pod as the source. */
  captured(sock: net.Socket): void {
    halfOpen(sock);
    let dest;
    try {
      dest = originalDestination(sock);
    } catch (err) {
      log.info("captured connection without a destination", { error: err as Error });
      sock.destroy();
      return;
    }
    sock.pause();
    this.outboundTunnels++;
    this.outbound
      .open({ host: dest.address, port: dest.port }, { host: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 })
      .then(
        (tunnel) => {
          tunnel.on("error", (e) => log.debug("tunnel ended with an error", { error: e }));
          void pipeTunnel(sock, tunnel).finally(() => this.outboundTunnels--);
          sock.resume();
        },
        (err: Error) => {
          this.outboundTunnels--;
          log.info("captured connection refused", {
            workload: this.key,
            dest: `${dest.address}:${dest.port}`,
            error: err,
          });
          sock.destroy();
        },
      );
  }

  get activeOutbound(): number {
    return this.outboundTunnels;
  }

  setWorkload(w: Workload): void {
    this.workload = w;
    this.inbound.setWorkload(w);
    this.outbound.setSource(w);
  }

  setCertificate(c: WorkloadCertificate): void {
    this.inbound.setCertificate(c);
  }

  /** For config_dump: listeners (in a pod: their status) and open inbound tunnels. */
  dump(): { listeners: (ListenerStatus | { kind: string; address: string })[]; tunnels: unknown[] } {
    const listeners: (ListenerStatus | { kind: string; address: string })[] = this.pod ? this.pod.status() : [];
    if (this.address) listeners.push({ kind: "hbone", address: `${this.address.address}:${this.address.port}` });
    if (this.dns) listeners.push({ kind: "dns", address: `${this.dns.address.host}:${this.dns.address.udpPort}` });
    return { listeners, tunnels: this.inbound.tunnels() };
  }

  drain(): void {
    this.inbound.drain();
  }

  /** Closes its listeners and tunnels (a pod's `del`, or the workload left the node). */
  async close(): Promise<void> {
    this.inbound.close();
    this.outbound.closePooled();
    await this.pod?.close();
  }
}

/** A socket whose peer's FIN leaves our side writable (net.Server's allowHalfOpen, set after the fact). */
function halfOpen(sock: net.Socket): net.Socket {
  sock.allowHalfOpen = true;
  return sock;
}

/** Sockets toward the DNS upstreams made inside the pod's namespace with the proxy's mark (ztunnel forwards from
 *  the pod: its routes and resolvers apply, and the mark keeps the pod's DNS rule from sending them back to us). */
export function podUpstreamSockets(netnsFd: number, mark: number): UpstreamSockets {
  return {
    udp: (u) => {
      const v6 = net.isIPv6(u.host.split("%")[0]!);
      const fd = createUdpSocketIn(netnsFd, { host: v6 ? "::" : "0.0.0.0", port: 0, mark });
      const sock = dgram.createSocket(v6 ? "udp6" : "udp4");
      try {
        sock.bind({ fd });
      } catch (err) {
        closeQuietly(fd);
        throw err;
      }
      return sock;
    },
    tcp: (u) => dialFrom(netnsFd, u.host.split("%")[0]!, u.port, { mark }),
  };
}

/** The DNS proxy of one pod: UDP and TCP sockets made inside its namespace, answering for its namespace and
 *  forwarding from it (`upstreams`: default the node's /etc/resolv.conf). */
export async function startPodDns(
  inputs: Pick<ProxyInputs, "state" | "network">,
  netnsFd: number,
  ns: Pick<PodNetns, "mark" | "ports">,
  w: Pick<Workload, "namespace" | "network">,
  upstreams?: DnsProxyOptions["upstreams"],
): Promise<DnsProxy> {
  // Loaded here, before any socket is made: only a pod's DNS proxy needs the DNS code.
  const { DnsProxy } = await import("../dns/server.js");
  const port = ns.ports?.dns ?? 15053;
  const tcp = createListenSocketIn(netnsFd, { host: "127.0.0.1", port, mark: ns.mark, reusePort: true });
  let udpFd: number;
  try {
    udpFd = createUdpSocketIn(netnsFd, { host: "127.0.0.1", port, mark: ns.mark });
  } catch (err) {
    closeQuietly(tcp.fd);
    throw err;
  }
  return DnsProxy.start({
    state: inputs.state,
    namespace: w.namespace,
    network: w.network || inputs.network,
    listen: { udpFd, tcpFd: tcp.fd, family: 4 },
    upstreams,
    upstreamSockets: podUpstreamSockets(netnsFd, ns.mark),
  });
}
