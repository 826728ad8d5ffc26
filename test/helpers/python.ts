// The Python hyper-h2 peer (test/peers/h2peer.py) run as a child process, with Debian's python3
// (the one on PATH first may not see python3-h2). Missing python3-h2 fails loudly.

import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const PYTHON = "/usr/bin/python3";
export const H2PEER = fileURLToPath(new URL("../peers/h2peer.py", import.meta.url));

export function requireH2(): void {
  try {
    execFileSync(PYTHON, ["-c", "import h2"], { stdio: "pipe" });
  } catch {
    throw new Error("python3-h2 is not installed: apt-get install -y python3-h2 (.ci/run does this)");
  }
}

/** Runs h2peer.py with `args` to completion; returns its exit code, stdout and stderr. */
export async function runH2Peer(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  requireH2();
  const child = spawn(PYTHON, [H2PEER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, out, err };
}
