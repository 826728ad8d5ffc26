// Capabilities of this process (from /proc/self/status), so node mode can refuse to start with one clear line
// instead of failing pod by pod: in-pod mode needs CAP_NET_ADMIN (marks, nft-facing options), CAP_NET_RAW
// (IP_TRANSPARENT) and CAP_SYS_ADMIN (setns into another pod's namespace).

import fs from "node:fs";

const BITS = {
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_SYS_ADMIN: 21,
} as const;

export type Capability = keyof typeof BITS;

export const INPOD_CAPABILITIES: Capability[] = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"];

/** The effective capability mask (CapEff), or null where /proc is not Linux's. */
export function effectiveCapabilities(status = readStatus()): bigint | null {
  const m = status && /^CapEff:\s*([0-9a-f]+)$/im.exec(status);
  return m ? BigInt(`0x${m[1]}`) : null;
}

/** Which of `needed` this process lacks ([] when all are there, or when it cannot tell). */
export function missingCapabilities(needed: Capability[] = INPOD_CAPABILITIES, status = readStatus()): Capability[] {
  const eff = effectiveCapabilities(status);
  if (eff === null) return [];
  return needed.filter((c) => (eff & (1n << BigInt(BITS[c]))) === 0n);
}

function readStatus(): string | null {
  try {
    return fs.readFileSync("/proc/self/status", "utf8");
  } catch {
    return null;
  }
}
