// Worker processes (`--workers N`, HBONE_WORKERS): node:cluster forks N copies of this command. Each
// worker is a whole proxy: it loads the config (file or xDS) and its certificates itself and opens the
// same listeners, whose sockets the primary shares (round-robin accept, the cluster default on Linux),
// so connections spread over the workers and a config change reaches each through its own watch or
// xDS stream. The primary prints the one ready line once every worker is ready, passes SIGTERM/SIGINT
// to all of them (each drains its own tunnels) and exits when all have; a worker that dies outside a
// drain takes the others down with a non-zero exit, so the orchestrator restarts the whole set.
// The status endpoints are the primary's, so that they speak for the whole set, as ztunnel's one process
// does: :15020 sums the workers' metrics (a scrape that reached one worker would see its counters only, and
// Prometheus would read every switch between workers as a counter reset), :15021 is ready while every worker
// answers ready, and the admin's POST /logging and /quitquitquit reach every worker. The primary asks its
// workers over the cluster's IPC channel; a worker that does not answer in time fails that request (503),
// never the primary.

import cluster, { type Worker } from "node:cluster";
import { logger, setSink, type LogRecord } from "../log.js";
import { applyLogging, RouteError, startStatusServers, type StatusServersOptions } from "../admin.js";
import { aggregateMetrics, client, processMetrics } from "../prom.js";
import { sumTcp, tcpText } from "../tcp-series.js";
import type { MetricsSnapshot } from "../metrics.js";

const log = logger("workers");
const READY = "hbone-worker-ready";
/** primary -> worker: a question ({ id, what, arg }); worker -> primary: its answer ({ id, value } or { id, error }). */
const ASK = "hbone-ask";
const ANSWER = "hbone-answer";

/** What a primary asks its workers. */
type Question = "metrics" | "ready" | "config_dump" | "logging";
interface Ask {
  type: typeof ASK;
  id: number;
  what: Question;
  arg?: string;
}
interface Answer {
  type: typeof ANSWER;
  id: number;
  value?: unknown;
  error?: string;
}

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
  sendToPrimary({ type: READY, ready });
}

/** What a worker answers its primary with (the same figures its own status endpoints would serve). */
export interface WorkerAnswers {
  metrics: () => Promise<unknown>;
  ready: () => boolean;
  configDump: () => unknown;
}

/** Worker side: answers the primary's questions (the status endpoints are the primary's: see the top). */
export function workerAnswers(a: WorkerAnswers): void {
  process.on("message", (m: Partial<Ask>) => {
    if (m?.type !== ASK || typeof m.id !== "number") return;
    const id = m.id;
    new Promise<unknown>((resolve) => {
      if (m.what === "metrics") resolve(a.metrics());
      else if (m.what === "ready") resolve(a.ready());
      else if (m.what === "config_dump") resolve(a.configDump());
      else if (m.what === "logging") resolve(applyLogging(String(m.arg)));
      else throw new Error(`unknown question ${String(m.what)}`);
    }).then(
      (value) => sendToPrimary({ type: ANSWER, id, value }),
      (err: Error) => sendToPrimary({ type: ANSWER, id, error: err.message }),
    );
  });
}

/** A message to the primary; a channel that closed (the primary is gone) is logged, never thrown. */
function sendToPrimary(m: unknown): void {
  process.send?.(m, undefined, {}, (err: Error | null) => {
    if (err) log.debug("message to the primary not sent", { error: err });
  });
}

/** The counters a worker reports when it stops (its share of the work; each worker's metrics are its own). */
export interface WorkerStats {
  tunnelsOpened: number;
  tunnelsClosed: number;
}

/** Worker side: this worker's istio_tcp_connections_{opened,closed}_total, summed over its series. */
export function workerStats(metrics: { totals(): { opened: number; closed: number } }): WorkerStats {
  const t = metrics.totals();
  return { tunnelsOpened: t.opened, tunnelsClosed: t.closed };
}

/** Where a primary serves the status endpoints for its workers (the same flags a single proxy takes). */
export type PrimaryStatus = Pick<StatusServersOptions, "statusAddress" | "ports">;

/** How long a primary waits for a worker's answer: a readiness probe must answer within kubelet's 1 s. */
const ANSWER_MS: Record<Question, number> = { metrics: 5_000, ready: 900, config_dump: 5_000, logging: 5_000 };

/** The primary's questions in flight, each settled by its worker's answer, its timeout or its worker's exit. */
class Questions {
  private next = 0;
  private readonly open = new Map<
    number,
    { worker: Worker; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();

  ask(worker: Worker, what: Question, arg?: string): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.settle(id, new Error(`worker ${worker.id} did not answer ${what} in ${ANSWER_MS[what]} ms`)),
        ANSWER_MS[what],
      );
      this.open.set(id, { worker, resolve, reject, timer });
      const m: Ask = { type: ASK, id, what, arg };
      worker.send(m, undefined, (err: Error | null) => {
        if (err) this.settle(id, new Error(`worker ${worker.id}: ${err.message}`));
      });
    });
  }

  answered(m: Partial<Answer>): void {
    if (typeof m.id !== "number") return;
    this.settle(m.id, m.error !== undefined ? new Error(m.error) : undefined, m.value);
  }

  /** A worker that exited answers nothing more. */
  gone(worker: Worker): void {
    for (const [id, q] of this.open) if (q.worker === worker) this.settle(id, new Error(`worker ${worker.id} exited`));
  }

  private settle(id: number, err: Error | undefined, value?: unknown): void {
    const q = this.open.get(id);
    if (!q) return; // answered after its timeout
    this.open.delete(id);
    clearTimeout(q.timer);
    if (err) q.reject(err);
    else q.resolve(value);
  }
}

/**
 * Primary side: serves the status endpoints for the set (see the top), forks `n` workers running this same
 * command, and resolves with the exit code once all of them have exited. `onReady` gets the first worker's ready
 * line, with the primary's status addresses, once all `n` are ready.
 */
export async function runPrimary(
  n: number,
  status: PrimaryStatus,
  onReady: (ready: Record<string, unknown>, pids: number[]) => void,
): Promise<number> {
  const workers: Worker[] = [];
  const questions = new Questions();
  let ready = 0;
  let stopping = false;
  const stopAll = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping workers", { signal: sig, workers: workers.length });
    for (const w of workers) if (!w.isDead()) w.process.kill(sig);
  };
  const live = () => workers.filter((w) => w.isConnected());
  /** A question whose failure (no answer, an exit, the worker's error) is the request's 503, naming the worker. */
  const asked = <T>(answer: Promise<T>) =>
    answer.catch((err: Error) => {
      throw new RouteError(err.message, 503);
    });
  /** Every live worker's answer; the first failure fails the request. */
  const askAll = (what: Question, arg?: string) => asked(Promise.all(live().map((w) => questions.ask(w, what, arg))));
  // The primary's own process (its memory and CPU are the set's too) in the sums.
  const own = new client.Registry();
  processMetrics(own);
  const servers = await startStatusServers({
    ...status,
    metrics: {
      contentType: own.contentType,
      chunks: async () => {
        const workers = (await askAll("metrics")) as MetricsSnapshot[];
        const rest = await aggregateMetrics([await own.getMetricsAsJSON(), ...workers.map((w) => w.registry)]);
        return [rest + "\n", ...(await tcpText(sumTcp(workers.map((w) => w.tcp))))];
      },
    },
    ready: async () =>
      !stopping &&
      ready === n &&
      (await Promise.all(live().map((w) => questions.ask(w, "ready").catch(() => false)))).every((ok) => ok === true),
    configDump: async () => {
      const w = live()[0];
      if (!w) throw new RouteError("no worker is running", 503);
      return asked(questions.ask(w, "config_dump"));
    },
    loggingApplied: async (spec) => void (await askAll("logging", spec)),
    quit: () => stopAll("SIGTERM"),
  });
  const addresses = { admin: servers.admin?.port, metrics: servers.metrics?.port, readiness: servers.readiness?.port };
  return new Promise((resolve) => {
    let first: Record<string, unknown> | undefined;
    let code = 0;
    let left = n;
    process.once("SIGTERM", () => stopAll("SIGTERM"));
    process.once("SIGINT", () => stopAll("SIGINT"));
    for (let i = 0; i < n; i++) {
      const w = cluster.fork();
      workers.push(w);
      w.on("error", (e) => log.warn("worker IPC error", { worker: w.id, error: e }));
      w.on("message", (m: { type?: string; ready?: Record<string, unknown> }) => {
        if (m?.type === ANSWER) return questions.answered(m as Partial<Answer>);
        if (m?.type !== READY || !m.ready) return;
        first ??= m.ready;
        if (++ready === n)
          onReady(
            { ...first, ...addresses },
            workers.map((x) => x.process.pid ?? 0),
          );
      });
      w.once("exit", (c, sig) => {
        left--;
        questions.gone(w);
        if (!stopping) {
          // Not asked to stop: the set is no longer what was started. Drain the rest and fail.
          log.error("worker exited unexpectedly", { worker: w.id, code: c, signal: sig });
          code = 1;
          stopAll("SIGTERM");
        } else if (c !== 0) {
          code = c ?? 1;
        }
        if (left === 0) {
          for (const s of servers.servers) s.close();
          resolve(code);
        }
      });
    }
  });
}
