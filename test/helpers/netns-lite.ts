// Network namespaces for tests (a light helper; test/helpers/netns.ts is the full one): create a namespace with
// loopback up and a veth pair, run node scripts inside it (`ip netns exec`), delete it. And the gate: tests that
// need root, iproute2 and nftables skip with one visible line when they are absent, and fail under CI=true.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { it } from "vitest";

function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const IN_CI = !!process.env.CI && process.env.CI !== "0" && process.env.CI !== "false";

/** What is missing for namespace tests (root, ip, nft), or undefined. */
export function netnsMissing(needNft = true): string | undefined {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (run the tests as root)");
  if (!runs("ip", ["-V"])) missing.push("ip (apt-get install -y iproute2)");
  if (needNft && !runs("nft", ["--version"])) missing.push("nft (apt-get install -y nftables)");
  return missing.length > 0 ? missing.join(", ") : undefined;
}

/**
 * Whether namespace tests can run. Call at a file's top level: when they cannot, prints one line naming what is
 * missing and (under CI=true) registers a failing test, so CI never skips them silently.
 */
export function requireNetns(needNft = true): boolean {
  const missing = netnsMissing(needNft);
  if (missing === undefined) return true;
  if (IN_CI) {
    it(`network namespace tests need ${missing}`, () => {
      throw new Error(`CI=true and missing: ${missing}`);
    });
  } else {
    console.log(`skipped: network namespace tests need ${missing}`);
  }
  return false;
}

let seq = 0;

export interface Netns {
  name: string;
  /** `ip -n NAME …` */
  ip(...args: string[]): void;
  /** Runs argv inside the namespace and returns its stdout. */
  exec(...argv: string[]): string;
  del(): void;
}

/** A new namespace `hbt-<pid>-<n>` with loopback up. */
export function createNetns(): Netns {
  const name = `hbt-${process.pid}-${seq++}`;
  execFileSync("ip", ["netns", "add", name], { timeout: 10_000 });
  const ns: Netns = {
    name,
    ip: (...args) => void execFileSync("ip", ["-n", name, ...args], { timeout: 10_000 }),
    exec: (...argv) => execFileSync("ip", ["netns", "exec", name, ...argv], { timeout: 20_000, encoding: "utf8" }),
    del: () => {
      try {
        execFileSync("ip", ["netns", "del", name], { stdio: "ignore", timeout: 10_000 });
      } catch {
        // already gone
      }
    },
  };
  ns.ip("link", "set", "lo", "up");
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
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
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

/** Runs a script inside the namespace to its end; returns its last stdout line. */
export async function runInNetns(ns: Netns, script: string, args: string[] = [], timeoutMs = 15_000): Promise<string> {
  const p = spawnInNetns(ns, script, args);
  try {
    return await p.line((l) => l.startsWith("RESULT "), timeoutMs).then((l) => l.slice("RESULT ".length));
  } finally {
    await p.stop();
  }
}
