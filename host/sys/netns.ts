// Network namespaces: open one by name, path or pid, and run a synchronous function inside it.
//
// setns(CLONE_NEWNET) moves only the calling thread. Node's JS runs on the main thread, so `inNetns` switches the
// main thread, runs `fn` (which must be synchronous and create its sockets via FFI: libuv creates its own sockets
// later, after we switched back), and switches back before any other JS can run.

import fs from "node:fs";
import { C, check, libc } from "./libc.js";
import { SysError, errnoOf } from "./errors.js";

/** /var/run/netns/NAME for a bare name (what `ip netns add NAME` creates), a path as given, or /proc/PID/ns/net. */
export function netnsPath(ref: string | number): string {
  if (typeof ref === "number") return `/proc/${ref}/ns/net`;
  return ref.includes("/") ? ref : `/var/run/netns/${ref}`;
}

/** Opens a network namespace (O_RDONLY|O_CLOEXEC) and checks it is one; the caller owns (and closes) the fd. */
export function openNetns(ref: string | number): number {
  const path = netnsPath(ref);
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (err) {
    throw new SysError(`open(${path})`, "open-netns", errnoOf(err));
  }
  try {
    assertNetns(fd);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

let home: number | undefined;
let homeIno: number | undefined;

/** The fd of the namespace this process started in (opened once, kept for switching back). */
function homeNetns(): number {
  if (home === undefined) {
    home = fs.openSync("/proc/thread-self/ns/net", "r");
    homeIno = fs.fstatSync(home).ino;
  }
  return home;
}

/** The nsfs inode identifying a namespace fd (two fds of the same namespace have the same inode). */
export function netnsId(fd: number): number {
  try {
    return fs.fstatSync(fd).ino;
  } catch (err) {
    throw new SysError(`fstat(${fd})`, "setns", errnoOf(err));
  }
}

/** True when `fd` is the namespace this process runs in. */
export function isHomeNetns(fd: number): boolean {
  homeNetns();
  return netnsId(fd) === homeIno;
}

/**
 * Checks that `fd` is an open network-namespace descriptor without entering it for long: setns into it and
 * straight back. Throws SysError (EBADF: not open; EINVAL: not a network namespace; EPERM: not permitted).
 */
export function assertNetns(fd: number): void {
  inNetns(fd, () => undefined);
}

/**
 * Runs `fn` with the calling thread inside the namespace `fd`, then returns to the home namespace (also when `fn`
 * throws). `fn` must be synchronous. Not re-entrant across namespaces: nested calls go home at the end.
 */
export function inNetns<T>(fd: number, fn: () => T): T {
  const back = homeNetns();
  const c = libc();
  check(c.setns(fd, C.CLONE_NEWNET), `setns(${fd}, CLONE_NEWNET)`, "setns");
  try {
    return fn();
  } finally {
    // Switching back to a namespace we opened ourselves cannot fail short of the process losing CAP_SYS_ADMIN
    // meanwhile; if it ever does, staying in a pod's namespace would route every later socket wrongly: abort loud.
    if (c.setns(back, C.CLONE_NEWNET) < 0) {
      const errno = c.koffi.errno();
      process.emitWarning(new SysError("setns(home, CLONE_NEWNET)", "setns", errno).message);
      process.abort();
    }
  }
}
