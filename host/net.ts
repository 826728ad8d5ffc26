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
  let connected = false;
  const timer = setTimeout(() => sock.destroy(new Error("connect timeout")), d.timeoutMs);
  sock.once("close", () => clearTimeout(timer));
  sock.once("connect", () => {
    connected = true;
    clearTimeout(timer);
    onConnect(sock);
  });
  sock.once("error", (err) => {
    clearTimeout(timer);
    if (!connected) onError(err);
  });
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
