// AF_UNIX SOCK_SEQPACKET sockets with SCM_RIGHTS (ZDS: the istio-cni agent hands pod netns fds to the proxy).
//
// Non-blocking integration: every fd is O_NONBLOCK and every call returns at once (EAGAIN → "nothing now").
// Readiness comes from libuv's own epoll through koffi's uv_poll_t wrapper (koffi.node.poll, koffi ≥ 2.15), so
// the event loop never blocks and no thread is held. Chosen over koffi's async calls (`fn.async`), which run on
// libuv's 4-thread pool shared with fs, dns.lookup and crypto: a recvmsg blocking there for a connection's whole
// life would take one of the four for good. Where koffi.node.poll is missing, a 20 ms timer polls instead.

import os from "node:os";
import { C, check, closeQuietly, libc } from "./libc.js";
import { SysError, type SysOp } from "./errors.js";
import { encodeUnix } from "./sockaddr.js";

const MSGHDR = 56; // struct msghdr on LP64 Linux
const IOVEC = 16;
const CMSGHDR = 16; // cmsg_len (size_t), cmsg_level, cmsg_type
const align8 = (n: number) => (n + 7) & ~7;
const cmsgSpace = (n: number) => CMSGHDR + align8(n);

/** One datagram: its bytes, the fds it carried (now owned by the receiver), and truncation flags. */
export interface Datagram {
  data: Buffer;
  fds: number[];
  /** MSG_TRUNC: the datagram was larger than the receive buffer (the rest is lost). */
  truncated: boolean;
  /** MSG_CTRUNC: ancillary data did not fit (the kernel closed the fds that did not fit). */
  controlTruncated: boolean;
}

export interface Readiness {
  /** Stop watching for now (level-triggered: pause while a datagram is being handled). */
  pause(): void;
  resume(): void;
  close(): void;
}

type KoffiPoll = {
  start(
    opts: { readable?: boolean; disconnect?: boolean },
    cb: (status: number, ev: { readable: boolean; disconnect: boolean }) => void,
  ): void;
  stop(): void;
  close(): void;
};

/**
 * Calls `onReady` whenever `fd` is readable or hung up (status < 0: an error from the poller). `timer` forces
 * the fallback (tests).
 */
export function watchReadable(
  fd: number,
  onReady: (status: number) => void,
  opts: { timer?: boolean } = {},
): Readiness {
  const k = libc().koffi as unknown as {
    node?: { poll?: (fd: number, opts: object, cb: (status: number) => void) => KoffiPoll };
  };
  if (typeof k.node?.poll === "function" && !opts.timer) {
    const cb = (status: number) => onReady(status);
    let handle: KoffiPoll | null = k.node.poll(fd, { readable: true, disconnect: true }, cb);
    let running = true;
    return {
      pause() {
        if (handle && running) handle.stop();
        running = false;
      },
      resume() {
        if (handle && !running) handle.start({ readable: true, disconnect: true }, cb);
        running = true;
      },
      close() {
        handle?.close();
        handle = null;
      },
    };
  }
  // Fallback: a spurious "ready" is harmless (the readers treat EAGAIN as "nothing now").
  let paused = false;
  let timer: NodeJS.Timeout | null = setInterval(() => {
    if (!paused) onReady(0);
  }, 20);
  return {
    pause: () => void (paused = true),
    resume: () => void (paused = false),
    close() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

/** A connected SEQPACKET socket. Owns its fd; `close()` is idempotent. */
export class SeqpacketSocket {
  private closed = false;
  private readonly recvBlock: unknown;
  private readonly recvView: Buffer;
  private readonly recvBase: bigint;

  /**
   * @param maxData receive buffer (ztunnel reads ZDS into 1 KiB)
   * @param maxFds fds one datagram may carry before MSG_CTRUNC
   */
  constructor(
    readonly fd: number,
    readonly maxData = 1024,
    readonly maxFds = 4,
  ) {
    const k = libc().koffi;
    const size = MSGHDR + IOVEC + maxData + cmsgSpace(4 * maxFds);
    this.recvBlock = k.alloc("uint8_t", size);
    this.recvView = Buffer.from(k.view(this.recvBlock, size));
    this.recvBase = k.address(this.recvBlock);
  }

  /** Connects (non-blocking) to a listening SEQPACKET socket at `path`. */
  static connect(path: string, opts: { maxData?: number; maxFds?: number } = {}): SeqpacketSocket {
    const { addr, len } = encodeUnix(path);
    const fd = newSeqpacket("unix-connect");
    try {
      check(libc().connect(fd, addr, len), `connect(${path})`, "unix-connect");
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    return new SeqpacketSocket(fd, opts.maxData, opts.maxFds);
  }

  /** Sends one datagram, with `fds` as SCM_RIGHTS (the fds stay open here: the receiver gets duplicates). */
  send(data: Uint8Array, fds: number[] = []): void {
    this.assertOpen("sendmsg");
    const k = libc().koffi;
    const ctl = fds.length > 0 ? cmsgSpace(4 * fds.length) : 0;
    const size = MSGHDR + IOVEC + Math.max(data.length, 1) + ctl;
    const block = k.alloc("uint8_t", size);
    try {
      const v = Buffer.from(k.view(block, size));
      v.fill(0);
      const base = k.address(block);
      const iov = MSGHDR;
      const dataOff = iov + IOVEC;
      const ctlOff = dataOff + Math.max(data.length, 1);
      v.set(data, dataOff);
      v.writeBigUInt64LE(base + BigInt(iov), 16); // msg_iov
      v.writeBigUInt64LE(1n, 24); // msg_iovlen
      v.writeBigUInt64LE(base + BigInt(dataOff), iov); // iov_base
      v.writeBigUInt64LE(BigInt(data.length), iov + 8); // iov_len
      if (ctl > 0) {
        v.writeBigUInt64LE(base + BigInt(ctlOff), 32); // msg_control
        v.writeBigUInt64LE(BigInt(ctl), 40); // msg_controllen
        v.writeBigUInt64LE(BigInt(CMSGHDR + 4 * fds.length), ctlOff); // cmsg_len
        v.writeInt32LE(C.SOL_SOCKET, ctlOff + 8);
        v.writeInt32LE(C.SCM_RIGHTS, ctlOff + 12);
        fds.forEach((fd, i) => v.writeInt32LE(fd, ctlOff + CMSGHDR + 4 * i));
      }
      const n = check(
        libc().sendmsg(this.fd, block, C.MSG_DONTWAIT | C.MSG_NOSIGNAL),
        `sendmsg(${this.fd}${fds.length ? `, ${fds.length} fd(s)` : ""})`,
        "sendmsg",
      );
      if (n !== data.length)
        throw new SysError(
          `sendmsg(${this.fd})`,
          "sendmsg",
          os.constants.errno.EMSGSIZE,
          `(sent ${n} of ${data.length})`,
        );
    } finally {
      k.free(block);
    }
  }

  /**
   * Receives one datagram without blocking: null when none is waiting (EAGAIN), "eof" when the peer closed.
   * Received fds are CLOEXEC and owned by the caller (close them when a truncated datagram is refused).
   */
  recv(): Datagram | null | "eof" {
    this.assertOpen("recvmsg");
    const v = this.recvView;
    const base = this.recvBase;
    const iov = MSGHDR;
    const dataOff = iov + IOVEC;
    const ctlOff = dataOff + this.maxData;
    const ctl = cmsgSpace(4 * this.maxFds);
    v.fill(0, 0, MSGHDR + IOVEC);
    v.fill(0, ctlOff, ctlOff + ctl);
    v.writeBigUInt64LE(base + BigInt(iov), 16);
    v.writeBigUInt64LE(1n, 24);
    v.writeBigUInt64LE(base + BigInt(dataOff), iov);
    v.writeBigUInt64LE(BigInt(this.maxData), iov + 8);
    v.writeBigUInt64LE(base + BigInt(ctlOff), 32);
    v.writeBigUInt64LE(BigInt(ctl), 40);
    const c = libc();
    const n = c.recvmsg(this.fd, this.recvBlock, C.MSG_DONTWAIT | C.MSG_CMSG_CLOEXEC);
    if (n < 0) {
      const errno = c.koffi.errno();
      if (errno === os.constants.errno.EAGAIN || errno === os.constants.errno.EINTR) return null;
      throw new SysError(`recvmsg(${this.fd})`, "recvmsg", errno);
    }
    const flags = v.readInt32LE(48);
    const fds = parseRights(v, ctlOff, Number(v.readBigUInt64LE(40)));
    // A zero-byte read with nothing attached is the peer's close (ZDS never sends empty datagrams).
    if (n === 0 && fds.length === 0 && (flags & C.MSG_TRUNC) === 0) return "eof";
    return {
      data: Buffer.from(v.subarray(dataOff, dataOff + Math.min(n, this.maxData))),
      fds,
      truncated: (flags & C.MSG_TRUNC) !== 0,
      controlTruncated: (flags & C.MSG_CTRUNC) !== 0,
    };
  }

  /** Watches this socket for readability (see watchReadable). */
  watch(onReady: (status: number) => void, opts: { timer?: boolean } = {}): Readiness {
    return watchReadable(this.fd, onReady, opts);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** shutdown + close; frees the receive block. Stop any watcher first (libuv must not poll a closed fd). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const c = libc();
    c.shutdown(this.fd, C.SHUT_RDWR);
    c.close(this.fd);
    c.koffi.free(this.recvBlock);
  }

  private assertOpen(call: string): void {
    if (this.closed) throw new SysError(`${call}(closed socket)`, "sendmsg", os.constants.errno.EBADF);
  }
}

/** A listening SEQPACKET socket (the istio-cni agent's side; used by the test agent). */
export class SeqpacketServer {
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** socket+bind+listen at `path` (which must not exist). */
  static listen(path: string, backlog = 16): SeqpacketServer {
    const { addr, len } = encodeUnix(path);
    const fd = newSeqpacket("unix-bind");
    try {
      check(libc().bind(fd, addr, len), `bind(${path})`, "unix-bind");
      check(libc().listen(fd, backlog), `listen(${path})`, "unix-bind");
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    return new SeqpacketServer(fd, path);
  }

  /** Accepts one pending connection without blocking (null when none). */
  accept(opts: { maxData?: number; maxFds?: number } = {}): SeqpacketSocket | null {
    const c = libc();
    const fd = c.accept4(this.fd, null, null, C.SOCK_NONBLOCK | C.SOCK_CLOEXEC);
    if (fd < 0) {
      const errno = c.koffi.errno();
      if (errno === os.constants.errno.EAGAIN || errno === os.constants.errno.EINTR) return null;
      throw new SysError(`accept(${this.path})`, "accept", errno);
    }
    return new SeqpacketSocket(fd, opts.maxData, opts.maxFds);
  }

  watch(onReady: (status: number) => void): Readiness {
    return watchReadable(this.fd, onReady);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().close(this.fd);
  }
}

function newSeqpacket(op: SysOp): number {
  return check(
    libc().socket(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0),
    "socket(AF_UNIX, SOCK_SEQPACKET)",
    op,
  );
}

/** The fds of every SCM_RIGHTS message in a control buffer of `len` bytes at `off`. */
function parseRights(v: Buffer, off: number, len: number): number[] {
  const fds: number[] = [];
  let p = off;
  const end = off + len;
  while (p + CMSGHDR <= end) {
    const cmsgLen = Number(v.readBigUInt64LE(p));
    if (cmsgLen < CMSGHDR || p + cmsgLen > end) break;
    if (v.readInt32LE(p + 8) === C.SOL_SOCKET && v.readInt32LE(p + 12) === C.SCM_RIGHTS) {
      for (let q = p + CMSGHDR; q + 4 <= p + cmsgLen; q += 4) fds.push(v.readInt32LE(q));
    }
    p += align8(cmsgLen);
  }
  return fds;
}
