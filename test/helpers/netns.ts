// Network namespaces for tests: `ip netns add hb-test-<prefix>-<random>` (unique across runs and processes) with
// loopback up, veths (inside one namespace, or joining two), nft rules, node scripts run inside (`ip netns exec`),
// always removed (del() in afterAll/afterEach, plus a process-exit sweep for a test that crashed). Traffic stays
// inside the namespaces the test made.
//
// Gating (test/helpers/system.ts): `requireNetns()` needs root, iproute2 and nftables; when one is missing it prints
// one line naming it and returns false (use `describe.skipIf(!OK)`); under CI=true it registers a failing test.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { IPROUTE2, NFTABLES, ROOT, requireSystem } from "./system.js";

/** Root, `ip` and `nft` present? Call at a test file's top level. */
export function requireNetns(): boolean {
  return requireSystem(ROOT, IPROUTE2, NFTABLES);
}

const live = new Set<string>();
process.once("exit", () => {
  for (const name of live) {
    try {
      execFileSync("ip", ["netns", "del", name], { stdio: "ignore", timeout: 10_000 });
    } catch {
      // already gone
    }
  }
});

function ip(args: string[], input?: string): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", input, timeout: 20_000, stdio: ["pipe", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

export interface Netns {
  name: string;
  /** /var/run/netns/<name> */
  path: string;
  /** `ip -n NAME …` */
  ip(...args: string[]): void;
  /** Runs argv inside the namespace (ip netns exec); returns stdout; throws with stderr on failure. */
  exec(...argv: string[]): string;
  /** Loads an nft ruleset (text) inside the namespace. */
  nft(rules: string): void;
  /**
   * Adds a veth pair whose both ends stay in this namespace, `addrs` on the first end (e.g. "10.20.0.1/24",
   * "fd00:20::1/64"), so addresses of those subnets route out of it (and can be redirected by nft).
   */
  addVeth(addrs: string[]): void;
  /** Removes the namespace (idempotent). */
  del(): void;
}

let seq = 0;

/** Creates `hb-test-<prefix>-<random>` with loopback up. */
export function createNetns(prefix = "ns"): Netns {
  const name = `hb-test-${prefix}-${randomBytes(3).toString("hex")}`;
  ip(["netns", "add", name]);
  live.add(name);
  let alive = true;
  const ns: Netns = {
    name,
    path: `/var/run/netns/${name}`,
    ip: (...args) => void ip(["-n", name, ...args]),
    exec: (...argv) => ip(["netns", "exec", name, ...argv]),
    nft: (rules) => void ip(["netns", "exec", name, "nft", "-f", "-"], rules),
    addVeth(addrs) {
      const a = `v${randomBytes(2).toString("hex")}`;
      ip(["-n", name, "link", "add", `${a}a`, "type", "veth", "peer", "name", `${a}b`]);
      for (const addr of addrs)
        ip(["-n", name, "addr", "add", addr, "dev", `${a}a`, ...(addr.includes(":") ? ["nodad"] : [])]);
      ip(["-n", name, "link", "set", `${a}a`, "up"]);
      ip(["-n", name, "link", "set", `${a}b`, "up"]);
    },
    del() {
      if (!alive) return;
      alive = false;
      live.delete(name);
      try {
        ip(["netns", "del", name]);
      } catch {
        // already gone
      }
    },
  };
  try {
    ns.ip("link", "set", "lo", "up");
  } catch (err) {
    ns.del();
    throw err;
  }
  return ns;
}

/** Joins `a` and `b` with a veth pair: a gets addrA (e.g. "10.77.0.2/24"), b addrB; optional IPv6 ("fd00::2/64").
 *  Returns the interface names [in a, in b]. */
export function vethPair(a: Netns, b: Netns, addrA: string, addrB: string, v6?: [string, string]): [string, string] {
  const ifA = `va${seq}`;
  const ifB = `vb${seq++}`;
  a.ip("link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.name);
  a.ip("addr", "add", addrA, "dev", ifA);
  b.ip("addr", "add", addrB, "dev", ifB);
  if (v6) {
    a.ip("addr", "add", v6[0], "dev", ifA, "nodad");
    b.ip("addr", "add", v6[1], "dev", ifB, "nodad");
  }
  a.ip("link", "set", ifA, "up");
  b.ip("link", "set", ifB, "up");
  return [ifA, ifB];
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

/** A node ES-module script running inside a namespace (stdout lines readable; killed by stop()). */
export interface NetnsProcess {
  child: ChildProcess;
  /** Resolves with the first stdout line that satisfies `match`. */
  line(match: (l: string) => boolean, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export function spawnInNetns(ns: Netns, script: string, args: string[] = []): NetnsProcess {
  const child = spawn(
    "ip",
    ["netns", "exec", ns.name, process.execPath, "--input-type=module", "-e", script, "--", ...args],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.on("error", () => undefined);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let buf = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = once(child, "exit");
  return {
    child,
    line: (match, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const deadline = setTimeout(
          () =>
            reject(new Error(`no matching line from the script in ${ns.name} in ${timeoutMs} ms; stderr: ${stderr}`)),
          timeoutMs,
        );
        const look = () => {
          const l = lines.find(match);
          if (l !== undefined) {
            clearTimeout(deadline);
            resolve(l);
          } else if (child.exitCode !== null) {
            clearTimeout(deadline);
            reject(new Error(`script in ${ns.name} exited ${child.exitCode}; stderr: ${stderr}`));
          } else {
            waiters.push(look);
          }
        };
        child.once("exit", () => waiters.splice(0).forEach((w) => w()));
        look();
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/** Runs a script inside the namespace to its end; returns what it printed after "RESULT ". */
export async function runInNetns(ns: Netns, script: string, args: string[] = [], timeoutMs = 15_000): Promise<string> {
  const p = spawnInNetns(ns, script, args);
  try {
    return await p.line((l) => l.startsWith("RESULT "), timeoutMs).then((l) => l.slice("RESULT ".length));
  } finally {
    await p.stop();
  }
}
