// Worker processes (`--workers N`, HBONE_WORKERS): node:cluster forks N copies of this command. Each
// worker is a whole proxy: it loads the config (file or xDS) and its certificates itself and opens the
// same listeners, whose sockets the primary shares (round-robin accept, the cluster default on Linux),
// so connections spread over the workers and a config change reaches each through its own watch or
// xDS stream. The primary prints the one ready line once every worker is ready, passes SIGTERM/SIGINT
// to all of them (each drains its own tunnels) and exits when all have; a worker that dies outside a
// drain takes the others down with a non-zero exit, so the orchestrator restarts the whole set.
// Metrics, admin and readiness listeners are shared too: a request reaches one worker, whose figures
// are its own (log lines carry `worker`).

import cluster, { type Worker } from "node:cluster";
import type { Registry } from "prom-client";
import { logger, setSink, type LogRecord } from "../log.js";

const log = logger("workers");
const READY = "hbone-worker-ready";

/** The most workers one primary forks (far above any node's cores; a typo must not fork thousands). */
export const MAX_WORKERS = 64;

/** Whether this process is a worker of a `--workers N` primary. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

/** Worker side: every log line names the worker, and the ready line goes to the primary. */
export function workerSetup(): void {
  const id = cluster.worker?.id ?? 0;
  const out = (r: LogRecord) => process.stdout.write(JSON.stringify({ ...r, worker: id }) + "\n");
  setSink(out);
}

/** Worker side: reports this worker's ready line (its addresses) to the primary. */
export function workerReady(ready: Record<string, unknown>): void {
  process.send?.({ type: READY, ready });
}

/** The counters a worker reports when it stops (its share of the work; each worker's metrics are its own). */
export interface WorkerStats {
  tunnelsOpened: number;
  tunnelsClosed: number;
}

/** Worker side: sums this worker's istio_tcp_connections_{opened,closed}_total. */
export async function workerStats(registry: Registry): Promise<WorkerStats> {
  const sum = async (name: string) => {
    const m = registry.getSingleMetric(name);
    if (!m) return 0;
    return (await m.get()).values.reduce((a, v) => a + v.value, 0);
  };
  return {
    tunnelsOpened: await sum("istio_tcp_connections_opened_total"),
    tunnelsClosed: await sum("istio_tcp_connections_closed_total"),
  };
}

/**
 * Primary side: forks `n` workers running this same command, resolves with the exit code once all
 * of them have exited. `onReady` gets the first worker's ready line once all `n` are ready.
 */
export function runPrimary(
  n: number,
  onReady: (ready: Record<string, unknown>, pids: number[]) => void,
): Promise<number> {
  return new Promise((resolve) => {
    const workers: Worker[] = [];
    let ready = 0;
    let first: Record<string, unknown> | undefined;
    let stopping = false;
    let code = 0;
    let left = n;
    const stopAll = (sig: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info("stopping workers", { signal: sig, workers: workers.length });
      for (const w of workers) if (!w.isDead()) w.process.kill(sig);
    };
    process.once("SIGTERM", () => stopAll("SIGTERM"));
    process.once("SIGINT", () => stopAll("SIGINT"));
    for (let i = 0; i < n; i++) {
      const w = cluster.fork();
      workers.push(w);
      w.on("error", (e) => log.warn("worker IPC error", { worker: w.id, error: e }));
      w.on("message", (m: { type?: string; ready?: Record<string, unknown> }) => {
        if (m?.type !== READY || !m.ready) return;
        first ??= m.ready;
        if (++ready === n)
          onReady(
            first,
            workers.map((x) => x.process.pid ?? 0),
          );
      });
      w.once("exit", (c, sig) => {
        left--;
        if (!stopping) {
          // Not asked to stop: the set is no longer what was started. Drain the rest and fail.
          log.error("worker exited unexpectedly", { worker: w.id, code: c, signal: sig });
          code = 1;
          stopAll("SIGTERM");
        } else if (c !== 0) {
          code = c ?? 1;
        }
        if (left === 0) resolve(code);
      });
    }
  });
}
