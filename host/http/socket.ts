// An HBONE tunnel made to look like a net.Socket for node:http, http2 and undici. They call a few
// socket methods unguarded (the http Agent: setKeepAlive, unref, ref, setTimeout; servers:
// setTimeout for keep-alive and request timeouts, destroySoon; http2: setNoDelay). The tunnel is a
// stream of a shared HBONE connection: Nagle, TCP keep-alive and event-loop refs belong to that
// connection (the HBONE pool), so those are no-ops here; idle timeouts are real, because servers
// and agents close idle keep-alive connections with them.

import net from "node:net";
import type { Duplex } from "node:stream";
import type { Identity } from "../identity/identity.js";

/** What a tunnel socket adds: the verified SPIFFE identity of the peer (server side). */
export interface TunnelSocketInfo {
  peerIdentity?: Identity;
  remoteAddress?: string;
  remotePort?: number;
}

export type TunnelSocket = Duplex & net.Socket & TunnelSocketInfo;

const DECORATED = Symbol("hbone.tunnelSocket");

/** Bytes moved so far, for idle detection: the H2 stream's counters, else counted here. */
function activity(d: Duplex): () => number {
  const s = d as Duplex & { pushed?: unknown; written?: unknown };
  if (typeof s.pushed === "number" && typeof s.written === "number")
    return () => (s.pushed as number) + (s.written as number);
  let n = 0;
  d.on("data", (c: Buffer) => (n += c.length));
  const write = d.write.bind(d) as (...a: unknown[]) => boolean;
  (d as { write: unknown }).write = (chunk: unknown, ...rest: unknown[]) => {
    n += (chunk as { length?: number })?.length ?? 0;
    return write(chunk, ...rest);
  };
  return () => n;
}

/**
 * Gives `tunnel` the socket methods http needs, in place (no copy of the bytes). A real net.Socket
 * (a plain-TCP destination) is returned as it is.
 */
export function asSocket(tunnel: Duplex, info: TunnelSocketInfo = {}): TunnelSocket {
  const s = tunnel as TunnelSocket;
  if (tunnel instanceof net.Socket)
    return Object.assign(s, info.peerIdentity ? { peerIdentity: info.peerIdentity } : {});
  if ((tunnel as Partial<Record<typeof DECORATED, boolean>>)[DECORATED]) return s; // once is enough
  (tunnel as Partial<Record<typeof DECORATED, boolean>>)[DECORATED] = true;
  const moved = activity(tunnel);
  let timer: NodeJS.Timeout | undefined;
  let idleMs = 0;
  let seen = 0;
  const arm = () => {
    seen = moved();
    timer = setTimeout(() => {
      timer = undefined;
      if (idleMs === 0 || tunnel.destroyed) return;
      if (moved() !== seen) return arm(); // traffic since: not idle yet
      tunnel.emit("timeout");
    }, idleMs);
    timer.unref();
  };
  const self = tunnel as unknown as Record<string, unknown>;
  Object.assign(self, {
    peerIdentity: info.peerIdentity,
    remoteAddress: info.remoteAddress,
    remotePort: info.remotePort,
    remoteFamily: info.remoteAddress ? (net.isIPv6(info.remoteAddress) ? "IPv6" : "IPv4") : undefined,
    encrypted: false, // the app sees plaintext; mTLS is the tunnel's
    connecting: false,
    setNoDelay: () => s,
    setKeepAlive: () => s,
    ref: () => s,
    unref: () => s,
    setTimeout(ms: number, cb?: () => void) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      idleMs = ms;
      if (cb) tunnel.once("timeout", cb);
      if (ms > 0) arm();
      return s;
    },
    // net's destroySoon closes the fd once written; a stream closes by itself once both sides
    // ended, and a reset now could overtake the response, so: end, and let the peer finish.
    destroySoon() {
      tunnel.end();
    },
  });
  tunnel.once("close", () => timer && clearTimeout(timer));
  return s;
}
