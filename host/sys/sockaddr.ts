// sockaddr_in / sockaddr_in6 / sockaddr_un as Buffers (Linux layouts; family in host order, port in network order).

import net from "node:net";
import os from "node:os";
import { C } from "./libc.js";
import { SysError } from "./errors.js";
import { ipv6Text } from "../model/address.js";

export interface SockAddr {
  family: 4 | 6;
  address: string;
  port: number;
}

export const SOCKADDR_IN_LEN = 16;
export const SOCKADDR_IN6_LEN = 28;
export const SOCKADDR_STORAGE_LEN = 128;
const UNIX_PATH_MAX = 108;

/** Encodes an IP address and port; `address` must be a literal (no names). */
export function encodeInet(address: string, port: number): Buffer {
  const family = net.isIP(address);
  if (family === 4) {
    const b = Buffer.alloc(SOCKADDR_IN_LEN);
    b.writeUInt16LE(C.AF_INET, 0);
    b.writeUInt16BE(port, 2);
    address.split(".").forEach((o, i) => b.writeUInt8(Number(o), 4 + i));
    return b;
  }
  if (family === 6) {
    const b = Buffer.alloc(SOCKADDR_IN6_LEN);
    b.writeUInt16LE(C.AF_INET6, 0);
    b.writeUInt16BE(port, 2);
    ipv6Bytes(address).copy(b, 8);
    return b;
  }
  throw new SysError(`sockaddr(${address})`, "native", os.constants.errno.EINVAL, "(not an IP literal)");
}

/** Decodes sockaddr_in/in6 (null for any other family). */
export function decodeInet(b: Buffer, len = b.length): SockAddr | null {
  if (len < 2) return null;
  const family = b.readUInt16LE(0);
  if (family === C.AF_INET && len >= SOCKADDR_IN_LEN) {
    return { family: 4, address: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port: b.readUInt16BE(2) };
  }
  if (family === C.AF_INET6 && len >= SOCKADDR_IN6_LEN) {
    return { family: 6, address: formatIpv6(b.subarray(8, 24)), port: b.readUInt16BE(2) };
  }
  return null;
}

/** sockaddr_un for a filesystem path; returns the buffer and the length to pass. */
export function encodeUnix(path: string): { addr: Buffer; len: number } {
  const p = Buffer.from(path);
  if (p.length === 0 || p.length >= UNIX_PATH_MAX || p.includes(0)) {
    throw new SysError(
      `sockaddr_un(${path})`,
      "native",
      os.constants.errno.ENAMETOOLONG,
      `(a socket path must be 1-${UNIX_PATH_MAX - 1} bytes)`,
    );
  }
  const addr = Buffer.alloc(2 + UNIX_PATH_MAX);
  addr.writeUInt16LE(C.AF_UNIX, 0);
  p.copy(addr, 2);
  return { addr, len: 2 + p.length + 1 };
}

function ipv6Bytes(address: string): Buffer {
  // Expand "::" and a trailing dotted quad into eight groups (the input is a valid literal: net.isIP said so).
  let a = address;
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  const out = Buffer.alloc(16);
  const tailV4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  let groups: string[];
  if (tailV4) {
    const v4 = tailV4[1].split(".").map(Number);
    a = a.slice(0, -tailV4[1].length) + `${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const dbl = a.indexOf("::");
  if (dbl >= 0) {
    const head = a
      .slice(0, dbl)
      .split(":")
      .filter((s) => s !== "");
    const tail = a
      .slice(dbl + 2)
      .split(":")
      .filter((s) => s !== "");
    groups = [...head, ...Array<string>(8 - head.length - tail.length).fill("0"), ...tail];
  } else {
    groups = a.split(":");
  }
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function formatIpv6(b: Buffer): string {
  // IPv4-mapped (::ffff:a.b.c.d) reads back the way Node prints it.
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  return ipv6Text(b);
}
