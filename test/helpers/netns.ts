// Network namespaces for tests: `ip netns add hb-test-<random>`, loopback up, optional veth with addresses and
// nft rules, always removed (destroy() in afterAll/afterEach, plus a process-exit sweep for a test that crashed).
// Traffic stays inside the namespaces the test made.
//
// Gating: needs root, iproute2 and nftables. When absent, `netnsAvailable()` prints one line and returns false
// (use `describe.skipIf(!NETNS)`); under CI=true it registers a failing test instead, so CI never skips silently.
// (Same rule as test/helpers/system.ts once both are merged: switch to requireSystem(ROOT, IPROUTE2, NFTABLES).)

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { requireNetns } from "./netns-lite.js";

function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Root, `ip` and `nft` present? Call at a test file's top level. The one gate (netns-lite.ts's requireNetns): one
 *  visible line when missing, a failing test under CI=true. */
export function netnsAvailable(): boolean {
  return requireNetns();
}

const live = new Set<string>();
process.once("exit", () => {
  for (const name of live) runs("ip", ["netns", "del", name]);
});

export interface Netns {
  name: string;
  /** /var/run/netns/<name> */
  path: string;
  /** Runs `cmd args` inside the namespace (ip netns exec); returns stdout; throws with stderr on failure. */
  exec(cmd: string, args: string[], input?: string): string;
  /** Loads an nft ruleset (text) inside the namespace. */
  nft(rules: string): void;
  /**
   * Adds a veth pair whose both ends stay in this namespace, `addrs` on the first end (e.g. "10.20.0.1/24",
   * "fd00:20::1/64"), so addresses of those subnets route out of it (and can be redirected by nft).
   */
  addVeth(addrs: string[]): void;
  /** Removes the namespace (idempotent). */
  destroy(): void;
}

function ip(args: string[], input?: string): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", input, timeout: 10_000, stdio: ["pipe", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Creates `hb-test-<prefix>-<random>` with loopback up. */
export function createNetns(prefix = "ns"): Netns {
  const name = `hb-test-${prefix}-${randomBytes(3).toString("hex")}`;
  ip(["netns", "add", name]);
  live.add(name);
  let alive = true;
  const ns: Netns = {
    name,
    path: `/var/run/netns/${name}`,
    exec: (cmd, args, input) => ip(["netns", "exec", name, cmd, ...args], input),
    nft: (rules) => void ip(["netns", "exec", name, "nft", "-f", "-"], rules),
    addVeth(addrs) {
      const a = `v${randomBytes(2).toString("hex")}`;
      ip(["-n", name, "link", "add", `${a}a`, "type", "veth", "peer", "name", `${a}b`]);
      for (const addr of addrs)
        ip(["-n", name, "addr", "add", addr, "dev", `${a}a`, ...(addr.includes(":") ? ["nodad"] : [])]);
      ip(["-n", name, "link", "set", `${a}a`, "up"]);
      ip(["-n", name, "link", "set", `${a}b`, "up"]);
    },
    destroy() {
      if (!alive) return;
      alive = false;
      live.delete(name);
      runs("ip", ["netns", "del", name]);
    },
  };
  try {
    ip(["-n", name, "link", "set", "lo", "up"]);
  } catch (err) {
    ns.destroy();
    throw err;
  }
  return ns;
}

/** Runs a command inside `ns` asynchronously; resolves with exit code, stdout and stderr (bounded by `timeoutMs`). */
export function execIn(
  ns: Netns,
  cmd: string,
  args: string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", ns.name, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
