// The DNS proxy (ztunnel's, port 15053, UDP and TCP): A and AAAA for mesh names are answered here from ProxyState
// (./names.ts), everything else is relayed to the host's resolvers (./upstream.ts). One instance serves one client
// namespace (ztunnel runs one per pod, inside the pod's network namespace).
//
// Bounded against hostile clients: queries longer than maxQueryBytes are dropped (UDP) or end the connection
// (TCP); a query that does not parse is answered FORMERR when it has a header, else dropped; responses are never
// answered (no reflection loops); forwards in flight are capped (REFUSED beyond the cap) and each upstream try
// has a deadline; TCP connections are capped, time out when idle, may have only a few queries outstanding and
// only 256 KiB of answers unread.
// Wire format by dns-packet.

import dgram from "node:dgram";
import net from "node:net";
import * as packet from "dns-packet";
import type { ProxyState } from "../state/index.js";
import { logger } from "../log.js";
import { MeshNames, type ClientContext } from "./names.js";
import { forward, systemUpstreams, LOCAL_SOCKETS, type Upstream, type UpstreamSockets } from "./upstream.js";
import { listen } from "../net.js";

const log = logger("dns");

export const DNS_DEFAULTS = {
  port: 15053,
  host: "127.0.0.1",
  /** TTL of mesh answers (Istio's DNS proxy uses 30 s). */
  ttlSeconds: 30,
  /** A query is small; anything larger is not one. */
  maxQueryBytes: 4096,
  upstreamTimeoutMs: 2_000,
  maxInflight: 256,
  maxTcpConnections: 128,
  tcpIdleMs: 10_000,
  tcpMaxOutstanding: 8,
} as const;

export interface DnsProxyOptions extends ClientContext {
  state: ProxyState;
  /** Where to listen (both UDP and TCP); or already bound sockets' fds (e.g. made inside a pod's namespace). */
  listen?: { host: string; port: number } | { udpFd: number; tcpFd: number; family: 4 | 6 };
  /** Default: the nameservers of /etc/resolv.conf. */
  upstreams?: Upstream[];
  /** Where the sockets toward upstreams are made (default: here; a pod's DNS proxy: inside the pod's namespace). */
  upstreamSockets?: UpstreamSockets;
  clusterDomain?: string;
  ttlSeconds?: number;
  maxQueryBytes?: number;
  upstreamTimeoutMs?: number;
  maxInflight?: number;
  maxTcpConnections?: number;
  tcpIdleMs?: number;
  tcpMaxOutstanding?: number;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const QR = 0x8000;
const OPCODE_MASK = 0x7800;
const UDP_PLAIN_LIMIT = 512;
/** Answers a TCP client may leave unread before it is disconnected. */
const MAX_TCP_UNREAD = 256 * 1024;

/** A header-only reply (FORMERR, SERVFAIL, REFUSED, NOTIMP) to `query`, whose question is echoed when it parsed. */
function errorReply(query: Buffer, rcode: number, q?: packet.DecodedPacket): Buffer {
  if (q) {
    return packet.encode({
      type: "response",
      id: q.id,
      flags: ((q.flags ?? 0) & (OPCODE_MASK | packet.RECURSION_DESIRED)) | packet.RECURSION_AVAILABLE | rcode,
      questions: q.questions ?? [],
    });
  }
  const h = Buffer.alloc(12);
  h[0] = query[0]!;
  h[1] = query[1]!;
  h.writeUInt16BE(QR | (query.readUInt16BE(2) & (OPCODE_MASK | packet.RECURSION_DESIRED)) | rcode, 2);
  return h;
}

export interface DnsStats {
  queries: number;
  meshAnswers: number;
  forwarded: number;
  upstreamFailures: number;
  malformed: number;
  refused: number;
}

export class DnsProxy {
  readonly stats: DnsStats = {
    queries: 0,
    meshAnswers: 0,
    forwarded: 0,
    upstreamFailures: 0,
    malformed: 0,
    refused: 0,
  };
  private readonly names: MeshNames;
  private readonly upstreams: Upstream[];
  private readonly o: Required<
    Omit<DnsProxyOptions, "listen" | "upstreams" | "upstreamSockets" | "network" | "clusterDomain">
  > &
    DnsProxyOptions;
  private udp?: dgram.Socket;
  private tcp?: net.Server;
  private readonly conns = new Set<net.Socket>();
  private inflight = 0;
  private closed = false;

  private constructor(o: DnsProxyOptions) {
    this.o = {
      ttlSeconds: DNS_DEFAULTS.ttlSeconds,
      maxQueryBytes: DNS_DEFAULTS.maxQueryBytes,
      upstreamTimeoutMs: DNS_DEFAULTS.upstreamTimeoutMs,
      maxInflight: DNS_DEFAULTS.maxInflight,
      maxTcpConnections: DNS_DEFAULTS.maxTcpConnections,
      tcpIdleMs: DNS_DEFAULTS.tcpIdleMs,
      tcpMaxOutstanding: DNS_DEFAULTS.tcpMaxOutstanding,
      ...o,
    };
    this.names = new MeshNames(o.state, { clusterDomain: o.clusterDomain });
    this.upstreams = o.upstreams ?? systemUpstreams();
    if (this.upstreams.length === 0) log.warn("no upstream resolvers: names outside the mesh get SERVFAIL");
  }

  /** Starts UDP and TCP listeners (default 127.0.0.1:15053; port 0: any, the same for both). */
  static async start(o: DnsProxyOptions): Promise<DnsProxy> {
    const p = new DnsProxy(o);
    try {
      await p.listen(o.listen ?? { host: DNS_DEFAULTS.host, port: DNS_DEFAULTS.port });
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  get address(): { host: string; udpPort: number; tcpPort: number } {
    const u = this.udp!.address();
    const t = this.tcp!.address() as net.AddressInfo;
    return { host: u.address, udpPort: u.port, tcpPort: t.port };
  }

  /** Counts of what is open, for bounds in tests and config_dump. */
  get load(): { inflight: number; tcpConnections: number } {
    return { inflight: this.inflight, tcpConnections: this.conns.size };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.conns) c.destroy();
    await Promise.all([
      new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r())),
      new Promise<void>((r) => (this.tcp?.listening ? this.tcp.close(() => r()) : r())),
    ]);
  }

  private async listen(l: NonNullable<DnsProxyOptions["listen"]>): Promise<void> {
    const tcp = net.createServer({ pauseOnConnect: false }, (s) => this.onTcp(s));
    tcp.maxConnections = this.o.maxTcpConnections;
    tcp.on("error", (e) => log.warn("dns tcp listener error", { error: e }));
    this.tcp = tcp;
    await listen(tcp, "tcpFd" in l ? { fd: l.tcpFd } : l);
    const port = "tcpFd" in l ? 0 : (tcp.address() as net.AddressInfo).port;
    const host = "tcpFd" in l ? "" : l.host;
    const v6 = "udpFd" in l ? l.family === 6 : net.isIPv6(host);
    const udp = dgram.createSocket(v6 ? "udp6" : "udp4", (msg, rinfo) => this.onDatagram(msg, rinfo));
    udp.on("error", (e) => log.warn("dns udp socket error", { error: e }));
    this.udp = udp;
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      const ok = () => {
        udp.off("error", reject);
        resolve();
      };
      if ("udpFd" in l) udp.bind({ fd: l.udpFd }, ok);
      else udp.bind(port, host, ok);
    });
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || msg.length > this.o.maxQueryBytes) return;
    this.handle(msg, false).then(
      (reply) => {
        if (!reply || this.closed) return;
        try {
          this.udp!.send(reply, rinfo.port, rinfo.address, () => undefined);
        } catch {
          // A source we cannot answer (e.g. port 0): nothing to send to.
        }
      },
      (e: unknown) => log.warn("dns query failed", { error: e instanceof Error ? e : String(e) }),
    );
  }

  private onTcp(s: net.Socket): void {
    this.conns.add(s);
    s.on("error", () => undefined);
    // Idle means no whole query for tcpIdleMs: a byte now and then (slowloris) does not keep a connection.
    const idle = setTimeout(() => s.destroy(), this.o.tcpIdleMs);
    s.on("close", () => {
      clearTimeout(idle);
      this.conns.delete(s);
    });
    let buf: Buffer = Buffer.alloc(0);
    let outstanding = 0;
    s.on("data", (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (n > this.o.maxQueryBytes || n < 12) {
          this.stats.malformed++;
          s.destroy();
          return;
        }
        if (buf.length < n + 2) break;
        const query = Buffer.from(buf.subarray(2, n + 2));
        buf = buf.subarray(n + 2);
        idle.refresh();
        if (++outstanding > this.o.tcpMaxOutstanding) {
          this.stats.refused++;
          s.destroy();
          return;
        }
        this.handle(query, true).then(
          (reply) => {
            outstanding--;
            if (!reply || s.destroyed) return;
            // A client that asks and never reads would make us buffer its answers without end.
            if (s.writableLength > MAX_TCP_UNREAD) {
              this.stats.refused++;
              s.destroy();
              return;
            }
            const len = Buffer.alloc(2);
            len.writeUInt16BE(reply.length);
            s.write(Buffer.concat([len, reply]));
          },
          (e: unknown) => {
            outstanding--;
            log.warn("dns query failed", { error: e instanceof Error ? e : String(e) });
          },
        );
      }
      if (buf.length > this.o.maxQueryBytes + 2) s.destroy();
    });
  }

  /** The reply to one query (undefined: send nothing). */
  private async handle(query: Buffer, tcp: boolean): Promise<Buffer | undefined> {
    this.stats.queries++;
    if (query.length < 12 || (query.readUInt16BE(2) & QR) !== 0) {
      // Too short for a header, or a response: answering could start a loop between two servers.
      this.stats.malformed++;
      return undefined;
    }
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(query);
    } catch {
      this.stats.malformed++;
      return errorReply(query, RCODE.FORMERR);
    }
    if (((q.flags ?? 0) & OPCODE_MASK) !== 0) return errorReply(query, RCODE.NOTIMP, q);
    const questions = q.questions ?? [];
    if (questions.length !== 1) {
      this.stats.malformed++;
      return errorReply(query, RCODE.FORMERR, q);
    }
    const question = questions[0]!;
    if ((question.class ?? "IN") === "IN" && (question.type === "A" || question.type === "AAAA")) {
      const ans = this.names.resolve(question.name, question.type === "A" ? 4 : 6, this.o);
      if (ans) {
        this.stats.meshAnswers++;
        return this.meshReply(q, question, ans.addresses, tcp);
      }
    } else if ((question.class ?? "IN") === "IN" && this.names.lookup(question.name, this.o)) {
      // Another type for a mesh name: the name exists, there is no such record (NODATA).
      this.stats.meshAnswers++;
      return this.meshReply(q, question, [], tcp);
    }
    if (this.upstreams.length === 0) return errorReply(query, RCODE.SERVFAIL, q);
    if (this.inflight >= this.o.maxInflight) {
      this.stats.refused++;
      return errorReply(query, RCODE.REFUSED, q);
    }
    this.inflight++;
    this.stats.forwarded++;
    try {
      const reply = await forward(
        this.upstreams,
        query,
        tcp,
        this.o.upstreamTimeoutMs,
        this.o.upstreamSockets ?? LOCAL_SOCKETS,
      );
      if (reply) return reply;
      this.stats.upstreamFailures++;
      return errorReply(query, RCODE.SERVFAIL, q);
    } finally {
      this.inflight--;
    }
  }

  private meshReply(q: packet.DecodedPacket, question: packet.Question, addresses: string[], tcp: boolean): Buffer {
    const type = question.type as "A" | "AAAA";
    const reply = packet.encode({
      type: "response",
      id: q.id,
      flags: packet.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & packet.RECURSION_DESIRED) | packet.RECURSION_AVAILABLE,
      questions: [question],
      answers: addresses.map((data) => ({
        type,
        class: "IN" as const,
        name: question.name,
        ttl: this.o.ttlSeconds,
        data,
      })),
    });
    if (tcp) return reply;
    // UDP: 512 bytes unless the client's EDNS OPT record allows more; else TC (the client retries over TCP).
    const opt = (q.additionals ?? []).find((a): a is packet.OptAnswer => a.type === "OPT");
    const limit = Math.max(UDP_PLAIN_LIMIT, opt?.udpPayloadSize ?? 0);
    if (reply.length <= limit) return reply;
    return packet.encode({
      type: "response",
      id: q.id,
      flags:
        packet.AUTHORITATIVE_ANSWER |
        packet.TRUNCATED_RESPONSE |
        ((q.flags ?? 0) & packet.RECURSION_DESIRED) |
        packet.RECURSION_AVAILABLE,
      questions: [question],
    });
  }
}
