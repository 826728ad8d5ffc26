// SysError: a failed native call, named by the call and the capability or kernel feature it needed. Pure (no FFI),
// so the mapping is testable anywhere.

import os from "node:os";

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(os.constants.errno))
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);

/** errno number → its symbolic name ("EPERM"), or "E<n>" when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** The errno of a Node fs/net error (positive), EIO when it carries none. */
export function errnoOf(err: unknown): number {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.errno === "number" && e.errno !== 0) return Math.abs(e.errno);
  const byName = e?.code ? (os.constants.errno as Record<string, number>)[e.code] : undefined;
  return byName ?? os.constants.errno.EIO;
}

/** What a call was doing, so the hint can name the capability it needs. */
export type SysOp =
  | "setns"
  | "open-netns"
  | "socket"
  | "bind"
  | "listen"
  | "connect"
  | "accept"
  | "so-mark"
  | "ip-transparent"
  | "so-reuseport"
  | "original-dst"
  | "sockopt"
  | "sendmsg"
  | "recvmsg"
  | "unix-connect"
  | "unix-bind"
  | "native";

const ROOT = "(run as root or grant the capability)";

/** The hint for (op, errno): which capability or kernel feature is missing, or what the caller got wrong. */
export function hintFor(op: SysOp, code: string): string | undefined {
  switch (code) {
    case "EPERM":
    case "EACCES":
      if (op === "setns") return `needs CAP_SYS_ADMIN to enter a network namespace ${ROOT}`;
      if (op === "open-netns") return "the namespace file is not readable by this user (run as root)";
      if (op === "ip-transparent") return `needs CAP_NET_ADMIN or CAP_NET_RAW ${ROOT}`;
      if (op === "bind" && code === "EACCES") return `ports below 1024 need CAP_NET_BIND_SERVICE ${ROOT}`;
      if (op === "unix-connect" || op === "unix-bind") return "no permission on the socket path or its directory";
      return `needs CAP_NET_ADMIN ${ROOT}`;
    case "EINVAL":
      if (op === "setns") return "the descriptor is not a network namespace";
      return undefined;
    case "EBADF":
    case "ENOTSOCK":
      return op === "setns" ? "not an open namespace descriptor" : "not an open socket descriptor";
    case "ENOENT":
      if (op === "original-dst") return "no NAT conntrack entry: the connection was not redirected";
      if (op === "open-netns") return "no such network namespace";
      if (op === "unix-connect") return "no agent is listening on that path";
      return undefined;
    case "ECONNREFUSED":
      return op === "unix-connect" ? "no agent is listening on that path" : undefined;
    case "ENOPROTOOPT":
      if (op === "original-dst") return "the kernel has no nf_conntrack / NAT for this address family";
      if (op === "so-reuseport") return "the kernel has no SO_REUSEPORT";
      return "the kernel does not support this socket option";
    case "EAFNOSUPPORT":
      return "the kernel has no support for this address family (IPv6 disabled?)";
    case "EPROTONOSUPPORT":
    case "ESOCKTNOSUPPORT":
      return op === "unix-connect" || op === "unix-bind" || op === "socket"
        ? "the kernel does not support this socket type (AF_UNIX SOCK_SEQPACKET needs Linux)"
        : undefined;
    case "EPROTOTYPE":
      return op === "unix-connect" ? "the socket at that path is not SOCK_SEQPACKET" : undefined;
    case "EADDRINUSE":
      return "the address is already in use";
    case "EADDRNOTAVAIL":
      return "the address is not assigned to an interface in this namespace";
    case "EMFILE":
    case "ENFILE":
      return "too many open files (raise the fd limit)";
    case "ENOSYS":
      return "native calls need Linux (x64 or arm64) and the koffi package";
    default:
      return undefined;
  }
}

/** A native call that failed: `code` is the errno name, `call` the call as written ("setsockopt(SO_MARK)"). */
export class SysError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly call: string;
  readonly hint: string | undefined;

  constructor(call: string, op: SysOp, errno: number, detail?: string) {
    const code = errnoName(errno);
    const hint = hintFor(op, code);
    const what = detail ? `${call} ${detail}` : call;
    super(`${what}: ${code}${hint ? ` — ${hint}` : ""}`);
    this.name = "SysError";
    this.code = code;
    this.errno = errno;
    this.call = call;
    this.hint = hint;
  }
}

/** Narrowing helper for callers that branch on the errno name. */
export function isSysError(err: unknown, code?: string): err is SysError {
  return err instanceof SysError && (code === undefined || err.code === code);
}
