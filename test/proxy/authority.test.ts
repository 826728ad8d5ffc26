// HBONE authorities and listen addresses (host/proxy/authority.ts) as tables: what parses to what, what is
// refused (null), the formatter's round trip, and the proxy's own ports.

import { describe, expect, it } from "vitest";
import {
  PROXY_PORTS,
  formatAuthority,
  parseHostPort,
  parseIpAuthority,
  parseListenAddress,
} from "../../host/proxy/authority.js";

describe("parseIpAuthority (a CONNECT :authority: an IP and a port)", () => {
  it.each([
    ["10.0.0.1:8080", { host: "10.0.0.1", port: 8080 }],
    ["127.0.0.1:1", { host: "127.0.0.1", port: 1 }],
    ["0.0.0.0:65535", { host: "0.0.0.0", port: 65535 }],
    ["[2001:db8::1]:443", { host: "2001:db8::1", port: 443 }],
    ["[::1]:80", { host: "::1", port: 80 }],
    ["[::ffff:10.0.0.1]:80", { host: "::ffff:10.0.0.1", port: 80 }],
    ["10.0.0.1:08080", { host: "10.0.0.1", port: 8080 }],
  ])("%s", (a, want) => expect(parseIpAuthority(a)).toEqual(want));

  it.each([
    ["", "empty"],
    ["10.0.0.1", "no port"],
    ["10.0.0.1:", "empty port"],
    ["10.0.0.1:0", "port 0"],
    ["10.0.0.1:65536", "port above 65535"],
    ["10.0.0.1:123456", "six digits"],
    ["10.0.0.1:-1", "negative"],
    ["10.0.0.1:+80", "sign"],
    ["10.0.0.1:8 0", "space"],
    ["10.0.0.1:0x50", "hex"],
    ["10.0.0.1:80:80", "two ports"],
    ["2001:db8::1:443", "IPv6 without brackets"],
    ["[10.0.0.1]:80", "IPv4 in brackets"],
    ["[2001:db8::1]", "bracketed, no port"],
    ["[2001:db8::1]:", "bracketed, empty port"],
    ["[2001:db8::zz]:80", "not an IPv6"],
    ["256.0.0.1:80", "octet over 255"],
    ["10.0.0:80", "three octets"],
    ["echo.default.svc.cluster.local:80", "a hostname"],
    [" 10.0.0.1:80", "leading space"],
    ["10.0.0.1:80 ", "trailing space"],
  ])("%s is refused (%s)", (a) => expect(parseIpAuthority(a)).toBeNull());
});

describe("parseHostPort (an IP, a [v6] or a DNS name, and a port)", () => {
  it.each([
    ["10.0.0.1:80", { host: "10.0.0.1", port: 80 }],
    ["[::1]:80", { host: "::1", port: 80 }],
    ["echo.default.svc.cluster.local:80", { host: "echo.default.svc.cluster.local", port: 80 }],
    ["Echo.Default.SVC.cluster.local.:8080", { host: "echo.default.svc.cluster.local", port: 8080 }],
    ["localhost:1", { host: "localhost", port: 1 }],
    ["a-b.c9:65535", { host: "a-b.c9", port: 65535 }],
    [`${"a".repeat(63)}.example:80`, { host: `${"a".repeat(63)}.example`, port: 80 }],
  ])("%s", (a, want) => expect(parseHostPort(a)).toEqual(want));

  it.each([
    ["echo:0", "port 0"],
    ["echo:65536", "port above 65535"],
    ["echo", "no port"],
    ["-echo:80", "label starting with '-'"],
    ["ec_ho:80", "underscore"],
    ["echo..svc:80", "empty label"],
    [".echo:80", "leading dot"],
    [`${"a".repeat(64)}.example:80`, "label over 63 bytes"],
    ["échο:80", "non-ASCII"],
    ["echo:80/path", "a path"],
    ["user@echo:80", "userinfo"],
    ["2001:db8::1:80", "IPv6 without brackets"],
  ])("%s is refused (%s)", (a) => expect(parseHostPort(a)).toBeNull());
});

describe("parseListenAddress (where a listener binds; port 0 picks one)", () => {
  it.each([
    ["127.0.0.1:15001", { host: "127.0.0.1", port: 15001 }],
    ["127.0.0.1:0", { host: "127.0.0.1", port: 0 }],
    ["[::1]:0", { host: "::1", port: 0 }],
    ["0.0.0.0:15080", { host: "0.0.0.0", port: 15080 }],
  ])("%s", (a, want) => expect(parseListenAddress(a)).toEqual(want));

  it.each([
    ["localhost:80", "a name"],
    ["127.0.0.1", "no port"],
    ["127.0.0.1:65536", "port above 65535"],
    ["::1:80", "IPv6 without brackets"],
    ["127.0.0.1:x", "not a number"],
  ])("%s is refused (%s)", (a) => expect(parseListenAddress(a)).toBeNull());
});

describe("formatAuthority", () => {
  it.each([
    ["10.0.0.1", 80, "10.0.0.1:80"],
    ["2001:db8::1", 443, "[2001:db8::1]:443"],
    ["::ffff:10.0.0.1", 80, "[::ffff:10.0.0.1]:80"],
    ["echo.default.svc.cluster.local", 80, "echo.default.svc.cluster.local:80"],
  ])("%s port %i -> %s, which parses back", (host, port, want) => {
    expect(formatAuthority(host, port)).toBe(want);
    expect(parseHostPort(want)).toEqual({ host, port });
  });
});

it("the proxy's own ports (ztunnel's SelfCall refusals): 15001, 15006, 15008, 15080 and no other", () => {
  expect([...PROXY_PORTS].sort()).toEqual([15001, 15006, 15008, 15080]);
  for (const p of [15000, 15020, 15021, 15053, 80]) expect(PROXY_PORTS.has(p)).toBe(false);
});
