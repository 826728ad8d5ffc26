// `--hog=N`: N busy-looping processes for the duration of the proxies suite, so a run "on a busy
// machine" (other processes competing for the cores) is one flag and the same every time.

import { spawn, type ChildProcess } from "node:child_process";
import { onExit } from "./procs.js";

export interface Hog {
  count: number;
  stop(): Promise<void>;
}

/** Starts `n` processes that spin until stopped (killed at exit too). */
export function startHog(n: number): Hog {
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new Error(`--hog: expected 0..64 processes, got ${n}`);
  const procs: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    // Bounded: each spins at most an hour, in case every exit hook of ours is skipped (SIGKILL).
    const p = spawn(process.execPath, ["-e", "const end = Date.now() + 3600e3; while (Date.now() < end);"], {
      stdio: "ignore",
    });
    p.on("error", () => {});
    procs.push(p);
  }
  const hook = onExit(() => {
    for (const p of procs) p.kill("SIGKILL");
  });
  return {
    count: n,
    async stop() {
      hook.cancel();
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null || p.signalCode !== null) return resolve();
              p.once("exit", () => resolve());
              p.kill("SIGKILL");
            }),
        ),
      );
    },
  };
}
