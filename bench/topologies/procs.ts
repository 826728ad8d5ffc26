// Child processes of the proxy benchmarks: spawned with the benchmark's GLIBC_TUNABLES, always
// killed when this process exits (normally, on an error or on Ctrl-C), their stdout drained (a
// full pipe would stall a proxy) and searched for the "… ready {json}" line; CPU time and RSS
// read from /proc/PID/stat and /proc/PID/status.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const live = new Set<ChildProcess>();
const atExit = new Set<() => void>();
let hooked = false;

/** Runs `fn` (synchronous) when this process exits, unless `cancel()`ed first. */
export function onExit(fn: () => void): { cancel(): void } {
  hookExit();
  atExit.add(fn);
  return { cancel: () => atExit.delete(fn) };
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // 'exit' runs on process.exit() and on a normal end; signals are turned into an exit first.
  process.on("exit", () => {
    for (const c of live) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const fn of atExit) {
      try {
        fn();
      } catch {
        // best effort
      }
    }
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      console.error(`\nbench: ${sig}, stopping child processes`);
      process.exit(130);
    });
  }
}

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** The JSON after "ready " on stdout. */
  ready: Record<string, unknown>;
  /** The last lines the child printed (stdout and stderr), for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Raise the open-files limit of the child to this (through `sh -c 'ulimit -n N; exec …'`). */
  nofile?: number;
  /** With an IPC channel (process.send in the child). */
  ipc?: boolean;
  /** How long to wait for the ready line. */
  readyTimeoutMs?: number;
  /** Called with every stdout line, from the first (the tail keeps only the last 40). */
  onLine?: (line: string) => void;
}

const READY_RE = / ready (\{.*\})\s*$/;

/** Starts `node [nodeArgs] script args`, resolves once it printed "… ready {json}". */
export async function spawnNode(name: string, script: string, args: string[], o: SpawnOptions = {}): Promise<Child> {
  hookExit();
  const nodeArgv = [...(o.nodeArgs ?? []), script, ...args];
  const [cmd, argv] = o.nofile
    ? ["/bin/sh", ["-c", `ulimit -n ${o.nofile} && exec "$0" "$@"`, process.execPath, ...nodeArgv]]
    : [process.execPath, nodeArgv];
  const proc = spawn(cmd, argv, {
    stdio: ["ignore", "pipe", "pipe", ...(o.ipc ? ["ipc" as const] : [])],
    env: { ...process.env, ...o.env },
  });
  live.add(proc);
  const lines: string[] = [];
  const keep = (l: string) => {
    lines.push(l);
    if (lines.length > 40) lines.shift();
  };
  const exited = new Promise<void>((resolve) =>
    proc.once("exit", () => {
      live.delete(proc);
      resolve();
    }),
  );
  const tail = () => lines.join("\n");
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`${name}: not ready after ${o.readyTimeoutMs ?? 30_000} ms`)),
      o.readyTimeoutMs ?? 30_000,
    );
    const fail = (e: Error) => {
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(new Error(`${e.message}\n--- ${name} output ---\n${tail()}`));
    };
    const early = (code: number | null, sig: string | null) =>
      fail(new Error(`${name}: exited (${code ?? sig}) before it was ready`));
    proc.once("error", fail);
    proc.once("exit", early);
    createInterface({ input: proc.stderr! }).on("line", keep);
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      keep(l);
      o.onLine?.(l);
      const m = READY_RE.exec(l);
      if (m) {
        clearTimeout(timer);
        proc.removeListener("exit", early);
        proc.removeListener("error", fail);
        proc.on("error", () => {});
        try {
          resolve(JSON.parse(m[1]) as Record<string, unknown>);
        } catch (e) {
          fail(e as Error);
        }
      }
    });
  });
  return {
    name,
    proc,
    pid: proc.pid!,
    ready,
    tail,
    async stop(graceMs = 3000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

let clkTck: number | undefined;

/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK, 100 on Linux). */
function ticks(): number {
  if (clkTck === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

/** User + system CPU seconds of a process so far (/proc/PID/stat utime + stime). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / ticks();
}

/** Resident set size in bytes (/proc/PID/status VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** The soft and hard open-files limits a child would get, and whether the soft one can be raised to `want`. */
export function nofileLimits(want: number): { soft: number; hard: number; canRaise: boolean } {
  const r = spawnSync("/bin/sh", ["-c", "ulimit -Sn; ulimit -Hn"], { encoding: "utf8" });
  const [soft, hard] = (r.stdout ?? "")
    .trim()
    .split("\n")
    .map((s) => (s === "unlimited" ? Infinity : Number(s)));
  const raise = spawnSync("/bin/sh", ["-c", `ulimit -n ${want}`]);
  return { soft: soft ?? 1024, hard: hard ?? 1024, canRaise: raise.status === 0 };
}

/** Progress on one line on a terminal, else a line every few seconds (CI logs). */
export class Progress {
  private last = 0;
  private readonly tty = Boolean(process.stdout.isTTY);
  private shown = "";

  update(msg: string, force = false): void {
    if (this.tty) {
      process.stdout.write(`\r\x1b[K${msg}`);
      this.shown = msg;
      return;
    }
    const now = Date.now();
    if (!force && now - this.last < 3000) return;
    this.last = now;
    console.log(msg);
  }

  /** A line that stays. */
  line(msg: string): void {
    if (this.tty && this.shown) process.stdout.write("\r\x1b[K");
    this.shown = "";
    console.log(msg);
    this.last = Date.now();
  }
}

/** A port free right now on `host` (bound, read, released): for listeners whose flags refuse port 0. */
export async function freePort(host: string): Promise<number> {
  const net = await import("node:net");
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, host, resolve);
  });
  const port = (srv.address() as import("node:net").AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}
