// Admission of TCP connections to an HBONE TLS listener (:15008), so that sockets that never finish their handshake
// cannot lock legitimate peers out: handshakes time out, unfinished ones are capped per source address and in total,
// and when a new connection arrives over a cap the oldest unfinished handshake is shed to make room (a legitimate
// peer finishes in milliseconds, so it is never the oldest for long). All connections together stay below the
// process's descriptor limit, with a reserve left for application sockets, files and the other listeners.

import { readFileSync } from "node:fs";
import type net from "node:net";
import { logger } from "../log.js";
import { envInt } from "../env.js";

const log = logger("tls.admission");

export interface AdmissionLimits {
  /** An unfinished TLS handshake is dropped after this long (Node's default would be 120 s). */
  handshakeTimeoutMs: number;
  /** Unfinished handshakes in total; over it, the oldest is shed. */
  maxPendingHandshakes: number;
  /** Unfinished handshakes from one source address; over it, that source's oldest is shed. */
  maxPendingHandshakesPerSource: number;
  /** Connections (handshaking or established) of this listener; over it, the oldest unfinished handshake is shed,
   *  or, if every connection is established, the new one is refused. Clamped to the descriptor limit − fdReserve. */
  maxConnections: number;
  /** Descriptors kept free of this listener for everything else (default: a quarter of the limit, at least 32). */
  fdReserve?: number;
}

/** Defaults; each can be set by its environment variable (HBONE_HANDSHAKE_TIMEOUT_MS, …) or by the listener's options. */
export function defaultAdmissionLimits(): AdmissionLimits {
  return {
    handshakeTimeoutMs: envInt("HBONE_HANDSHAKE_TIMEOUT_MS") ?? 10_000,
    maxPendingHandshakes: envInt("HBONE_MAX_PENDING_HANDSHAKES") ?? 512,
    maxPendingHandshakesPerSource: envInt("HBONE_MAX_PENDING_HANDSHAKES_PER_SOURCE") ?? 64,
    maxConnections: envInt("HBONE_MAX_CONNECTIONS") ?? 16_384,
    fdReserve: envInt("HBONE_FD_RESERVE"),
  };
}

/** The soft limit on open descriptors (`ulimit -n`), from /proc/self/limits; undefined if unlimited or unknown. */
export function fdLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined; // not Linux
  }
}

/** `limits` with maxConnections clamped below the descriptor limit (keeping the reserve) and the pending caps to it. */
export function effectiveLimits(limits: AdmissionLimits, fds = fdLimit()): AdmissionLimits {
  const out = { ...limits };
  if (fds !== undefined) {
    const reserve = limits.fdReserve ?? Math.max(32, Math.floor(fds / 4));
    out.fdReserve = reserve;
    out.maxConnections = Math.max(1, Math.min(limits.maxConnections, fds - reserve));
  }
  out.maxPendingHandshakes = Math.max(1, Math.min(out.maxPendingHandshakes, out.maxConnections));
  out.maxPendingHandshakesPerSource = Math.max(
    1,
    Math.min(out.maxPendingHandshakesPerSource, out.maxPendingHandshakes),
  );
  return out;
}

/** Tracks one listener's connections from accept to close and decides, on each accept, who stays. */
export class Admission {
  /** Unfinished handshakes, oldest first (a Map keeps insertion order). */
  private readonly pending = new Map<net.Socket, string>();
  private readonly bySource = new Map<string, Set<net.Socket>>();
  private readonly live = new Set<net.Socket>();
  private readonly shedSockets = new WeakSet<net.Socket>();
  readonly stats = { accepted: 0, shed: 0, refused: 0 };

  constructor(readonly limits: AdmissionLimits) {}

  get connections(): number {
    return this.live.size;
  }

  get pendingHandshakes(): number {
    return this.pending.size;
  }

  /** A TCP connection was accepted: makes room for it (shedding), or refuses it (destroyed; false). */
  admit(raw: net.Socket): boolean {
    const source = raw.remoteAddress ?? "";
    const l = this.limits;
    const mine = this.bySource.get(source);
    if (mine && mine.size >= l.maxPendingHandshakesPerSource) {
      this.shed(
        mine.values().next().value!,
        `over ${l.maxPendingHandshakesPerSource} unfinished handshakes from one source`,
      );
    }
    if (this.pending.size >= l.maxPendingHandshakes) {
      this.shed(this.pending.keys().next().value!, `over ${l.maxPendingHandshakes} unfinished handshakes`);
    }
    if (this.live.size >= l.maxConnections) {
      const oldest = this.pending.keys().next().value;
      if (oldest) {
        this.shed(oldest, `over ${l.maxConnections} connections`);
      } else {
        this.stats.refused++;
        log.limited.warn("HBONE connection refused: every connection slot holds an established connection", {
          remote: source,
          maxConnections: l.maxConnections,
        });
        raw.destroy();
        return false;
      }
    }
    this.stats.accepted++;
    this.live.add(raw);
    this.pending.set(raw, source);
    let set = this.bySource.get(source);
    if (!set) this.bySource.set(source, (set = new Set()));
    set.add(raw);
    raw.once("close", () => {
      this.live.delete(raw);
      this.settled(raw);
    });
    return true;
  }

  /** The handshake finished (or failed): the connection no longer counts as pending. */
  settled(raw: net.Socket): void {
    const source = this.pending.get(raw);
    if (source === undefined) return;
    this.pending.delete(raw);
    const set = this.bySource.get(source);
    set?.delete(raw);
    if (set?.size === 0) this.bySource.delete(source);
  }

  /** Whether `raw` was closed by shedding (its handshake error is then not logged again). */
  wasShed(raw: net.Socket): boolean {
    return this.shedSockets.has(raw);
  }

  /** `why` names the cap, never the peer (that is `remote`): it is also the log limiter's key. */
  private shed(raw: net.Socket, why: string): void {
    this.stats.shed++;
    this.shedSockets.add(raw);
    this.settled(raw);
    this.live.delete(raw); // its descriptor is closed now, not at 'close'
    log.limited.warn("unfinished TLS handshake shed", { reason: why, remote: raw.remoteAddress, limitKey: why });
    raw.destroy();
  }
}
