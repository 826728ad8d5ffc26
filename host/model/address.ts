// Addresses in the mesh model: an IP on a network, a gateway (waypoint or network gateway), and the one spelling
// of an IP every lookup uses.

import { isIP } from "node:net";

/** An IP on a network (`net/10.0.0.1`, or `/10.0.0.1` for the default network ""). */
export interface NetworkAddress {
  network: string;
  address: string;
}
export type GatewayDestination = { network: string; address: string } | { namespace: string; hostname: string };
/** A waypoint or network gateway: `destination` is `net/IP` or `ns/hostname` in YAML. */
export interface GatewayAddress {
  destination: GatewayDestination;
  hboneMtlsPort: number;
}

/**
 * One spelling per address, so lookups by a socket's address find the configured one: IPv6 compressed and
 * lower-cased (RFC 5952, via the WHATWG URL serializer), IPv4-mapped IPv6 as plain IPv4. Returns undefined for a
 * string that is not an IP.
 */
export function canonicalIp(ip: string): string | undefined {
  const v = isIP(ip);
  if (v === 4) return ip;
  if (v !== 6) return undefined;
  if (ip.includes("%")) return ip.toLowerCase(); // zone ids: the URL parser refuses them
  const lower = ip.toLowerCase();
  if (lower.startsWith("::ffff:") && isIP(lower.slice(7)) === 4) return lower.slice(7);
  const host = new URL(`http://[${ip}]/`).hostname;
  const c = host.slice(1, -1);
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c);
  if (m) {
    const hi = parseInt(m[1]!, 16);
    const lo = parseInt(m[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return c;
}

/**
 * The RFC 5952 text of 16 network-order IPv6 bytes: lower-case hex groups, the longest run (the first if tied) of
 * two or more zero groups as "::". An IPv4-mapped address keeps its IPv6 form (callers choose how to spell it).
 */
export function ipv6Text(b: Uint8Array): string {
  const g = new Array<number>(8);
  for (let i = 0; i < 8; i++) g[i] = (b[2 * i]! << 8) | b[2 * i + 1]!;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    g
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(":");
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}
