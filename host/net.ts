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
  const sock: Dialling =
    d.socket ?? net.connect({ host: d.host, port: d.port, noDelay: true, allowHalfOpen: true, ...SOCKET_SET });
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
 * What net.Socket's constructor sets on its copy of the options (`{ ...options }`, then these, Node 20's net.js),
 * at the values it sets them to: options that hold them already make it set nothing new. V8 11.3 (Node 20) gives an
 * object copied with `{ ...o }` a map outside the transition tree, so each property added to the copy makes a new
 * map and descriptor array, in the old generation: three of each per socket (~1 KB that only a mark-compact frees,
 * and ~2 µs), which a burst of 10,000 connections left as ~10 MB of garbage in the old generation.
 */
export const SOCKET_SET = { emitClose: false, autoDestroy: true, decodeStrings: false } as const;

const NODE_20 = process.versions.node.split(".")[0] === "20";

interface ListenHandle {
  onconnection(err: number, client: AcceptedHandle | undefined): void;
}
interface AcceptedHandle {
  setNoDelay?(on: boolean): void;
}
/** The fields of a net.Server that Node's accept reads (set by its constructor: lib/net.js Server). */
type Listening = net.Server & {
  _handle: ListenHandle | null;
  _connections: number;
  allowHalfOpen: boolean;
  pauseOnConnect: boolean;
  noDelay: boolean;
  keepAlive: boolean;
  highWaterMark: number;
};

/**
 * Makes a bound server's accepted sockets from options that hold SOCKET_SET (see there): Node's own accept (net.js
 * onconnection, which the listening handle calls by name) builds them from a literal without. The same steps as
 * Node's for a connection it takes (less the diagnostics_channel message, which nothing here subscribes to); an
 * accept error, a connection over maxConnections and a keep-alive server (whose socket state only Node's accept
 * sets) go to Node's own. Cluster workers too: their round-robin handle is called by the same name.
 */
export function acceptWithSharedMaps(bound: net.Server): void {
  // The steps are Node 20's (the Node this product runs on): any other Node keeps its own accept.
  if (!NODE_20) return;
  const server = bound as Listening;
  const handle = server._handle;
  if (!handle || typeof handle.onconnection !== "function") return;
  const nodeAccept = handle.onconnection;
  handle.onconnection = function (this: ListenHandle, err, client) {
    if (err || !client || server.keepAlive || (server.maxConnections && server._connections >= server.maxConnections))
      return nodeAccept.call(this, err, client);
    const socket = new net.Socket({
      handle: client,
      allowHalfOpen: server.allowHalfOpen,
      pauseOnCreate: server.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: server.highWaterMark,
      writableHighWaterMark: server.highWaterMark,
      ...SOCKET_SET,
    } as net.SocketConstructorOpts);
    if (server.noDelay && client.setNoDelay) socket.setNoDelay(true);
    server._connections++;
    const owned = socket as net.Socket & { server: net.Server; _server: net.Server };
    owned.server = server;
    owned._server = server;
    server.emit("connection", socket);
  };
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
  acceptWithSharedMaps(server);
  return server.address() as net.AddressInfo;
}
