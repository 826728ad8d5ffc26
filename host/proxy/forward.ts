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
  return createSocks5Server((dest, socket) => {
    const setup = tracked(socket, track);
    return open(dest, clientOf(socket)).then(
      (tunnel) => ({ code: SOCKS_OK, start: () => setup.pipe(tunnel) }),
      (err: Error) => {
        log.limited.info("outbound refused", { dest: `${dest.host}:${dest.port}`, error: err });
        setup.done();
        return { code: socksReplyOf(err) };
      },
    );
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
    const setup = tracked(socket, track);
    open(dest, clientOf(socket)).then(
      (tunnel) => {
        // With the client already gone, the pipe closes the tunnel at once.
        setup.pipe(tunnel);
        socket.resume();
      },
      (err: Error) => {
        log.limited.info("forward refused", { to, error: err });
        setup.done();
        resetSocket(socket); // a FIN would read as an empty answer: the client must see the failure
      },
    );
  });
}

/**
 * A client connection counted as an open tunnel from the moment it is accepted, not from when its tunnel is up: a
 * drain that began while a tunnel was being dialled must wait for it too. Counted until the pipe ends, the setup
 * fails, or the client is gone before a pipe started.
 */
function tracked(socket: net.Socket, track: Track): { pipe(tunnel: Duplex): void; done(): void } {
  let release!: () => void;
  void track(new Promise<void>((r) => (release = r)));
  let piping = false;
  socket.once("close", () => {
    if (!piping) release();
  });
  return {
    pipe(tunnel) {
      piping = true;
      void pipeTunnel(socket, tunnel).finally(release);
    },
    done: () => release(),
  };
}
