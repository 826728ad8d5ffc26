// ztunnel's SecretManager (src/identity/manager.rs): one certificate per identity, fetched once however many
// callers ask, renewed in the background at half-life. A failed renewal keeps the old certificate serving and
// retries with backoff (1 s doubling to 150 s, jitter 0.2).

import { EventEmitter } from "node:events";
import type { Identity } from "./identity.js";
import type { WorkloadCertificate } from "./ca.js";
import { logger } from "../log.js";
import { IdentityError } from "../errors.js";

const log = logger("identity");

export interface CertificateSource {
  issue(identity: Identity): Promise<WorkloadCertificate>;
}

// setTimeout fires at once past 2^31-1 ms (~24.8 days); longer waits are taken in steps.
const MAX_TIMER_MS = 0x7fffffff;
const JITTER = 0.2;

interface Entry {
  identity: Identity;
  cert?: WorkloadCertificate;
  inflight?: Promise<WorkloadCertificate>;
  timer?: NodeJS.Timeout;
  /** Consecutive failed fetches (drives the backoff). */
  failures: number;
}

export interface SecretManager {
  on(event: "rotated", listener: (identity: Identity, cert: WorkloadCertificate) => void): this;
  once(event: "rotated", listener: (identity: Identity, cert: WorkloadCertificate) => void): this;
  emit(event: "rotated", identity: Identity, cert: WorkloadCertificate): boolean;
}

/** ztunnel's SecretManager: one certificate per identity, renewed at half-life (backoff 1 s doubling to 150 s on failure,
 *  the old certificate keeps serving). Emits "rotated" (identity, cert) after a renewal. Timers are unref'd. */
export class SecretManager extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private closed = false;

  /** minBackoffMs is the first retry delay after a failure, and the soonest a renewal is scheduled. */
  constructor(
    private readonly source: CertificateSource,
    opts: { minBackoffMs?: number; maxBackoffMs?: number } = {},
  ) {
    super();
    this.minBackoffMs = opts.minBackoffMs ?? 1_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 150_000;
  }

  /** The identity's certificate: the cached one while valid, else one fetch shared by all callers. */
  fetch(identity: Identity): Promise<WorkloadCertificate> {
    if (this.closed) return Promise.reject(new IdentityError("SecretManager is closed", "HBONE_IDENTITY_CLOSED"));
    const key = identity.toString();
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { identity, failures: 0 };
      this.entries.set(key, entry);
    }
    const cert = valid(entry.cert);
    return cert ? Promise.resolve(cert) : this.load(entry);
  }

  /** The cached certificate while it is valid. */
  current(identity: Identity): WorkloadCertificate | undefined {
    return valid(this.entries.get(identity.toString())?.cert);
  }

  /** Stops renewing this identity's certificate and drops it. */
  forget(identity: Identity): void {
    const key = identity.toString();
    clearTimeout(this.entries.get(key)?.timer);
    this.entries.delete(key);
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
  }

  private load(entry: Entry): Promise<WorkloadCertificate> {
    if (entry.inflight) return entry.inflight;
    const key = entry.identity.toString();
    const live = () => !this.closed && this.entries.get(key) === entry;
    // The executor turns a synchronous throw of the source into a rejection.
    const p = new Promise<WorkloadCertificate>((resolve) => resolve(this.source.issue(entry.identity))).then(
      (cert) => {
        entry.inflight = undefined;
        if (!live()) return cert;
        const renewed = entry.cert !== undefined;
        entry.cert = cert;
        entry.failures = 0;
        const halfLife = (cert.notBefore.getTime() + cert.notAfter.getTime()) / 2;
        // A certificate already past half-life would otherwise be renewed in a tight loop.
        this.schedule(entry, Math.max(halfLife, Date.now() + this.minBackoffMs));
        if (renewed) this.emit("rotated", entry.identity, cert);
        return cert;
      },
      (err: unknown) => {
        entry.inflight = undefined;
        if (live()) {
          const backoff = Math.min(this.minBackoffMs * 2 ** entry.failures, this.maxBackoffMs);
          entry.failures++;
          const delay = backoff * (1 + JITTER * (2 * Math.random() - 1));
          log.warn("certificate fetch failed", {
            identity: entry.identity.toString(),
            error: err instanceof Error ? err : String(err),
            retryInMs: Math.round(delay),
            serving: valid(entry.cert) ? "previous certificate" : "none",
          });
          this.schedule(entry, Date.now() + delay);
        }
        throw err;
      },
    );
    entry.inflight = p;
    return p;
  }

  /** Fetches again at `at` (ms since the epoch). */
  private schedule(entry: Entry, at: number): void {
    clearTimeout(entry.timer);
    const wait = at - Date.now();
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined;
        if (wait > MAX_TIMER_MS) return this.schedule(entry, at);
        // A failure is logged and rescheduled inside load(); nobody else awaits this one.
        this.load(entry).catch(() => undefined);
      },
      Math.min(wait, MAX_TIMER_MS),
    );
    entry.timer.unref();
  }
}

function valid(cert: WorkloadCertificate | undefined): WorkloadCertificate | undefined {
  return cert && cert.notAfter.getTime() > Date.now() ? cert : undefined;
}
