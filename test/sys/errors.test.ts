// The errno → message mapping of host/sys (pure: runs anywhere): every refusal names the capability or kernel
// feature it needed, and the call.

import os from "node:os";
import { describe, expect, it } from "vitest";
import { SysError, errnoName, errnoOf, hintFor, isSysError } from "../../host/sys/errors.js";
import { effectiveCapabilities, missingCapabilities } from "../../host/sys/caps.js";

const E = os.constants.errno;

describe("SysError", () => {
  it("EPERM on a socket option names CAP_NET_ADMIN and how to get it", () => {
    const e = new SysError("setsockopt(SO_MARK=0x539)", "so-mark", E.EPERM);
    expect(e.code).toBe("EPERM");
    expect(e.message).toBe(
      "setsockopt(SO_MARK=0x539): EPERM — needs CAP_NET_ADMIN (run as root or grant the capability)",
    );
    expect(isSysError(e, "EPERM")).toBe(true);
    expect(isSysError(e, "EACCES")).toBe(false);
    expect(isSysError(new Error("x"))).toBe(false);
  });

  it("names the capability per call", () => {
    expect(hintFor("setns", "EPERM")).toMatch(/CAP_SYS_ADMIN/);
    expect(hintFor("ip-transparent", "EPERM")).toMatch(/CAP_NET_ADMIN or CAP_NET_RAW/);
    expect(hintFor("bind", "EACCES")).toMatch(/CAP_NET_BIND_SERVICE/);
    expect(hintFor("listen", "EPERM")).toMatch(/CAP_NET_ADMIN/);
  });

  it("names the kernel feature or the caller's mistake", () => {
    expect(hintFor("setns", "EINVAL")).toMatch(/not a network namespace/);
    expect(hintFor("setns", "EBADF")).toMatch(/not an open namespace/);
    expect(hintFor("original-dst", "ENOENT")).toMatch(/not redirected/);
    expect(hintFor("original-dst", "ENOPROTOOPT")).toMatch(/nf_conntrack/);
    expect(hintFor("socket", "EAFNOSUPPORT")).toMatch(/IPv6/);
    expect(hintFor("unix-connect", "ESOCKTNOSUPPORT")).toMatch(/SEQPACKET/);
    expect(hintFor("unix-connect", "ECONNREFUSED")).toMatch(/no agent/);
    expect(hintFor("native", "ENOSYS")).toMatch(/Linux.*koffi/);
    expect(hintFor("bind", "EADDRINUSE")).toMatch(/in use/);
  });

  it("maps errno numbers and Node errors", () => {
    expect(errnoName(E.EPERM)).toBe("EPERM");
    expect(errnoName(99999)).toBe("E99999");
    const nodeErr = Object.assign(new Error("x"), { errno: -E.ENOENT, code: "ENOENT" });
    expect(errnoOf(nodeErr)).toBe(E.ENOENT);
    expect(errnoOf(Object.assign(new Error("x"), { code: "EACCES" }))).toBe(E.EACCES);
    expect(errnoOf(new Error("x"))).toBe(E.EIO);
  });
});

describe("capabilities", () => {
  it("reads CapEff and names what is missing", () => {
    const status = (eff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${eff}\n`;
    expect(effectiveCapabilities(status("000001ffffffffff"))).toBe(0x1ffffffffffn);
    expect(missingCapabilities(undefined, status("000001ffffffffff"))).toEqual([]);
    expect(missingCapabilities(undefined, status("0000000000000000"))).toEqual([
      "CAP_NET_ADMIN",
      "CAP_NET_RAW",
      "CAP_SYS_ADMIN",
    ]);
    // CAP_NET_ADMIN (bit 12) and CAP_NET_RAW (13) only.
    expect(missingCapabilities(undefined, status("0000000000003000"))).toEqual(["CAP_SYS_ADMIN"]);
    expect(missingCapabilities(["CAP_NET_BIND_SERVICE"], status("0000000000000400"))).toEqual([]);
    expect(missingCapabilities(undefined, "not linux")).toEqual([]);
  });
});
