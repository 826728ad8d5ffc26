// Addresses as HBONE writes them: `ip:port`, `[v6]:port` (ztunnel's authority format), and the
// ports no tunnel may target (the proxy's own: ztunnel's SelfCall).

import net from "node:net";

export interface HostPort {
  host: string;
  port: number;
}

/** ztunnel's own ports: outbound capture, inbound plaintext, HBONE, SOCKS5. */
export const PROXY_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15080]);

function validPort(s: string, min = 1): number | null {
  if (!/^\d{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= min && n <= 65535 ? n : null;
}

/** A listen address `ip:port` or `[v6]:port`, where port 0 means "pick a free one". */
export function parseListenAddress(a: string): HostPort | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(a) ?? /^([^:[\]]+):(\d+)$/.exec(a);
  if (!m || net.isIP(m[1]) === 0) return null;
  const port = validPort(m[2], 0);
  return port === null ? null : { host: m[1], port };
}

/** Parses `ip:port` or `[v6]:port` (an IP, not a hostname); null when malformed. */
export function parseIpAuthority(a: string): HostPort | null {
  const m = /^\[([^\]]+)\]:([^:]+)$/.exec(a) ?? /^([^:[\]]+):([^:]+)$/.exec(a);
  if (!m) return null;
  const port = validPort(m[2]);
  if (port === null || net.isIP(m[1]) === 0) return null;
  if (a.startsWith("[") !== (net.isIP(m[1]) === 6)) return null;
  return { host: m[1], port };
}

/** Parses `host:port` where host is an IP, a [v6] or a DNS name; null when malformed. */
export function parseHostPort(a: string): HostPort | null {
  const ip = parseIpAuthority(a);
  if (ip) return ip;
  const m = /^([A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?):([^:]+)$/.exec(a);
  if (!m) return null;
  const port = validPort(m[5]);
  return port === null ? null : { host: m[1].replace(/\.$/, "").toLowerCase(), port };
}

/** `ip:port`, bracketing IPv6 (an IPv6 literal is the only host with a colon: no regex per tunnel). */
export function formatAuthority(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
