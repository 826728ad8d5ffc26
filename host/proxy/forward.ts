// The explicit outbound listeners of one workload (beside SOCKS5): a forward listener accepts plain TCP on an
// address and tunnels each connection to one fixed destination; SOCKS5 lets the client name it. Both hand the
// client's socket and the tunnel to pipe.ts, and own the socket's errors from the moment it is accepted.

import net from "node:net";
import type { Duplex } from "node:stream";
import { createSocks5Server, SOCKS_OK, socksReplyOf } from "./socks5.js";
import { pipeTunnel, resetSocket } from "./pipe.js";
import { parseHostPort, type HostPort } from "./authority.js";
import { logger } from "../log.js";

const log = logger("proxy");

/** Opens a tunnel for a client at `client` (NodeProxy.connect). */
export type TunnelOpener = (dest: HostPort, client: HostPort) => Promise<Duplex>;
/** Runs a pipe while counting it as an open outbound tunnel (drain waits for them). */
export type Track = (p: Promise<void>) => Promise<void>;

function clientOf(socket: net.Socket): HostPort {
  return { host: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
}

/** SOCKS5 (RFC 1928) whose CONNECTs become tunnels; refusals map to the SOCKS reply the error names. */
export function createSocksListener(open: TunnelOpener, track: Track): net.Server {
  return createSocks5Server(async (dest, socket) => {
    try {
      const tunnel = await open(dest, clientOf(socket));
      return { code: SOCKS_OK, start: () => void track(pipeTunnel(socket, tunnel)) };
    } catch (err) {
      log.limited.info("outbound refused", { dest: `${dest.host}:${dest.port}`, error: err as Error });
      return { code: socksReplyOf(err) };
    }
  });
}

/** A forward listener: every connection is tunnelled to `to` (host:port). */
export function createForwardListener(to: string, open: TunnelOpener, track: Track): net.Server {
  const dest = parseHostPort(to);
  if (!dest) throw new Error(`forward destination "${to}" is not host:port`);
  return net.createServer({ allowHalfOpen: true }, (socket) => {
    // Owned from the first moment: a client may reset (TCP RST) while its tunnel is set up.
    socket.on("error", (e) => log.debug("forward client socket error", { error: e }));
    socket.setNoDelay(true);
    socket.pause();
    open(dest, clientOf(socket)).then(
      (tunnel) => {
        // With the client already gone, the pipe closes the tunnel at once.
        void track(pipeTunnel(socket, tunnel));
        socket.resume();
      },
      (err: Error) => {
        log.limited.info("forward refused", { to, error: err });
        resetSocket(socket); // a FIN would read as an empty answer: the client must see the failure
      },
    );
  });
}
