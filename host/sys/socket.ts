// TCP sockets made by FFI (so they can be made inside another network namespace, or marked before their first
// packet), then handed to libuv by fd; socket options Node has no API for; original destination of a captured
// connection.

import net from "node:net";
import os from "node:os";
import { C, check, closeQuietly, libc, nativeAvailable } from "./libc.js";
import { SysError, errnoName } from "./errors.js";
import { inNetns } from "./netns.js";
import { acceptWithSharedMaps, SOCKET_SET } from "../net.js";
import {
  decodeInet,
  encodeInet,
  SOCKADDR_IN6_LEN,
  SOCKADDR_IN_LEN,
  SOCKADDR_STORAGE_LEN,
  type SockAddr,
} from "./sockaddr.js";

/** The packet mark ztunnel puts on every socket it opens, so the pod's redirect rules let them pass (1337). */
export const PROXY_MARK = 0x539;

export interface ListenSocketOptions {
  host: string; // IP literal: "0.0.0.0", "::", "127.0.0.1", …
  port: number;
  /** SO_MARK (needs CAP_NET_ADMIN); omit for none. */
  mark?: number;
  /** SO_REUSEPORT, best effort (several listeners on one port, e.g. an old and a new proxy during a restart). */
  reusePort?: boolean;
  /** IP_TRANSPARENT, best effort: a refusal is reported in `warnings`, not thrown. */
  transparent?: boolean;
  /** For "::": accept IPv4 too (default) or IPv6 only. */
  v6Only?: boolean;
  backlog?: number;
}

export interface FfiSocket {
  fd: number;
  /** Best-effort options (SO_REUSEPORT, IP_TRANSPARENT) that could not be set, each a SysError message. */
  warnings: string[];
}

/** socket()+options+bind()+listen() in the current namespace; returns the listening fd (non-blocking, CLOEXEC). */
export function createListenSocket(o: ListenSocketOptions): FfiSocket {
  const addr = encodeInet(o.host, o.port);
  const family = net.isIP(o.host) === 6 ? C.AF_INET6 : C.AF_INET;
  const fd = newTcpSocket(family);
  const warnings: string[] = [];
  try {
    setIntOpt(fd, C.SOL_SOCKET, C.SO_REUSEADDR, 1, "SO_REUSEADDR", "sockopt");
    if (o.reusePort) {
      try {
        setIntOpt(fd, C.SOL_SOCKET, C.SO_REUSEPORT, 1, "SO_REUSEPORT", "so-reuseport");
      } catch (err) {
        warnings.push((err as Error).message);
      }
    }
    if (o.mark !== undefined) setMark(fd, o.mark);
    if (family === C.AF_INET6) setIntOpt(fd, C.SOL_IPV6, C.IPV6_V6ONLY, o.v6Only ? 1 : 0, "IPV6_V6ONLY", "sockopt");
    if (o.transparent) {
      try {
        setTransparent(fd, family);
      } catch (err) {
        warnings.push((err as Error).message);
      }
    }
    check(libc().bind(fd, addr, addr.length), `bind(${fmt(o.host, o.port)})`, "bind");
    check(libc().listen(fd, o.backlog ?? 511), `listen(${fmt(o.host, o.port)})`, "listen");
    return { fd, warnings };
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/** A bound UDP socket (marked when `mark` is given) in the namespace `netnsFd`: for a pod's DNS proxy (dgram adopts
 *  it with `bind({ fd })`). */
export function createUdpSocketIn(netnsFd: number, o: { host: string; port: number; mark?: number }): number {
  return inNetns(netnsFd, () => {
    const family = net.isIP(o.host) === 6 ? C.AF_INET6 : C.AF_INET;
    const fd = check(
      libc().socket(family, C.SOCK_DGRAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0),
      "socket(SOCK_DGRAM)",
      "socket",
    );
    try {
      if (o.mark !== undefined) setMark(fd, o.mark);
      const a = encodeInet(o.host, o.port);
      check(libc().bind(fd, a, a.length), `bind(${fmt(o.host, o.port)}/udp)`, "bind");
      return fd;
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  });
}

/** createListenSocket inside the namespace `netnsFd`. */
export function createListenSocketIn(netnsFd: number, o: ListenSocketOptions): FfiSocket {
  return inNetns(netnsFd, () => createListenSocket(o));
}

/**
 * A net.Server adopting an FFI listening fd (libuv owns the fd from here: server.close() closes it). Resolves once
 * listening; the server's 'error' must be owned by the caller from then on (one is attached until then).
 */
export async function adoptServer(server: net.Server, fd: number): Promise<net.Server> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      server.off("listening", onListening);
      reject(err);
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ fd });
  });
  acceptWithSharedMaps(server);
  return server;
}

export interface DialSocketOptions {
  family: 4 | 6;
  /** SO_MARK before the first packet (needs CAP_NET_ADMIN); omit for none. */
  mark?: number;
  /** Local address to bind first (port 0 = any). */
  bind?: { host: string; port?: number };
  /** IP_TRANSPARENT + bind to a foreign address (keeping a client's source IP). */
  transparent?: boolean;
}

/** An unconnected TCP socket fd, marked before anything is sent: adopt with `new net.Socket({ fd })`, then connect. */
export function createDialSocket(o: DialSocketOptions): number {
  const family = o.family === 6 ? C.AF_INET6 : C.AF_INET;
  const fd = newTcpSocket(family);
  try {
    if (o.mark !== undefined) setMark(fd, o.mark);
    if (o.transparent) setTransparent(fd, family);
    if (o.bind) {
      const a = encodeInet(o.bind.host, o.bind.port ?? 0);
      check(libc().bind(fd, a, a.length), `bind(${fmt(o.bind.host, o.bind.port ?? 0)})`, "bind");
    }
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/**
 * Connects to host:port from inside the namespace `netnsFd` (or from here when null) with the socket marked:
 * the socket is created in the namespace by FFI, adopted by libuv, then connected (it stays in the namespace it
 * was created in). Returns the net.Socket at once (connecting); it has no 'error' listener: the caller attaches one.
 */
export function dialFrom(
  netnsFd: number | null,
  host: string,
  port: number,
  o: Omit<DialSocketOptions, "family"> = {},
): net.Socket {
  const family = net.isIP(host) === 6 ? 6 : 4;
  if (net.isIP(host) === 0) {
    throw new SysError(`connect(${host})`, "connect", os.constants.errno.EINVAL, "(needs an IP literal)");
  }
  const make = () => createDialSocket({ ...o, family });
  const fd = netnsFd === null ? make() : inNetns(netnsFd, make);
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: false, ...SOCKET_SET });
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  socket.connect(port, host);
  return socket;
}

/** SO_MARK on a socket fd (needs CAP_NET_ADMIN). */
export function setMark(fd: number, mark: number): void {
  setIntOpt(fd, C.SOL_SOCKET, C.SO_MARK, mark >>> 0, `SO_MARK=0x${(mark >>> 0).toString(16)}`, "so-mark");
}

/** Reads SO_MARK back (0 when unmarked). */
export function getMark(fd: number): number {
  return getIntOpt(fd, C.SOL_SOCKET, C.SO_MARK, "SO_MARK") >>> 0;
}

/** SO_REUSEPORT read back (tests and config_dump). */
export function getReusePort(fd: number): boolean {
  return getIntOpt(fd, C.SOL_SOCKET, C.SO_REUSEPORT, "SO_REUSEPORT") !== 0;
}

/** IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN or CAP_NET_RAW). */
export function setTransparent(fd: number, family: number): void {
  if (family === C.AF_INET6) setIntOpt(fd, C.SOL_IPV6, C.IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT", "ip-transparent");
  else setIntOpt(fd, C.SOL_IP, C.IP_TRANSPARENT, 1, "IP_TRANSPARENT", "ip-transparent");
}

/** The fd under a net.Socket or net.Server (libuv's handle); a SysError (EBADF) when it has none yet or any more. */
export function fdOf(s: net.Socket | net.Server): number {
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new SysError("fd of socket", "sockopt", os.constants.errno.EBADF);
  return fd;
}

const soErrorValue = Buffer.alloc(4),
  soErrorLen = Buffer.alloc(4);

/**
 * The error a socket holds but has not reported (SO_ERROR), or 0; 0 too where native calls are unavailable or the
 * socket has no fd. Why it is needed: when a peer's RST arrives together with its last bytes, libuv reads the bytes
 * and, seeing POLLHUP after a short read, reports EOF without ever reading the ECONNRESET (its uv__stream_io
 * shortcut). A reset then looks like a FIN, and a proxy passing it on as END_STREAM would present a cut stream as
 * complete. Asked once when a socket ends: the kernel still holds the error then.
 */
export function pendingSocketError(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== "number" || fd < 0 || !nativeAvailable()) return 0;
  soErrorLen.writeUInt32LE(4);
  if (libc().getsockopt(fd, C.SOL_SOCKET, C.SO_ERROR, soErrorValue, soErrorLen) !== 0) return 0;
  return soErrorValue.readInt32LE(0);
}

/** The reset a socket's end hid (pendingSocketError), as the error a read would have given; null for a real end. */
export function hiddenReset(s: net.Socket): NodeJS.ErrnoException | null {
  const errno = pendingSocketError(s);
  if (errno === 0) return null;
  const code = errnoName(errno);
  return Object.assign(new Error(`read ${code} (the socket reported it as its end)`), { code, errno });
}

export interface OriginalDestination extends SockAddr {
  /** How it was found: the NAT conntrack entry (REDIRECT), or the local address (TPROXY, or not redirected). */
  via: "SO_ORIGINAL_DST" | "IP6T_SO_ORIGINAL_DST" | "local";
}

/**
 * The destination a captured connection was sent to: SO_ORIGINAL_DST (IPv4 REDIRECT), then IP6T_SO_ORIGINAL_DST
 * (IPv6), else the socket's local address, as ztunnel does. Throws only when the fd itself is unusable.
 */
export function originalDestination(socket: net.Socket | number): OriginalDestination {
  const fd = typeof socket === "number" ? socket : fdOf(socket);
  const c = libc();
  const v4 = Buffer.alloc(SOCKADDR_IN_LEN);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(v4.length);
  if (c.getsockopt(fd, C.SOL_IP, C.SO_ORIGINAL_DST, v4, len) === 0) {
    const a = decodeInet(v4, len.readUInt32LE(0));
    if (a) return { ...a, via: "SO_ORIGINAL_DST" };
  }
  const v6 = Buffer.alloc(SOCKADDR_IN6_LEN);
  len.writeUInt32LE(v6.length);
  if (c.getsockopt(fd, C.SOL_IPV6, C.IP6T_SO_ORIGINAL_DST, v6, len) === 0) {
    const a = decodeInet(v6, len.readUInt32LE(0));
    if (a) return { ...canonical(a), via: "IP6T_SO_ORIGINAL_DST" };
  }
  return { ...canonical(localAddress(fd)), via: "local" };
}

/** An IPv4-mapped IPv6 address (a v4 client of a dual-stack socket) as the IPv4 address it is, as ztunnel does. */
function canonical(a: SockAddr): SockAddr {
  if (a.family === 6 && a.address.startsWith("::ffff:") && net.isIPv4(a.address.slice(7))) {
    return { family: 4, address: a.address.slice(7), port: a.port };
  }
  return a;
}

/** getsockname() of an fd. */
export function localAddress(fd: number): SockAddr {
  const b = Buffer.alloc(SOCKADDR_STORAGE_LEN);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(b.length);
  check(libc().getsockname(fd, b, len), `getsockname(${fd})`, "sockopt");
  const a = decodeInet(b, len.readUInt32LE(0));
  if (!a) throw new SysError(`getsockname(${fd})`, "sockopt", os.constants.errno.EAFNOSUPPORT, "(not an IP socket)");
  return a;
}

function newTcpSocket(family: number): number {
  const name = family === C.AF_INET6 ? "AF_INET6" : "AF_INET";
  return check(
    libc().socket(family, C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0),
    `socket(${name}, SOCK_STREAM)`,
    "socket",
  );
}

function setIntOpt(
  fd: number,
  level: number,
  name: number,
  value: number,
  label: string,
  op: Parameters<typeof check>[2],
): void {
  const v = Buffer.alloc(4);
  v.writeUInt32LE(value >>> 0);
  check(libc().setsockopt(fd, level, name, v, 4), `setsockopt(${label})`, op);
}

function getIntOpt(fd: number, level: number, name: number, label: string): number {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  check(libc().getsockopt(fd, level, name, v, len), `getsockopt(${label})`, "sockopt");
  return v.readInt32LE(0);
}

function fmt(host: string, port: number): string {
  return net.isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
