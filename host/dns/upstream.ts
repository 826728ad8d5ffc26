// Forwarding what is not the mesh's to the host's resolvers: the nameservers of /etc/resolv.conf (port 53), or
// the ones configured. A query is relayed as it came (same id, same bytes) over UDP or TCP, to one upstream after
// the other until one answers in time; a reply counts only if it comes from that upstream and carries the query's
// id with the response bit set. The sockets come from `UpstreamSockets`: a pod's DNS proxy makes them inside the
// pod's network namespace, marked (as ztunnel forwards from the pod), so the pod's resolvers and routes apply.

import dgram from "node:dgram";
import net from "node:net";
import { readFileSync } from "node:fs";

export interface Upstream {
  host: string;
  port: number;
}

/** The nameservers of a resolv.conf (IPv4 and IPv6; zone ids kept), port 53. */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && net.isIP(m[1]!.split("%")[0]!) !== 0) out.push({ host: m[1]!, port: 53 });
  }
  return out;
}

/** The host's resolvers (empty when /etc/resolv.conf is missing or names none). */
export function systemUpstreams(path = "/etc/resolv.conf"): Upstream[] {
  try {
    return parseResolvConf(readFileSync(path, "utf8"));
  } catch {
    return [];
  }
}

/** Where the sockets toward upstreams are made. Both return a socket with no 'error' listener yet (the caller
 *  attaches one at once); `udp` is bound (or binding), `tcp` is connecting to `u`. */
export interface UpstreamSockets {
  udp(u: Upstream): dgram.Socket;
  tcp(u: Upstream): net.Socket;
}

/** Sockets made here, in this process's network namespace. */
export const LOCAL_SOCKETS: UpstreamSockets = {
  udp: (u) => dgram.createSocket(net.isIPv6(u.host.split("%")[0]!) ? "udp6" : "udp4"),
  tcp: (u) => net.connect({ host: u.host, port: u.port }),
};

/** Largest DNS message over TCP (the 16-bit length prefix). */
const MAX_TCP_MESSAGE = 65535;

function isReplyTo(query: Buffer, reply: Buffer): boolean {
  return reply.length >= 12 && reply[0] === query[0] && reply[1] === query[1] && (reply[2]! & 0x80) !== 0;
}

/** One UDP exchange with `u`; resolves with the reply, or undefined on timeout or error. */
export function exchangeUdp(
  u: Upstream,
  query: Buffer,
  timeoutMs: number,
  sockets: UpstreamSockets = LOCAL_SOCKETS,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let sock: dgram.Socket;
    try {
      sock = sockets.udp(u);
    } catch {
      return resolve(undefined); // e.g. the pod's namespace is gone
    }
    let done = false;
    const finish = (r: Buffer | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(r);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.on("error", () => finish(undefined));
    sock.on("message", (msg, rinfo) => {
      // Someone else's datagram (spoofed or late) is ignored; we keep waiting for the real one.
      if (rinfo.port === u.port && isReplyTo(query, msg)) finish(msg);
    });
    sock.connect(u.port, u.host, () => sock.send(query, (err) => err && finish(undefined)));
  });
}

/** One TCP exchange (length-prefixed) with `u`. */
export function exchangeTcp(
  u: Upstream,
  query: Buffer,
  timeoutMs: number,
  sockets: UpstreamSockets = LOCAL_SOCKETS,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let sock: net.Socket;
    try {
      sock = sockets.tcp(u);
    } catch {
      return resolve(undefined);
    }
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (r: Buffer | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.on("error", () => finish(undefined));
    sock.on("close", () => finish(undefined));
    sock.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.end(Buffer.concat([len, query]));
    });
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2) return;
      const n = buf.readUInt16BE(0);
      if (n > MAX_TCP_MESSAGE || buf.length > n + 2 + MAX_TCP_MESSAGE) return finish(undefined);
      if (buf.length >= n + 2) {
        const reply = buf.subarray(2, n + 2);
        finish(isReplyTo(query, reply) ? reply : undefined);
      }
    });
  });
}

/** Tries each upstream in turn; the first reply wins. undefined: none answered (the caller says SERVFAIL). */
export async function forward(
  upstreams: Upstream[],
  query: Buffer,
  tcp: boolean,
  timeoutMs: number,
  sockets: UpstreamSockets = LOCAL_SOCKETS,
): Promise<Buffer | undefined> {
  for (const u of upstreams) {
    const reply = await (tcp ? exchangeTcp(u, query, timeoutMs, sockets) : exchangeUdp(u, query, timeoutMs, sockets));
    if (reply) return reply;
  }
  return undefined;
}
