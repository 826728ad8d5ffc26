// One pod's listener set, created inside the pod's network namespace: 15001 (outbound capture), 15006 (inbound
// plaintext capture), 15008 (HBONE), plus a hook for the DNS proxy (15053, its own room). Every socket is marked
// (so the pod's redirect rules skip it) and SO_REUSEPORT (an old and a new proxy can overlap during a restart),
// made by FFI while the thread is in the namespace and then adopted by libuv. A bind that fails is retried every
// 5 s until close(); close() also destroys the connections the listeners accepted.

import net from "node:net";
import { logger, type Logger } from "../log.js";
import {
  PROXY_MARK,
  adoptServer,
  createListenSocketIn,
  fdOf,
  getMark,
  originalDestination,
  type FfiSocket,
  type OriginalDestination,
} from "../sys/socket.js";
import { isSysError } from "../sys/errors.js";

export type PodListenerKind = "outbound" | "inbound-plaintext" | "hbone";

export const POD_PORTS: Record<PodListenerKind, number> = { outbound: 15001, "inbound-plaintext": 15006, hbone: 15008 };

/** Handles one accepted connection; it owns the socket from here (an 'error' logger is already attached). */
export type ConnectionHandler = (socket: net.Socket, kind: PodListenerKind) => void;

/** Something the pod runs besides its TCP listeners (the DNS proxy): started in the pod's namespace, closed with it. */
export interface PodExtra {
  close(): Promise<void> | void;
}

export interface PodListenersOptions {
  /** The pod's name for logs (uid or ns/name). */
  pod: string;
  netnsFd: number;
  /** Which listeners and their handlers; a kind left out is not opened. */
  handlers: Partial<Record<PodListenerKind, ConnectionHandler>>;
  ports?: Partial<Record<PodListenerKind, number>>;
  /** Wildcard to bind; default "::" (IPv4 too), falling back to "0.0.0.0" where the pod has no IPv6. */
  host?: string;
  mark?: number;
  retryMs?: number;
  /** DNS hook (helper room): called once the TCP listeners are tried; its result is closed with the pod. */
  extras?: (netnsFd: number) => Promise<PodExtra> | PodExtra;
  log?: Logger;
}

export interface ListenerStatus {
  kind: PodListenerKind;
  port: number;
  /** Bound address while listening. */
  address?: net.AddressInfo;
  /** The last bind failure while retrying. */
  error?: string;
  /** SO_MARK read back from the listening socket. */
  mark?: number;
}

interface Slot {
  kind: PodListenerKind;
  port: number;
  handler: ConnectionHandler;
  server: net.Server | null;
  error?: string;
  timer: NodeJS.Timeout | null;
}

export class PodListeners {
  private readonly slots: Slot[];
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;
  private readonly retryMs: number;
  private extra: PodExtra | null = null;
  private closed = false;

  private constructor(private readonly o: PodListenersOptions) {
    this.log = (o.log ?? logger("inpod")).child("listeners");
    this.retryMs = o.retryMs ?? 5_000;
    this.slots = (Object.keys(o.handlers) as PodListenerKind[]).map((kind) => ({
      kind,
      port: o.ports?.[kind] ?? POD_PORTS[kind],
      handler: o.handlers[kind] as ConnectionHandler,
      server: null,
      timer: null,
    }));
  }

  /**
   * Opens the listeners inside the pod's namespace. Rejects only when the namespace cannot be entered (a
   * SysError from setns: the pod is unusable); a bind failure is kept in status() and retried.
   */
  static async open(o: PodListenersOptions): Promise<PodListeners> {
    const p = new PodListeners(o);
    try {
      for (const slot of p.slots) await p.bind(slot, true);
      if (o.extras) p.extra = await o.extras(o.netnsFd);
    } catch (err) {
      await p.close();
      throw err;
    }
    return p;
  }

  status(): ListenerStatus[] {
    return this.slots.map((s) => ({
      kind: s.kind,
      port: s.port,
      address: (s.server?.address() as net.AddressInfo | null) ?? undefined,
      error: s.error,
      mark: s.server ? getMark(fdOf(s.server)) : undefined,
    }));
  }

  /** Listening on every requested port? */
  get complete(): boolean {
    return this.slots.every((s) => s.server !== null);
  }

  /** Stops listening, destroys accepted connections, closes the extras; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const waits: Promise<void>[] = [];
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      const server = s.server;
      s.server = null;
      if (server) waits.push(new Promise<void>((r) => server.close(() => r())));
    }
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    const extra = this.extra;
    this.extra = null;
    if (extra) waits.push(Promise.resolve(extra.close()));
    await Promise.all(waits);
  }

  private async bind(slot: Slot, first: boolean): Promise<void> {
    slot.timer = null;
    if (this.closed) return;
    let fd: number;
    try {
      fd = this.createSocket(slot.port);
    } catch (err) {
      // setns refused: the namespace is gone or not ours; retrying cannot help.
      if (isSysError(err) && err.call.startsWith("setns")) throw err;
      slot.error = (err as Error).message;
      if (first)
        this.log.warn("pod listener bind failed, retrying", {
          pod: this.o.pod,
          kind: slot.kind,
          error: err,
          retryMs: this.retryMs,
        });
      slot.timer = setTimeout(
        () => void this.bind(slot, false).catch((e: unknown) => this.retryFailed(slot, e)),
        this.retryMs,
      );
      return;
    }
    const server = net.createServer({ pauseOnConnect: false }, (sock) => this.accept(slot, sock));
    server.on("error", (err) => this.log.warn("pod listener error", { pod: this.o.pod, kind: slot.kind, error: err }));
    await adoptServer(server, fd);
    if (this.closed) {
      server.close();
      return;
    }
    slot.server = server;
    slot.error = undefined;
    if (!first) this.log.info("pod listener bound after retry", { pod: this.o.pod, kind: slot.kind, port: slot.port });
  }

  private retryFailed(slot: Slot, err: unknown): void {
    slot.error = (err as Error).message;
    this.log.warn("pod listener cannot be retried: namespace unusable", {
      pod: this.o.pod,
      kind: slot.kind,
      error: err,
    });
  }

  private createSocket(port: number): number {
    const opts = { port, mark: this.o.mark ?? PROXY_MARK, reusePort: true, transparent: true };
    const host = this.o.host ?? "::";
    let made: FfiSocket;
    try {
      made = createListenSocketIn(this.o.netnsFd, { ...opts, host });
    } catch (err) {
      if (host !== "::" || !isSysError(err, "EAFNOSUPPORT")) throw err;
      made = createListenSocketIn(this.o.netnsFd, { ...opts, host: "0.0.0.0" });
    }
    // IP_TRANSPARENT is best effort (only the TPROXY case needs it).
    for (const w of made.warnings) this.log.debug("pod listener option not set", { pod: this.o.pod, port, warning: w });
    return made.fd;
  }

  private accept(slot: Slot, sock: net.Socket): void {
    sock.on("error", (err) => this.log.debug("pod connection error", { pod: this.o.pod, kind: slot.kind, error: err }));
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.once("close", () => this.sockets.delete(sock));
    sock.setNoDelay(true);
    sock.setKeepAlive(true, 180_000);
    try {
      slot.handler(sock, slot.kind);
    } catch (err) {
      this.log.error("pod connection handler threw", { pod: this.o.pod, kind: slot.kind, error: err });
      sock.destroy();
    }
  }
}

/** The destination a connection captured on 15001 was sent to (SO_ORIGINAL_DST, IPv6, else the local address). */
export function outboundDestination(socket: net.Socket): OriginalDestination {
  return originalDestination(socket);
}
