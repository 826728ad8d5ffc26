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
  const sock = d.socket ?? net.connect({ host: d.host, port: d.port, noDelay: true, allowHalfOpen: true });
  sock.setNoDelay(true);
  // Dropped once the dial is settled: an open connection keeps neither the callbacks (and what they hold) nor the timer.
  let dial: { timer: NodeJS.Timeout; onConnect: typeof onConnect; onError: typeof onError } | null = {
    timer: setTimeout(() => sock.destroy(new Error("connect timeout")), d.timeoutMs),
    onConnect,
    onError,
  };
  const settle = () => {
    const x = dial;
    dial = null;
    if (x) clearTimeout(x.timer);
    return x;
  };
  sock.on("close", settle); // 'close' comes once
  sock.once("connect", () => settle()?.onConnect(sock));
  sock.on("error", (err) => settle()?.onError(err)); // and stays the error owner
  return sock;
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
