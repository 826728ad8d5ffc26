// Certificates for every workload on the node (ztunnel's shared mode): one per identity (service account), shared by
// that identity's pods; fetched ahead when the first pod with it appears on the node, dropped when the last one
// leaves. Renewal at half-life, backoff per identity up to 150 s and a still-valid certificate kept on failure are
// SecretManager's (./manager.ts); this room adds who needs which identity, and a cap on certificate requests in
// flight (8, as ztunnel) with on-demand fetches ahead of renewals ahead of prefetches in the queue.
//
// With istiod's CA the source is an IstioCaClient made with `impersonate: true`: the proxy's own token, and
// metadata {ImpersonatedIdentity: <spiffe id>} on each CreateCertificate; it refuses a leaf that names another id.

import { EventEmitter } from "node:events";
import type { WorkloadCertificate } from "./ca.js";
import { Identity } from "./identity.js";
import { SecretManager, type CertificateSource } from "./manager.js";
import { logger } from "../log.js";
import { IdentityDroppedError, IdentityError } from "../errors.js";

const log = logger("identity");

/** What this room needs to know of a local workload. */
export interface LocalWorkload {
  uid: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export interface WorkloadCertsOptions {
  /** Certificate requests in flight at most (default 8, ztunnel's). */
  maxConcurrent?: number;
  /** SecretManager's backoff: first retry delay (1 s) and cap (150 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Queue order: an on-demand fetch (a connection waits) first, then renewals, then prefetches. */
export type FetchPriority = "on-demand" | "renewal" | "prefetch";
const RANK: Record<FetchPriority, number> = { "on-demand": 0, renewal: 1, prefetch: 2 };

export { IdentityDroppedError } from "../errors.js";

interface Waiting {
  key: string;
  start: () => void;
  drop: (e: Error) => void;
}

export interface WorkloadCertificates {
  on(event: "rotated", listener: (identity: Identity, cert: WorkloadCertificate) => void): this;
  on(event: "dropped", listener: (identity: Identity) => void): this;
}

/** Per-identity certificates for the node's workloads. Emits "rotated" (renewals) and "dropped" (last pod left). */
export class WorkloadCertificates extends EventEmitter {
  readonly secrets: SecretManager;
  /** identity key -> uids of local workloads with it. */
  private readonly users = new Map<string, Set<string>>();
  private readonly byUid = new Map<string, string>();
  private readonly identities = new Map<string, Identity>();
  private readonly urgent = new Set<string>();
  private readonly queue: Waiting[] = [];
  private readonly maxConcurrent: number;
  private running = 0;
  /** Most requests seen in flight at once (config_dump, tests). */
  peakInFlight = 0;

  constructor(
    private readonly source: CertificateSource,
    opts: WorkloadCertsOptions = {},
  ) {
    super();
    this.maxConcurrent = opts.maxConcurrent ?? 8;
    this.secrets = new SecretManager({ issue: (id) => this.limited(id) }, opts);
    this.secrets.on("rotated", (id, cert) => this.emit("rotated", id, cert));
  }

  /** A workload appeared on the node: the first with its identity starts a prefetch. */
  add(w: LocalWorkload): Identity {
    const id = new Identity(w.trustDomain, w.namespace, w.serviceAccount);
    const key = id.toString();
    const prev = this.byUid.get(w.uid);
    if (prev === key) return id;
    if (prev !== undefined) this.remove(w.uid); // its service account changed
    this.byUid.set(w.uid, key);
    let set = this.users.get(key);
    if (!set) {
      set = new Set();
      this.users.set(key, set);
      this.identities.set(key, id);
      // Failures are logged and retried with backoff by SecretManager.
      this.secrets.fetch(id).catch(() => undefined);
    }
    set.add(w.uid);
    return id;
  }

  /** A workload left: the last with its identity drops the certificate (and any queued request for it). */
  remove(uid: string): void {
    const key = this.byUid.get(uid);
    if (key === undefined) return;
    this.byUid.delete(uid);
    const set = this.users.get(key)!;
    set.delete(uid);
    if (set.size > 0) return;
    const id = this.identities.get(key)!;
    this.users.delete(key);
    this.identities.delete(key);
    this.urgent.delete(key);
    this.secrets.forget(id);
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.key === key)
        this.queue.splice(i, 1)[0]!.drop(new IdentityDroppedError(`${key} left the node`));
    }
    log.info("workload certificate dropped: no local workload has this identity", { identity: key });
    this.emit("dropped", id);
  }

  /** Makes the local workloads exactly `ws` (a snapshot): adds the new, removes those gone. */
  sync(ws: LocalWorkload[]): void {
    const keep = new Set(ws.map((w) => w.uid));
    for (const uid of [...this.byUid.keys()]) if (!keep.has(uid)) this.remove(uid);
    for (const w of ws) this.add(w);
  }

  /** The certificate of a local identity, now (on demand: ahead of renewals and prefetches in the queue). */
  async fetch(id: Identity): Promise<WorkloadCertificate> {
    const key = id.toString();
    if (!this.users.has(key)) throw new IdentityDroppedError(`${key}: no local workload has this identity`);
    const cur = this.secrets.current(id);
    if (cur) return cur;
    this.urgent.add(key);
    try {
      return await this.secrets.fetch(id);
    } finally {
      this.urgent.delete(key);
    }
  }

  current(id: Identity): WorkloadCertificate | undefined {
    return this.secrets.current(id);
  }

  /** For config_dump: each local identity, its workloads and its certificate's validity. */
  snapshot(): { identity: string; workloads: string[]; notAfter?: string }[] {
    return [...this.users].map(([key, uids]) => ({
      identity: key,
      workloads: [...uids],
      notAfter: this.secrets.current(this.identities.get(key)!)?.notAfter.toISOString(),
    }));
  }

  /** Requests in flight and waiting. */
  get load(): { inFlight: number; queued: number } {
    return { inFlight: this.running, queued: this.queue.length };
  }

  close(): void {
    this.secrets.close();
    for (const w of this.queue.splice(0))
      w.drop(new IdentityError("WorkloadCertificates is closed", "HBONE_IDENTITY_CLOSED"));
  }

  private priority(key: string): FetchPriority {
    if (this.urgent.has(key)) return "on-demand";
    const id = this.identities.get(key);
    return id && this.secrets.current(id) ? "renewal" : "prefetch";
  }

  /** SecretManager's source: the real one behind the cap and the priority queue. */
  private limited(id: Identity): Promise<WorkloadCertificate> {
    const key = id.toString();
    return new Promise<void>((resolve, reject) => {
      if (this.running < this.maxConcurrent && this.queue.length === 0) {
        this.running++;
        resolve();
      } else {
        this.queue.push({ key, start: resolve, drop: reject });
      }
    }).then(() => {
      this.peakInFlight = Math.max(this.peakInFlight, this.running);
      return new Promise<WorkloadCertificate>((resolve) => resolve(this.source.issue(id))).finally(() => {
        this.running--;
        this.next();
      });
    });
  }

  /** Starts the most urgent waiting request (priority looked at now: a prefetch may have become on-demand). */
  private next(): void {
    if (this.running >= this.maxConcurrent || this.queue.length === 0) return;
    let best = 0;
    for (let i = 1; i < this.queue.length; i++) {
      if (RANK[this.priority(this.queue[i]!.key)] < RANK[this.priority(this.queue[best]!.key)]) best = i;
    }
    const [w] = this.queue.splice(best, 1);
    this.running++;
    w!.start();
  }
}
