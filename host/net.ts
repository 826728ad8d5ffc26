// The two TCP socket chores every room does the same way: dial with a timeout, and listen until bound.

import net from "node:net";

export interface TcpDial {
  host: string;
  port: number;
  /** The dial fails with "connect timeout" after this long. */
  timeoutMs: number;
  /** A connecting socket made elsewhere (e.g. inside a pod's network namespace); default: net.connect. */
  socket?: net.Socket;
}

/**
 * Dials TCP with Nagle off and half-open allowed (the far side may still answer after our FIN). Exactly one of
 * `onConnect` / `onError` runs, unless the caller destroys the returned socket first without an error (a cancel:
 * neither runs). An error after the connection is up is not reported here: the socket's next owner (the pipe)
 * takes it. The 'error' owner is attached before the socket is returned.
 */
export function dialTcp(d: TcpDial, onConnect: (sock: net.Socket) => void, onError: (err: Error) => void): net.Socket {
  const sock: Dialling = d.socket ?? net.connect({ host: d.host, port: d.port, noDelay: true, allowHalfOpen: true });
  sock.setNoDelay(true);
  // Dropped once the dial is settled: an open connection keeps neither the callbacks (and what they hold) nor the
  // timer; the listeners are shared by every dial (an idle tunnel's socket holds no closure of its own).
  sock[DIAL] = { timer: setTimeout(dialTimedOut, d.timeoutMs, sock), onConnect, onError };
  sock.on("close", onDialClose); // 'close' comes once
  sock.once("connect", onDialConnect);
  sock.on("error", onDialError); // and stays the error owner
  return sock;
}

const DIAL = Symbol("dial in progress");
interface Dial {
  timer: NodeJS.Timeout;
  onConnect: (sock: net.Socket) => void;
  onError: (err: Error) => void;
}
type Dialling = net.Socket & { [DIAL]?: Dial | null };

function settle(sock: Dialling): Dial | null {
  const x = sock[DIAL] ?? null;
  if (x) {
    sock[DIAL] = null;
    clearTimeout(x.timer);
  }
  return x;
}
function dialTimedOut(sock: net.Socket): void {
  sock.destroy(new Error("connect timeout"));
}
function onDialClose(this: Dialling): void {
  settle(this);
}
function onDialConnect(this: Dialling): void {
  settle(this)?.onConnect(this);
}
function onDialError(this: Dialling, err: Error): void {
  settle(this)?.onError(err);
}

/** A connected socket's new owner (the pipe, which owns its errors from then on) drops the dial's listeners. */
export function releaseDial(sock: net.Socket): void {
  if ((sock as Dialling)[DIAL] !== null) return; // not dialled here, or still dialling
  sock.off("close", onDialClose);
  sock.off("error", onDialError);
}

/**
 * `server.listen` that settles once: resolves with the bound address, or rejects with the bind's error
 * (EADDRINUSE, EACCES …) instead of leaving it to the server's 'error' listeners.
 */
export async function listen(
  server: net.Server,
  at: { host: string; port: number } | { fd: number },
): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const ok = () => {
      server.off("error", reject);
      resolve();
    };
    if ("fd" in at) server.listen({ fd: at.fd }, ok);
    else server.listen(at.port, at.host, ok);
  });
  return server.address() as net.AddressInfo;
}
