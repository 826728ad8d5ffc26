// Structured JSON logs, one object per line, with a level settable at run time
// (admin /logging). Tests may redirect the sink to capture what was logged. Lines a peer can
// trigger at will (refusals, failed handshakes) go through `log.limited`: a flood of them costs
// a few lines and one summary per interval, not a line each.

import { envInt } from "./env.js";

export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;
export interface LogRecord extends Fields {
  time: string;
  level: Level;
  scope: string;
  msg: string;
}

let threshold: Level =
  (process.env.HBONE_LOG_LEVEL as Level) in ORDER ? (process.env.HBONE_LOG_LEVEL as Level) : "info";
let sink: (r: LogRecord) => void = (r) => toStdout(JSON.stringify(r));

// Lines go to stdout in batches: every 20 ms (or as soon as 64 KiB wait), not one write each, nor one per turn of
// the event loop: at thousands of tunnels a second the access log's write per line was an eighth of the inbound's
// CPU, and a write per turn still a twentieth (each wakes whoever reads the pipe). What waits is written on exit
// too; a SIGKILL can lose at most the last 20 ms of lines.
const BATCH_BYTES = 64 * 1024;
const BATCH_MS = 20;
let waiting: string[] = [];
let waitingBytes = 0;
let scheduled = false;

function toStdout(line: string): void {
  waiting.push(line);
  waitingBytes += line.length + 1;
  if (waitingBytes >= BATCH_BYTES) flushLogs();
  else if (!scheduled) {
    scheduled = true;
    setTimeout(flushLogs, BATCH_MS).unref();
  }
}

/** Writes the lines still waiting (each turn, and on exit: process.exit() runs the 'exit' listener). */
function flushLogs(): void {
  scheduled = false;
  if (waiting.length === 0) return;
  const text = waiting.join("\n") + "\n";
  waiting = [];
  waitingBytes = 0;
  process.stdout.write(text);
}
process.on("exit", flushLogs);

export function setLevel(level: Level): void {
  if (!(level in ORDER)) throw new Error(`unknown log level ${level}`);
  threshold = level;
}

export function getLevel(): Level {
  return threshold;
}

/** Redirects logs (tests); returns a function that restores the previous sink. */
export function setSink(fn: (r: LogRecord) => void): () => void {
  const prev = sink;
  sink = fn;
  return () => {
    sink = prev;
  };
}

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(scope: string): Logger;
  /** The same logger, rate-limited per message (see rateLimited): for lines a peer can trigger at will. */
  readonly limited: Logger;
}

/** At most `lines` lines per message (scope, level and msg) per `intervalMs`. */
export interface RateLimit {
  lines: number;
  intervalMs: number;
}

/** Default: 10 lines per message per 10 s (env HBONE_LOG_RATE_LINES, HBONE_LOG_RATE_INTERVAL_MS). */
export const DEFAULT_RATE_LIMIT: RateLimit = {
  lines: envInt("HBONE_LOG_RATE_LINES") ?? 10,
  intervalMs: envInt("HBONE_LOG_RATE_INTERVAL_MS") || 10_000,
};

/** Keys one limiter tracks; past that, new ones share one budget. */
const MAX_KEYS = 100;

interface Window {
  emitted: number;
  suppressed: number;
}

/** The line's record: time, level, scope, msg, then the fields (an Error as its message), built as one object. */
function record(level: Level, scope: string, msg: string, fields: Fields | undefined): LogRecord {
  const r: LogRecord = { time: isoTime(), level, scope, msg };
  if (fields)
    for (const k in fields) {
      if (!Object.hasOwn(fields, k)) continue;
      const v = fields[k];
      (r as Fields)[k] = v instanceof Error ? v.message : v;
    }
  return r;
}

type Emit = (level: Level, msg: string, fields?: Fields) => void;

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** `new Date(ms).toISOString()` built from the UTC fields: Date's formatter loads ICU's time-zone data on first use
 *  (~1 MB of an idle proxy's RSS) for a string that needs none of it. */
export function isoTime(ms = Date.now()): string {
  const d = new Date(ms);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(d.getUTCMilliseconds(), 3)}Z`
  );
}

function emitter(scope: string): Emit {
  return (level, msg, fields) => {
    if (ORDER[level] < ORDER[threshold]) return;
    sink(record(level, scope, msg, fields));
  };
}

/**
 * Wraps an emitter so each message (level + msg, plus `fields.limitKey` if given) logs at most `limit.lines` lines
 * per `limit.intervalMs`; the rest are counted and, when the interval ends, summed up in one line "suppressed K
 * similar lines" (same level, the message in `similar`). `limitKey` (not logged) gives a message one budget per value
 * — so a flood of one TLS error cannot hide another — and must come from a small fixed set (an error code, a cap's
 * name), never from peer-chosen text. Memory is bounded: one small record per key, at most MAX_KEYS (then shared).
 */
function limitEmit(emit: Emit, limit: RateLimit): Emit {
  const windows = new Map<string, Window>();
  const flush = (key: string, w: Window, level: Level, msg: string, limitKey: string | undefined) => {
    if (w.suppressed > 0) {
      emit(level, `suppressed ${w.suppressed} similar lines`, { similar: msg, limitKey, intervalMs: limit.intervalMs });
    }
    windows.delete(key);
  };
  return (level, msg, fields) => {
    if (ORDER[level] < ORDER[threshold]) return;
    let limitKey: string | undefined;
    if (fields && "limitKey" in fields) {
      limitKey = String(fields.limitKey);
      fields = { ...fields };
      delete fields.limitKey;
    }
    const exact = `${level}\u0000${msg}\u0000${limitKey ?? ""}`;
    const shared = windows.size >= MAX_KEYS && !windows.has(exact);
    const key = shared ? `${level}\u0000*` : exact;
    let w = windows.get(key);
    if (!w) {
      w = { emitted: 0, suppressed: 0 };
      windows.set(key, w);
      const win = w;
      // Ends the window: the summary, if any, goes out even when the flood has stopped.
      setTimeout(
        () => flush(key, win, level, shared ? "(various)" : msg, shared ? undefined : limitKey),
        limit.intervalMs,
      ).unref();
    }
    if (w.emitted < limit.lines) {
      w.emitted++;
      emit(level, msg, fields);
    } else {
      w.suppressed++;
    }
  };
}

/** `log` with every message rate-limited as `limit` says (a logger's `limited` uses DEFAULT_RATE_LIMIT). */
export function rateLimited(scope: string, limit: RateLimit = DEFAULT_RATE_LIMIT): Logger {
  return build(scope, limitEmit(emitter(scope), limit), limit);
}

function build(scope: string, emit: Emit, limit?: RateLimit): Logger {
  // Each logger's rate-limited twin, made on first use; a rate-limited logger is its own.
  let limited: Logger | undefined;
  const self: Logger = {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (s) => (limit ? rateLimited(`${scope}.${s}`, limit) : logger(`${scope}.${s}`)),
    get limited(): Logger {
      if (limit) return self;
      return (limited ??= rateLimited(scope));
    },
  };
  return self;
}

export function logger(scope: string): Logger {
  return build(scope, emitter(scope));
}
