// The in-pod client: the proxy's side of ZDS with the istio-cni node agent, as ztunnel speaks it.
//
// Connect to the agent's SOCK_SEQPACKET socket (retrying, backoff capped at 15 s), send ZdsHello, then answer
// every datagram with one Ack, one at a time: the snapshot (add with the pod's netns fd in SCM_RIGHTS, keep,
// snapshot_sent → drop pods neither added nor kept on this connection), then live add/del. What a pod *is*
// (its listeners) belongs to the owner, through onAdd/onDel; this room only keeps the protocol and the fds.
//
// The client owns every netns fd it received: it is valid from onAdd until onDel returns, then closed.

import { EventEmitter } from "node:events";
import { logger, type Logger } from "../log.js";
import { assertNetns, netnsId } from "../sys/netns.js";
import { SeqpacketSocket, type Datagram, type Readiness } from "../sys/seqpacket.js";
import { closeQuietly } from "../sys/libc.js";
import { decodeRequest, encodeAck, encodeHello, ZDS_MAX_MESSAGE, type WorkloadInfo } from "./zds.js";

export const DEFAULT_INPOD_UDS = "/var/run/ztunnel/ztunnel.sock";

export interface InpodPod {
  uid: string;
  info: WorkloadInfo | undefined;
  netnsFd: number;
  /** nsfs inode: the same pod re-sent with a new fd of the same namespace is kept, not rebuilt. */
  netnsId: number;
}

export interface InpodClientOptions {
  /** The agent's socket; default env INPOD_UDS, else /var/run/ztunnel/ztunnel.sock. */
  path?: string;
  /** Builds the pod's proxy inside `netnsFd`; a rejection becomes the Ack's error (the agent retries). */
  onAdd(uid: string, info: WorkloadInfo | undefined, netnsFd: number): Promise<void>;
  /** Tears the pod's proxy down (listeners, tunnels); the netns fd is closed after it settles. */
  onDel(uid: string): Promise<void> | void;
  /** Reconnect backoff: first delay and cap (ms). */
  backoffMs?: { initial: number; max: number };
  log?: Logger;
}

/**
 * Events: "connected", "disconnected" (reason: string), "ready" (after each connection's snapshot), "ack" (the
 * request kind and the error string sent, for tests and metrics).
 */
export class InpodClient extends EventEmitter {
  readonly path: string;
  private readonly log: Logger;
  private readonly backoff: { initial: number; max: number };
  private readonly podsByUid = new Map<string, InpodPod>();
  private socket: SeqpacketSocket | null = null;
  private watcher: Readiness | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private delay: number;
  private stopped = true;
  private busy = false;
  private snapshotDone = false;
  private seen = new Set<string>();
  private readyOnce: Promise<void>;
  private resolveReady!: () => void;
  private draining: Promise<void> = Promise.resolve();

  constructor(private readonly opts: InpodClientOptions) {
    super();
    this.path = opts.path ?? process.env.INPOD_UDS ?? DEFAULT_INPOD_UDS;
    this.log = opts.log ?? logger("inpod");
    this.backoff = opts.backoffMs ?? { initial: 100, max: 15_000 };
    this.delay = this.backoff.initial;
    this.readyOnce = new Promise((r) => (this.resolveReady = r));
  }

  /** Resolves after the first complete snapshot (the proxy's readiness in in-pod mode). */
  get ready(): Promise<void> {
    return this.readyOnce;
  }

  /** Connected and the current connection's snapshot is complete. */
  get isReady(): boolean {
    return this.socket !== null && this.snapshotDone;
  }

  get connected(): boolean {
    return this.socket !== null;
  }

  pods(): InpodPod[] {
    return [...this.podsByUid.values()];
  }

  start(): this {
    if (!this.stopped) return this;
    this.stopped = false;
    this.connect();
    return this;
  }

  /** Stops: disconnects, tears every pod down (onDel) and closes their fds. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.disconnect("closed");
    await this.draining;
    for (const uid of [...this.podsByUid.keys()]) await this.drop(uid);
  }

  private connect(): void {
    this.retryTimer = null;
    if (this.stopped) return;
    let socket: SeqpacketSocket;
    try {
      socket = SeqpacketSocket.connect(this.path, { maxData: ZDS_MAX_MESSAGE, maxFds: 1 });
    } catch (err) {
      this.log.debug("connect to the CNI agent failed, retrying", { path: this.path, error: err, retryMs: this.delay });
      this.scheduleRetry();
      return;
    }
    try {
      socket.send(encodeHello());
    } catch (err) {
      socket.close();
      this.log.warn("hello to the CNI agent failed, retrying", { path: this.path, error: err });
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    this.snapshotDone = false;
    this.seen = new Set();
    this.delay = this.backoff.initial;
    this.watcher = socket.watch(() => this.onReadable());
    this.log.info("connected to the CNI agent", { path: this.path });
    this.emit("connected");
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, this.backoff.max);
  }

  private disconnect(reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    this.watcher?.close();
    this.watcher = null;
    this.socket = null;
    this.snapshotDone = false;
    socket.close();
    this.log.info("disconnected from the CNI agent", { path: this.path, reason });
    this.emit("disconnected", reason);
    this.scheduleRetry();
  }

  /** Level-triggered readiness: pause while one datagram is handled (the agent waits for our ack anyway). */
  private onReadable(): void {
    if (this.busy) return;
    this.busy = true;
    this.watcher?.pause();
    this.draining = this.drain()
      .catch((err: unknown) => this.disconnect(`error: ${(err as Error).message}`))
      .finally(() => {
        this.busy = false;
        this.watcher?.resume();
      });
  }

  private async drain(): Promise<void> {
    for (;;) {
      const socket = this.socket;
      if (!socket) return;
      const d = socket.recv();
      if (d === null) return;
      if (d === "eof") {
        this.disconnect("the agent closed the connection");
        return;
      }
      const error = await this.handle(d);
      if (this.socket !== socket) return; // closed meanwhile: no one to answer
      socket.send(encodeAck(error));
    }
  }

  /** One request → the Ack's error string ("" = success). Never throws. */
  private async handle(d: Datagram): Promise<string> {
    const closeFds = () => d.fds.forEach(closeQuietly);
    const ack = (kind: string, error: string) => {
      if (error) this.log.warn("refused a CNI agent request", { kind, error });
      this.emit("ack", kind, error);
      return error;
    };
    if (d.truncated) {
      closeFds();
      return ack("truncated", `message larger than ${ZDS_MAX_MESSAGE} bytes (MSG_TRUNC)`);
    }
    if (d.controlTruncated) {
      closeFds();
      return ack("truncated", "ancillary data truncated (MSG_CTRUNC): more than one fd attached");
    }
    const decoded = decodeRequest(d.data);
    if (!decoded.ok) {
      closeFds();
      return ack("invalid", decoded.error);
    }
    const req = decoded.request;
    switch (req.$case) {
      case "add":
        return ack("add", await this.add(req.add.uid, req.add.workloadInfo, d.fds));
      case "keep": {
        closeFds();
        if (this.snapshotDone) return ack("keep", "keep is only valid before snapshot_sent");
        if (!this.podsByUid.has(req.keep.uid))
          return ack("keep", `keep of an unknown workload ${JSON.stringify(req.keep.uid)}`);
        this.seen.add(req.keep.uid);
        return ack("keep", "");
      }
      case "del": {
        closeFds();
        return ack("del", await this.drop(req.del.uid));
      }
      case "snapshotSent": {
        closeFds();
        const errors: string[] = [];
        for (const uid of [...this.podsByUid.keys()]) {
          if (this.seen.has(uid)) continue;
          const e = await this.drop(uid);
          if (e) errors.push(e);
        }
        this.snapshotDone = true;
        this.resolveReady();
        this.emit("ready");
        return ack("snapshot_sent", errors.join("; "));
      }
    }
  }

  private async add(uid: string, info: WorkloadInfo | undefined, fds: number[]): Promise<string> {
    if (fds.length !== 1) {
      fds.forEach(closeQuietly);
      return `add ${JSON.stringify(uid)}: expected exactly one netns fd in SCM_RIGHTS, got ${fds.length}`;
    }
    const fd = fds[0];
    if (!uid) {
      closeQuietly(fd);
      return "add without a uid";
    }
    let id: number;
    try {
      assertNetns(fd);
      id = netnsId(fd);
    } catch (err) {
      closeQuietly(fd);
      return `add ${JSON.stringify(uid)}: cannot enter the pod's network namespace: ${(err as Error).message}`;
    }
    const existing = this.podsByUid.get(uid);
    if (existing && existing.netnsId === id) {
      // Re-sent (snapshot after a reconnect): same namespace, keep what runs.
      closeQuietly(fd);
      this.seen.add(uid);
      return "";
    }
    if (existing) await this.drop(uid);
    try {
      await this.opts.onAdd(uid, info, fd);
    } catch (err) {
      closeQuietly(fd);
      return `add ${JSON.stringify(uid)}: ${(err as Error).message}`;
    }
    this.podsByUid.set(uid, { uid, info, netnsFd: fd, netnsId: id });
    this.seen.add(uid);
    return "";
  }

  /** Tears a pod down and forgets it (an unknown uid is not an error: del is idempotent). */
  private async drop(uid: string): Promise<string> {
    const pod = this.podsByUid.get(uid);
    if (!pod) return "";
    this.podsByUid.delete(uid);
    this.seen.delete(uid);
    try {
      await this.opts.onDel(uid);
      return "";
    } catch (err) {
      return `del ${JSON.stringify(uid)}: ${(err as Error).message}`;
    } finally {
      closeQuietly(pod.netnsFd);
    }
  }
}
