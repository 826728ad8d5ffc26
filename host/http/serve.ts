// Serving over the mesh: tunnels that reach a port are handed to an http.Server, an http2 server
// or any net.Server-like object as connections ('connection' event), each looking like a socket
// whose `peerIdentity` is the verified SPIFFE identity of the calling workload.

import type { Duplex } from "node:stream";
import type { EventEmitter } from "node:events";
import type { TunnelInfo } from "../proxy/inbound.js";
import { parseIpAuthority, type HostPort } from "../proxy/authority.js";
import { asSocket } from "./socket.js";
import { header } from "../h2/headers.js";

/** Anything that takes connections as node:http, http2 and net servers do. */
export type ConnectionServer = Pick<EventEmitter, "emit" | "on" | "off">;

/** The original client in the CONNECT's `forwarded: for="ip:port"` (the source proxy adds it). */
function forwardedFor(v: string): HostPort | undefined {
  const m = /(?:^|[;,\s])for="?([^";,]+)"?/i.exec(v);
  return (m && parseIpAuthority(m[1]!)) || undefined;
}

/** The Acceptor that hands each tunnel to `server`. */
export function serveTunnels(server: ConnectionServer): (stream: Duplex, info: TunnelInfo) => void {
  return (stream, info) => {
    const fwd = header(info.headers, "forwarded");
    const client = fwd ? forwardedFor(fwd) : undefined;
    const socket = asSocket(stream, { peerIdentity: info.peer, remoteAddress: client?.host, remotePort: client?.port });
    // An http2 server wraps a non-net socket in its own (session.socket proxies to that wrapper)
    // and emits 'session' during this emit: put the identity there as well.
    const onSession = (session: { socket?: Record<string, unknown> }) => {
      if (session.socket) session.socket.peerIdentity = info.peer;
    };
    server.on("session", onSession);
    try {
      server.emit("connection", socket);
    } finally {
      server.off("session", onSession);
    }
  };
}
