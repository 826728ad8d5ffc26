// The Python hyper-h2 peer (test/peers/h2peer.py) run as a child process, with Debian's python3.
// Suites that use it are gated on PYTHON3_H2 (test/helpers/system.ts).

import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { PYTHON, PYTHON3_H2, requireSystem } from "./system.js";

export { PYTHON };
export const H2PEER = fileURLToPath(new URL("../peers/h2peer.py", import.meta.url));

/** Whether python3-h2 is here (see requireSystem: skip with one line, or fail under CI=true). */
export function haveH2(): boolean {
  return requireSystem(PYTHON3_H2);
}

/** For callers inside a test: throws when python3-h2 is missing (prefer describe.skipIf(!haveH2()) at top level). */
export function requireH2(): void {
  if (!PYTHON3_H2.check()) throw new Error(`python3-h2 is not installed: ${PYTHON3_H2.apt}`);
}

/** Runs h2peer.py with `args` to completion; returns its exit code, stdout and stderr. */
export async function runH2Peer(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(PYTHON, [H2PEER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "",
    err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  child.on("error", (e) => (err += String(e)));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, out, err };
}
