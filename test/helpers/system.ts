// Gating for tests that need something from the system (an apt package, root): they run whenever it is here.
// When it is missing and CI is unset, the suite is skipped (counted as skipped by `npm test`) and one line
// names what is missing and how to install it; under CI=true a missing need is a failing test, so CI (which
// installs everything, .ci/run) never skips an interop test silently.
//
//   const HAVE_H2 = requireSystem(PYTHON3_H2);
//   describe.skipIf(!HAVE_H2)("interop with Python hyper-h2", () => { ... });
//
// HBONE_HIDE_SYSTEM=python3-h2,openssl (comma-separated `what` names) makes the helper treat those as missing,
// to check this gating on a machine that has them.

import { appendFileSync } from "node:fs";
import { it } from "vitest";
import { runs } from "../../host/demo/node-clusters.js";

export interface SystemNeed {
  /** Short name, as in the skip line and HBONE_HIDE_SYSTEM: "python3-h2", "openssl", "root". */
  what: string;
  /** True when the need is met; called at most once per test file. */
  check: () => boolean;
  /** What to run to get it (an apt-get command, or how to run as root). */
  apt: string;
}

/** Debian's python3: the python3 first on PATH may not see apt's python3-h2. */
export const PYTHON = "/usr/bin/python3";

export const PYTHON3_H2: SystemNeed = {
  what: "python3-h2",
  check: () => runs(PYTHON, ["-c", "import h2"]),
  apt: "apt-get install -y python3-h2",
};
export const OPENSSL: SystemNeed = {
  what: "openssl",
  check: () => runs("openssl", ["version"]),
  apt: "apt-get install -y openssl",
};
export const IPROUTE2: SystemNeed = { what: "ip", check: () => runs("ip", ["-V"]), apt: "apt-get install -y iproute2" };
export const NFTABLES: SystemNeed = {
  what: "nft",
  check: () => runs("nft", ["--version"]),
  apt: "apt-get install -y nftables",
};
export const ROOT: SystemNeed = {
  what: "root",
  check: () => process.getuid?.() === 0,
  apt: "run the tests as root (network namespaces need CAP_NET_ADMIN)",
};

const IN_CI = !!process.env.CI && process.env.CI !== "0" && process.env.CI !== "false";
const hidden = new Set(
  (process.env.HBONE_HIDE_SYSTEM ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
const known = new Map<string, boolean>();
const reported = new Set<string>();

/** Whether every need is met. Call at a test file's top level (or in a describe body), not inside a test. */
export function requireSystem(...needs: SystemNeed[]): boolean {
  const missing = needs.filter((n) => {
    let ok = known.get(n.what);
    if (ok === undefined) known.set(n.what, (ok = !hidden.has(n.what) && n.check()));
    return !ok;
  });
  for (const n of missing) {
    if (reported.has(n.what)) continue;
    reported.add(n.what);
    const line = `missing system peer: ${n.what} (${n.apt})`;
    if (IN_CI) {
      it(`needs ${n.what}`, () => {
        throw new Error(`${line}: CI=true, so tests that need it fail instead of skipping`);
      });
    } else if (process.env.HBONE_SYSTEM_REPORT) {
      // `npm test` (test/summary.mjs) collects these and prints each once before its closing line.
      appendFileSync(process.env.HBONE_SYSTEM_REPORT, `${line}, tests skipped\n`);
    } else {
      console.warn(`${line}, tests skipped`);
    }
  }
  return missing.length === 0;
}

/**
 * setpriv's arguments that run `node cli` as nobody, or null when nobody cannot run it from this checkout (a
 * private clone, e.g. under a 0700 `mktemp -d` directory): the caller then drops the capability it tests instead.
 */
export function asNobody(cli: string): string[] | null {
  const args = ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, cli];
  return runs("setpriv", [...args, "version"]) ? args : null;
}
