// The one door to libc (koffi). Every native call the proxy makes is declared here, loaded lazily on first use so
// that importing host/sys on a machine without koffi or Linux costs nothing and fails with a SysError only when a
// call is made. Pointers are Buffers (transient, valid for the call) or koffi.alloc blocks (msghdr and friends).

import { createRequire } from "node:module";
import os from "node:os";
import { SysError, type SysOp } from "./errors.js";

type Koffi = typeof import("koffi");
type Ptr = unknown; // a Buffer, a typed array, a koffi.alloc pointer, or null

export interface Libc {
  koffi: Koffi;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  accept4(fd: number, addr: Ptr, lenp: Ptr, flags: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Buffer, lenp: Buffer): number;
  getsockname(fd: number, addr: Buffer, lenp: Buffer): number;
  setns(fd: number, nstype: number): number;
  close(fd: number): number;
  shutdown(fd: number, how: number): number;
  sendmsg(fd: number, msg: Ptr, flags: number): number;
  recvmsg(fd: number, msg: Ptr, flags: number): number;
}

let loaded: Libc | undefined;
let loadError: string | undefined;

/** libc through koffi, or a SysError (ENOSYS) naming why native calls are unavailable here. */
export function libc(): Libc {
  if (loaded) return loaded;
  if (loadError === undefined) {
    try {
      loaded = load();
      return loaded;
    } catch (err) {
      loadError = (err as Error).message;
    }
  }
  throw new SysError("load native calls", "native", os.constants.errno.ENOSYS, `(${loadError})`);
}

function load(): Libc {
  if (process.platform !== "linux") throw new Error(`platform ${process.platform} is not Linux`);
  // msghdr/cmsghdr/sockaddr layouts in sys/ are written for 64-bit little-endian Linux.
  if (process.arch !== "x64" && process.arch !== "arm64") throw new Error(`arch ${process.arch} is not x64/arm64`);
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const lib = koffi.load("libc.so.6");
  const f = (decl: string) => lib.func(decl) as (...args: unknown[]) => number;
  const socket = f("int socket(int, int, int)");
  const bind = f("int bind(int, void *, uint32_t)");
  const listen = f("int listen(int, int)");
  const connect = f("int connect(int, void *, uint32_t)");
  const accept4 = f("int accept4(int, void *, void *, int)");
  const setsockopt = f("int setsockopt(int, int, int, void *, uint32_t)");
  const getsockopt = f("int getsockopt(int, int, int, void *, void *)");
  const getsockname = f("int getsockname(int, void *, void *)");
  const setns = f("int setns(int, int)");
  const close = f("int close(int)");
  const shutdown = f("int shutdown(int, int)");
  const sendmsg = f("long sendmsg(int, void *, int)");
  const recvmsg = f("long recvmsg(int, void *, int)");
  return {
    koffi,
    socket: (d, t, p) => socket(d, t, p),
    bind: (fd, a, l) => bind(fd, a, l),
    listen: (fd, b) => listen(fd, b),
    connect: (fd, a, l) => connect(fd, a, l),
    accept4: (fd, a, l, fl) => accept4(fd, a, l, fl),
    setsockopt: (fd, lv, n, v, l) => setsockopt(fd, lv, n, v, l),
    getsockopt: (fd, lv, n, v, l) => getsockopt(fd, lv, n, v, l),
    getsockname: (fd, a, l) => getsockname(fd, a, l),
    setns: (fd, t) => setns(fd, t),
    close: (fd) => close(fd),
    shutdown: (fd, h) => shutdown(fd, h),
    sendmsg: (fd, m, fl) => sendmsg(fd, m, fl),
    recvmsg: (fd, m, fl) => recvmsg(fd, m, fl),
  };
}

/** True when native calls can be made here (koffi loaded, Linux x64/arm64). */
export function nativeAvailable(): boolean {
  try {
    libc();
    return true;
  } catch {
    return false;
  }
}

/** Throws a SysError for a negative return, reading errno right away (before any other call can change it). */
export function check(ret: number, call: string, op: SysOp, detail?: string): number {
  if (ret >= 0) return ret;
  const errno = libc().koffi.errno();
  throw new SysError(call, op, errno, detail);
}

/** close(2) that never throws (cleanup paths). */
export function closeQuietly(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

// Linux constants (x86_64 and arm64 share them).
export const C = {
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_SEQPACKET: 5,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SOL_IP: 0,
  SOL_IPV6: 41,
  SO_REUSEADDR: 2,
  SO_TYPE: 3,
  SO_ERROR: 4,
  SO_REUSEPORT: 15,
  SO_MARK: 36,
  IP_TRANSPARENT: 19,
  IPV6_TRANSPARENT: 75,
  IPV6_V6ONLY: 26,
  SO_ORIGINAL_DST: 80,
  IP6T_SO_ORIGINAL_DST: 80,
  SCM_RIGHTS: 1,
  MSG_CTRUNC: 0x8,
  MSG_TRUNC: 0x20,
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
  MSG_CMSG_CLOEXEC: 0x40000000,
  CLONE_NEWNET: 0x40000000,
  SHUT_RDWR: 2,
} as const;
