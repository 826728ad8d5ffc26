// Access logs in ztunnel's shape (its proxy/metrics.rs): one JSON line per connection under scope `access`.
// `connection complete` when a connection closes (INFO, or ERROR with `error` when it failed), `connection failed`
// for early refusals (WARN, only src.addr, dst.addr, direction, error). Field names are ztunnel's, dots included,
// so tools written for ztunnel's JSON logs read ours. Absent (unknown) fields are left out, as ztunnel does.
//
// On by default; switchable at run time with setAccessLogLevel (the admin /logging route's hook, see
// applyLoggingSpec). Lines still pass host/log.ts's global level too. Refusals are rate-limited by a token bucket
// of this module's own (a peer that is refused in a loop must not turn the log into the bottleneck); the number
// of refusal lines dropped is carried on the next one that is written (`suppressed`).

import type { TcpLabels, TunnelBytes } from "../metrics.js";
import { logger, type Fields, type Level } from "../log.js";

const log = logger("access");

/** What an access line says about one side: the peer's workload, namespace, SPIFFE identity (as labels know it). */
export interface AccessPeer {
  workload?: string;
  namespace?: string;
  /** spiffe://…; only known for mTLS peers. */
  identity?: string;
}

/** One finished connection (what a ConnectionResult knows at close). */
export interface ConnectionRecord {
  direction: "inbound" | "outbound";
  /** ip:port of the connecting side. */
  srcAddr: string;
  /** ip:port connected to (inbound: the pod's ip:15008). */
  dstAddr: string;
  /** The CONNECT authority (HBONE only). */
  hboneAddr?: string;
  /** Service hostname, when the destination was a service. */
  service?: string;
  src?: AccessPeer;
  dst?: AccessPeer;
  /** client→server is received (bytes_recv), server→client sent (bytes_sent), as istio_tcp_* count them. */
  bytes: TunnelBytes;
  /** performance.now() (or Date.now(): any ms clock, the same as `endMs`) when the connection was accepted. */
  startMs: number;
  /** Default: performance.now(). */
  endMs?: number;
  /** Why it failed; a failed connection is logged at ERROR. */
  error?: string | Error;
}

/** An early refusal (before a connection is set up). */
export interface RefusalRecord {
  direction: "inbound" | "outbound";
  srcAddr: string;
  dstAddr: string;
  error: string | Error;
}

/** "off" turns access lines off; otherwise the least severe level written. */
export type AccessLevel = Level | "off";
const ORDER: Record<AccessLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, off: 100 };

let threshold: AccessLevel = "info";

export function setAccessLogLevel(level: AccessLevel): void {
  if (!(level in ORDER)) throw new Error(`unknown access log level ${level}`);
  threshold = level;
}

export function accessLogLevel(): AccessLevel {
  return threshold;
}

/**
 * ztunnel's /logging syntax: `level=info`, or a comma list of `target:level` with at most one bare level,
 * e.g. `access:off,info`. Applies the `access:` part here (validated first: a bad spec changes nothing) and
 * returns the bare level for the caller to give host/log.ts setLevel, or undefined when there is none.
 */
export function applyLoggingSpec(spec: string): Level | undefined {
  let bare: Level | undefined;
  let access: AccessLevel | undefined;
  for (const part of spec
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")) {
    const i = part.indexOf(":");
    const target = i < 0 ? undefined : part.slice(0, i);
    const level = (i < 0 ? part : part.slice(i + 1)) as AccessLevel;
    if (!(level in ORDER)) throw new Error(`unknown log level ${level}`);
    if (target === undefined) {
      if (level === "off") throw new Error("the global level cannot be off");
      bare = level;
    } else if (target === "access") {
      access = level;
    } else {
      throw new Error(`unknown log target ${target} (known: access)`);
    }
  }
  if (access !== undefined) threshold = access;
  return bare;
}

/** A token bucket: `burst` at once, refilled at `perSecond`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.perSecond) / 1000);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Refusal lines: 100 at once, then 10 a second (ztunnel rate-limits its own refusal logs likewise). */
export const REFUSAL_RATE = { perSecond: 10, burst: 100 };
let refusals = new TokenBucket(REFUSAL_RATE.perSecond, REFUSAL_RATE.burst);
let suppressed = 0;

/** Tests: a fresh bucket (optionally with its own clock and rates). */
export function resetRefusalLimiter(rate = REFUSAL_RATE, now?: () => number): void {
  refusals = new TokenBucket(rate.perSecond, rate.burst, now);
  suppressed = 0;
}

function put(f: Fields, k: string, v: string | undefined): void {
  if (v !== undefined && v !== "" && v !== "unknown") f[k] = v;
}

function errorText(e: string | Error): string {
  return typeof e === "string" ? e : e.message;
}

/** The fields of a `connection complete` line, in ztunnel's order. */
export function completeFields(c: ConnectionRecord): Fields {
  const f: Fields = {};
  put(f, "src.addr", c.srcAddr);
  put(f, "src.workload", c.src?.workload);
  put(f, "src.namespace", c.src?.namespace);
  put(f, "src.identity", c.src?.identity);
  put(f, "dst.addr", c.dstAddr);
  put(f, "dst.hbone_addr", c.hboneAddr);
  put(f, "dst.service", c.service);
  put(f, "dst.workload", c.dst?.workload);
  put(f, "dst.namespace", c.dst?.namespace);
  put(f, "dst.identity", c.dst?.identity);
  f.direction = c.direction;
  f.bytes_sent = c.bytes.serverToClient;
  f.bytes_recv = c.bytes.clientToServer;
  f.duration = `${Math.max(0, Math.round((c.endMs ?? performance.now()) - c.startMs))}ms`;
  if (c.error !== undefined) f.error = errorText(c.error);
  return f;
}

/** The peers and service of a connection as its istio_tcp_* labels name them ("unknown" fields are left out). */
export function peersFromLabels(l: TcpLabels): Pick<ConnectionRecord, "src" | "dst" | "service"> {
  return {
    src: { workload: l.source_workload, namespace: l.source_workload_namespace, identity: spiffe(l.source_principal) },
    dst: {
      workload: l.destination_workload,
      namespace: l.destination_workload_namespace,
      identity: spiffe(l.destination_principal),
    },
    service: l.destination_service,
  };
}

function spiffe(principal: string): string | undefined {
  return principal.startsWith("spiffe://") ? principal : undefined;
}

/** Logs a closed connection: INFO `connection complete`, ERROR when it carries an error. */
export function logConnectionComplete(c: ConnectionRecord): void {
  const level: Level = c.error !== undefined ? "error" : "info";
  if (ORDER[level] < ORDER[threshold]) return;
  log[level]("connection complete", completeFields(c));
}

/** Logs an early refusal: WARN `connection failed`, rate-limited. Returns whether a line was written. */
export function logConnectionFailed(r: RefusalRecord): boolean {
  if (ORDER.warn < ORDER[threshold]) return false;
  if (!refusals.take()) {
    suppressed++;
    return false;
  }
  const f: Fields = { "src.addr": r.srcAddr, "dst.addr": r.dstAddr, direction: r.direction, error: errorText(r.error) };
  if (suppressed > 0) {
    f.suppressed = suppressed;
    suppressed = 0;
  }
  log.warn("connection failed", f);
  return true;
}

// What an open tunnel keeps for its access line is kept small: an address made as `${host}:${port}` is a rope of
// three strings until something flattens it, and the fields every tunnel of a route shares (its hop, its
// authority) are kept once.
const shared = new Map<string, string>();

/** One copy of `s` for every tunnel that logs it (a bounded cache). */
export function sharedField(s: string): string {
  const known = shared.get(s);
  if (known !== undefined) return known;
  if (shared.size >= 1024) shared.clear();
  shared.set(flatField(s), s);
  return s;
}

/** `s` flattened in place (ToNumber flattens a rope; the GC then drops its parts). */
function flatField(s: string): string {
  void Number(s);
  return s;
}
