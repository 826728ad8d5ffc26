// A resolver for DNS proxy tests, on loopback (UDP and TCP on one port): `records` answer A/AAAA, anything else is
// NXDOMAIN; `delayMs` holds answers back, `silent` never answers. It counts what it was asked, and over which
// transport, so tests can tell a forwarded query from one the proxy answered itself. With `netnsFd` it listens on
// 127.0.0.1 (`port`: any) inside that network namespace (sockets made there by host/sys), reachable only from it.

import dgram from "node:dgram";
import net from "node:net";
import { once } from "node:events";
import * as packet from "dns-packet";
import { createListenSocketIn, createUdpSocketIn, localAddress } from "../../host/sys/socket.js";

export class FakeUpstream {
  readonly asked: { name: string; type: string; tcp: boolean }[] = [];
  records = new Map<string, string[]>();
  delayMs = 0;
  silent = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly conns = new Set<net.Socket>();

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly port: number,
  ) {}

  static async start(o: { netnsFd?: number; port?: number } = {}): Promise<FakeUpstream> {
    const tcp = net.createServer();
    tcp.on("error", () => undefined);
    let port: number;
    const udp = dgram.createSocket("udp4");
    udp.on("error", () => undefined);
    const udpListening = once(udp, "listening"); // bind({ fd }) may emit it at once
    if (o.netnsFd === undefined) {
      tcp.listen(0, "127.0.0.1");
      await once(tcp, "listening");
      port = (tcp.address() as net.AddressInfo).port;
      udp.bind(port, "127.0.0.1");
    } else {
      const t = createListenSocketIn(o.netnsFd, { host: "127.0.0.1", port: o.port ?? 0 });
      port = localAddress(t.fd).port;
      const u = createUdpSocketIn(o.netnsFd, { host: "127.0.0.1", port });
      tcp.listen({ fd: t.fd });
      await once(tcp, "listening");
      udp.bind({ fd: u });
    }
    await udpListening;
    const f = new FakeUpstream(udp, tcp, port);
    udp.on("message", (m, r) => f.answer(m, false, (b) => udp.send(b, r.port, r.address)));
    tcp.on("connection", (s) => {
      s.on("error", () => undefined);
      f.conns.add(s);
      s.on("close", () => f.conns.delete(s));
      let buf: Buffer = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          const q = buf.subarray(2, buf.readUInt16BE(0) + 2);
          buf = buf.subarray(q.length + 2);
          f.answer(Buffer.from(q), true, (b) => {
            if (!s.destroyed) s.write(Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]));
          });
        }
      });
    });
    return f;
  }

  get upstream(): { host: string; port: number } {
    return { host: "127.0.0.1", port: this.port };
  }

  private answer(m: Buffer, tcp: boolean, send: (b: Buffer) => void): void {
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(m);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    this.asked.push({ name: question.name, type: question.type, tcp });
    if (this.silent) return;
    const data = this.records.get(`${question.type} ${question.name.toLowerCase()}`);
    const reply = packet.encode({
      type: "response",
      id: q.id,
      flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (data ? 0 : 3),
      questions: [question],
      answers: (data ?? []).map((d) => ({ type: question.type as "A", name: question.name, ttl: 60, data: d })),
    });
    if (this.delayMs === 0) return send(reply);
    const t = setTimeout(() => {
      this.timers.delete(t);
      send(reply);
    }, this.delayMs);
    this.timers.add(t);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.conns) s.destroy();
    await new Promise<void>((r) => this.udp.close(() => r()));
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}
