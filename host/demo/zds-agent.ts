// A stand-in for the istio-cni node agent (the node-mode demo's, and the tests'): listens on an AF_UNIX
// SOCK_SEQPACKET socket, accepts the proxy's connection, reads its ZdsHello, and sends WorkloadRequests one at a
// time, each waiting for the proxy's Ack — with real network-namespace fds attached as SCM_RIGHTS, as the real
// agent does. Every wait is bounded.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { SeqpacketServer, type Datagram, type Readiness, type SeqpacketSocket } from "../sys/seqpacket.js";
import { closeQuietly } from "../sys/libc.js";
import { decodeAck, decodeHello, encodeRequest, type WorkloadInfo, type WorkloadRequest } from "../inpod/zds.js";

interface Waiter {
  resolve(d: Datagram): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface AgentPod {
  info: WorkloadInfo;
  /** Path of the pod's netns (/var/run/netns/NAME); opened fresh for every add, as the agent does. */
  netns: string;
}

export class ZdsAgent {
  /** Pods the agent knows: the snapshot of each new connection. */
  readonly pods = new Map<string, AgentPod>();
  /** Connections accepted so far (each began with a valid hello). */
  connections = 0;
  private readonly server: SeqpacketServer;
  private readonly serverWatch: Readiness;
  private conn: SeqpacketSocket | null = null;
  private connWatch: Readiness | null = null;
  private queue: Datagram[] = [];
  private waiters: Waiter[] = [];
  private connWaiters: Array<() => void> = [];
  private connEnded: Array<() => void> = [];

  private constructor(readonly path: string) {
    this.server = SeqpacketServer.listen(path);
    this.serverWatch = this.server.watch(() => this.onAccept());
  }

  /** Listens on `socketPath` (default: a fresh path in the temp dir). */
  static listen(socketPath = path.join(os.tmpdir(), `hb-zds-${randomBytes(4).toString("hex")}.sock`)): ZdsAgent {
    return new ZdsAgent(socketPath);
  }

  /** Resolves when a proxy connection is up and its hello was a V1 ZdsHello (the next one after `count`). */
  async nextConnection(count = this.connections, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections <= count) {
      if (Date.now() > deadline) throw new Error(`no proxy connection within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.connWaiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Resolves when the current connection ends (the proxy closed it). */
  connectionEnded(timeoutMs = 10_000): Promise<void> {
    if (!this.conn) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      this.connEnded.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get isConnected(): boolean {
    return this.conn !== null;
  }

  /** Sends one request (a message, or raw bytes) with `fds`, and returns the Ack's error string ("" = ok). */
  async request(req: WorkloadRequest | Uint8Array, fds: number[] = [], timeoutMs = 10_000): Promise<string> {
    const conn = this.conn;
    if (!conn) throw new Error("no proxy connected");
    conn.send(req instanceof Uint8Array ? req : encodeRequest(req), fds);
    const d = await this.next(timeoutMs);
    d.fds.forEach(closeQuietly);
    const ack = decodeAck(d.data);
    if (!ack.ok) throw new Error(ack.error);
    return ack.error;
  }

  /** add with a freshly opened fd of `netns` (closed here after sending: the proxy holds its own copy). */
  async add(uid: string, info: WorkloadInfo, netns: string): Promise<string> {
    const fd = fs.openSync(netns, "r");
    try {
      return await this.request({ payload: { $case: "add", add: { uid, workloadInfo: info } } }, [fd]);
    } finally {
      fs.closeSync(fd);
    }
  }

  del(uid: string): Promise<string> {
    return this.request({ payload: { $case: "del", del: { uid } } });
  }

  keep(uid: string): Promise<string> {
    return this.request({ payload: { $case: "keep", keep: { uid } } });
  }

  snapshotSent(): Promise<string> {
    return this.request({ payload: { $case: "snapshotSent", snapshotSent: {} } });
  }

  /** The snapshot as the agent sends it: add each known pod (its netns fd attached), then snapshot_sent. */
  async sendSnapshot(): Promise<Record<string, string>> {
    const acks: Record<string, string> = {};
    for (const [uid, pod] of this.pods) acks[uid] = await this.add(uid, pod.info, pod.netns);
    acks.snapshot_sent = await this.snapshotSent();
    return acks;
  }

  /** Drops the proxy's connection (an agent restart, from the proxy's view). */
  dropConnection(): void {
    this.endConnection(new Error("agent dropped the connection"));
  }

  close(): void {
    this.endConnection(new Error("agent closed"));
    this.serverWatch.close();
    this.server.close();
    fs.rmSync(this.path, { force: true });
  }

  private onAccept(): void {
    for (;;) {
      let s: SeqpacketSocket | null;
      try {
        s = this.server.accept();
      } catch {
        return;
      }
      if (!s) return;
      // One proxy at a time, like the real agent: a new connection replaces the old one.
      this.endConnection(new Error("replaced by a new connection"));
      this.conn = s;
      this.queue = [];
      let helloSeen = false;
      this.connWatch = s.watch(() => {
        for (;;) {
          const conn = this.conn;
          if (conn !== s) return;
          let d: ReturnType<SeqpacketSocket["recv"]>;
          try {
            d = conn.recv();
          } catch {
            d = "eof";
          }
          if (d === null) return;
          if (d === "eof") {
            this.endConnection(new Error("proxy closed the connection"));
            return;
          }
          if (!helloSeen) {
            helloSeen = true;
            d.fds.forEach(closeQuietly);
            if (!decodeHello(d.data)) {
              this.endConnection(new Error("first datagram was not a V1 ZdsHello"));
              return;
            }
            this.connections++;
            this.connWaiters.splice(0).forEach((w) => w());
            continue;
          }
          const w = this.waiters.shift();
          if (w) {
            clearTimeout(w.timer);
            w.resolve(d);
          } else this.queue.push(d);
        }
      });
    }
  }

  private next(timeoutMs: number): Promise<Datagram> {
    const d = this.queue.shift();
    if (d) return Promise.resolve(d);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no ack within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  private endConnection(reason: Error): void {
    const conn = this.conn;
    if (!conn) return;
    this.conn = null;
    this.connWatch?.close();
    this.connWatch = null;
    conn.close();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
    this.queue.forEach((d) => d.fds.forEach(closeQuietly));
    this.queue = [];
    this.connEnded.splice(0).forEach((f) => f());
  }
}
