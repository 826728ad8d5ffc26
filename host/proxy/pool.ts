// HBONE connection pool (ztunnel src/proxy/pool.rs): connections keyed by {source identity,
// accepted destination identities, next hop}; at most `maxStreams` streams each (checked at
// checkout, counting checkouts whose stream is not open yet); one dial per key at a time; a
// connection unused for `idleMs` is closed.
// Reuse is the point: sequential tunnels to one destination share one TLS handshake.

import { H2Session, type SessionOptions } from "../h2/session.js";
import { logger } from "../log.js";

const log = logger("pool");

export interface WorkloadKey {
  /** spiffe:// identity of the source workload. */
  src: string;
  /** Identities the destination may present, sorted. */
  dst: string[];
  /** Next hop, ip:port. */
  hop: string;
}

export function keyString(k: WorkloadKey): string {
  return `${k.src}|${[...k.dst].sort().join(",")}|${k.hop}`;
}

interface Entry {
  session: H2Session;
  idleTimer: NodeJS.Timeout | null;
  /** Checkouts handed out this turn of the event loop whose stream the session does not count yet. */
  reserved: number;
}

export interface PoolOptions {
  maxStreams?: number;
  idleMs?: number;
  session?: SessionOptions;
}

export class HbonePool {
  private readonly conns = new Map<string, Entry[]>();
  private readonly dialing = new Map<string, Promise<Entry>>();
  private readonly maxStreams: number;
  private readonly idleMs: number;
  /** Connections established (each one TLS handshake), dials that failed, checkouts served by an existing one. */
  readonly stats = { dials: 0, dialFailures: 0, reused: 0, idleClosed: 0 };
  private closed = false;

  constructor(opts: PoolOptions = {}) {
    this.maxStreams = opts.maxStreams ?? 100;
    this.idleMs = opts.idleMs ?? 5 * 60_000;
  }

  /**
   * A session to `key` with room for one more stream: an existing one, or a new one from
   * `dial` (only one dial per key runs; concurrent callers wait for it).
   */
  async checkout(key: WorkloadKey, dial: () => Promise<H2Session>): Promise<H2Session> {
    if (this.closed) throw new Error("pool closed");
    const k = keyString(key);
    for (;;) {
      const e = this.pick(k);
      if (e) {
        this.stats.reused++;
        return this.use(e);
      }
      const pending = this.dialing.get(k);
      if (pending) {
        await pending.catch(() => undefined);
        continue;
      }
      const p = this.dial(k, dial);
      this.dialing.set(k, p);
      try {
        return this.use(await p);
      } finally {
        this.dialing.delete(k);
      }
    }
  }

  /** Number of pooled connections (all keys). */
  get size(): number {
    let n = 0;
    for (const list of this.conns.values()) n += list.length;
    return n;
  }

  /** GOAWAY to every pooled connection; in-flight streams finish. */
  drain(): void {
    this.closed = true;
    for (const list of this.conns.values()) for (const e of list) e.session.close();
  }

  /** Closes every connection of one source (a workload leaving the node: its sockets were dialled from its pod). */
  closeSource(src: string): void {
    for (const [k, list] of [...this.conns]) {
      if (!k.startsWith(`${src}|`)) continue;
      this.conns.delete(k);
      for (const e of list) {
        if (e.idleTimer) clearTimeout(e.idleTimer);
        e.session.destroy();
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const list of this.conns.values()) for (const e of list) e.session.destroy();
    this.conns.clear();
  }

  private pick(k: string): Entry | undefined {
    const list = this.conns.get(k);
    if (!list) return undefined;
    for (const e of list) {
      // The stream about to open must stay within the limit, with those checked out but not opened yet.
      if (e.session.open && e.session.activeStreams + e.reserved + 1 <= this.maxStreams) return e;
    }
    return undefined;
  }

  private use(e: Entry): H2Session {
    if (e.idleTimer) {
      clearTimeout(e.idleTimer);
      e.idleTimer = null;
    }
    // Callers open their stream as soon as checkout resolves (same turn of the event loop); until then the
    // session does not count it, so waiters woken by one dial would all pick the fresh session and pass the cap.
    e.reserved++;
    setImmediate(() => e.reserved--);
    return e.session;
  }

  private async dial(k: string, dial: () => Promise<H2Session>): Promise<Entry> {
    let session: H2Session;
    try {
      session = await dial();
    } catch (err) {
      this.stats.dialFailures++;
      throw err;
    }
    this.stats.dials++;
    const e: Entry = { session, idleTimer: null, reserved: 0 };
    let list = this.conns.get(k);
    if (!list) this.conns.set(k, (list = []));
    list.push(e);
    const remove = () => {
      const l = this.conns.get(k);
      if (!l) return;
      const i = l.indexOf(e);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.conns.delete(k);
      if (e.idleTimer) clearTimeout(e.idleTimer);
    };
    session.on("close", remove);
    session.on("goaway", remove);
    session.on("streamClosed", () => {
      if (session.activeStreams > 0 || e.idleTimer || !session.open) return;
      e.idleTimer = setTimeout(() => {
        if (session.activeStreams > 0) return;
        this.stats.idleClosed++;
        log.debug("closing idle connection", { key: k });
        remove();
        session.close();
      }, this.idleMs);
      e.idleTimer.unref();
    });
    return e;
  }
}
