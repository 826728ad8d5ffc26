// The explicit outbound listeners of one workload (beside SOCKS5): a forward listener accepts plain TCP on an
// address and tunnels each connection to one fixed destination; SOCKS5 lets the client name it. Both hand the
// client's socket and the tunnel to pipe.ts, and own the socket's errors from the moment it is accepted.

import net from "node:net";
import type { Duplex } from "node:stream";
import { createSocks5Server, SOCKS_OK, socksReplyOf } from "./socks5.js";
import { startTunnel, resetSocket, ownErrors } from "./pipe.js";
import { parseHostPort, type HostPort } from "./authority.js";
import { logger } from "../log.js";

const log = logger("proxy");

/** Opens a tunnel for a client at `client` (NodeProxy.connect). */
export type TunnelOpener = (dest: HostPort, client: HostPort) => Promise<Duplex>;
/** Counts open outbound tunnels (drain waits for them): +1 when one is accepted, -1 when it is done. */
export type Track = (delta: 1 | -1) => void;

function clientOf(socket: net.Socket): HostPort {
  const client = { host: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
  // Node caches the address object on the socket for its whole life; read again, it is fetched again.
  (socket as { _peername?: unknown })._peername = undefined;
  return client;
}

/** SOCKS5 (RFC 1928) whose CONNECTs become tunnels; refusals map to the SOCKS reply the error names. */
export function createSocksListener(open: TunnelOpener, track: Track): net.Server {
  const counted = counter(track);
  return createSocks5Server((dest, socket) => {
    counted.add(socket);
    return open(dest, clientOf(socket)).then(
      (tunnel) => ({ code: SOCKS_OK, start: () => counted.pipe(socket, tunnel) }),
      (err: Error) => {
        log.limited.info("outbound refused", { dest: `${dest.host}:${dest.port}`, error: err });
        counted.release(socket);
        return { code: socksReplyOf(err) };
      },
    );
  });
}

/** A forward listener: every connection is tunnelled to `to` (host:port). */
export function createForwardListener(to: string, open: TunnelOpener, track: Track): net.Server {
  const dest = parseHostPort(to);
  if (!dest) throw new Error(`forward destination "${to}" is not host:port`);
  const counted = counter(track);
  // pauseOnConnect: the client's bytes wait in the kernel until the tunnel is up (no read started, stopped and
  // started again); noDelay set by the server at accept.
  return net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
    // Owned from the first moment: a client may reset (TCP RST) while its tunnel is set up.
    ownErrors(socket);
    counted.add(socket);
    open(dest, clientOf(socket)).then(
      (tunnel) => {
        // With the client already gone, the pipe closes the tunnel at once.
        counted.pipe(socket, tunnel);
        socket.resume();
      },
      (err: Error) => {
        log.limited.info("forward refused", { to, error: err });
        counted.release(socket);
        resetSocket(socket); // a FIN would read as an empty answer: the client must see the failure
      },
    );
  });
}

/**
 * A listener's client connections, each counted as an open tunnel from the moment it is accepted, not from when its
 * tunnel is up: a drain that began while a tunnel was being dialled must wait for it too. Counted until the pipe
 * ends, the setup fails, or the client is gone before a pipe started. Made once per listener: a tunnel holds none
 * of it but the shared `done` its pipe calls.
 */
function counter(track: Track): {
  add(socket: net.Socket): void;
  pipe(socket: net.Socket, tunnel: Duplex): void;
  release(socket: net.Socket): void;
} {
  const done = () => track(-1);
  // Listening for 'close' until the pipe starts is what says the socket is still counted.
  const closedEarly = function (this: net.Socket): void {
    this.off("close", closedEarly);
    track(-1);
  };
  const counted = (socket: net.Socket) => socket.rawListeners("close").includes(closedEarly);
  return {
    add(socket) {
      track(1);
      socket.on("close", closedEarly);
    },
    pipe(socket, tunnel) {
      const mine = counted(socket);
      socket.off("close", closedEarly);
      startTunnel(socket, tunnel, mine ? done : null);
    },
    release(socket) {
      if (!counted(socket)) return;
      socket.off("close", closedEarly);
      track(-1);
    },
  };
}
