// Structured JSON logs, one object per line, with a level settable at run time
// (admin /logging). Tests may redirect the sink to capture what was logged.

export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;
export interface LogRecord extends Fields {
  time: string;
  level: Level;
  scope: string;
  msg: string;
}

let threshold: Level = (process.env.HBONE_LOG_LEVEL as Level) in ORDER ? (process.env.HBONE_LOG_LEVEL as Level) : "info";
let sink: (r: LogRecord) => void = (r) => process.stdout.write(JSON.stringify(r) + "\n");

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
}

function errorFields(fields?: Fields): Fields | undefined {
  if (!fields) return fields;
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? v.message : v;
  return out;
}

export function logger(scope: string): Logger {
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < ORDER[threshold]) return;
    sink({ time: new Date().toISOString(), level, scope, msg, ...errorFields(fields) });
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (s) => logger(`${scope}.${s}`),
  };
}
