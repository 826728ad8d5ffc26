// sockaddr_in / sockaddr_in6 / sockaddr_un encoding (pure): literals of every shape round-trip, output is
// RFC 5952 text, names are refused.

import net from "node:net";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeInet, encodeInet, encodeUnix } from "../../host/sys/sockaddr.js";

describe("sockaddr", () => {
  it("IPv4: family, port in network order, address bytes", () => {
    const b = encodeInet("10.1.2.3", 8080);
    expect(b.toString("hex")).toBe("0200" + "1f90" + "0a010203" + "0000000000000000");
    expect(decodeInet(b)).toEqual({ family: 4, address: "10.1.2.3", port: 8080 });
  });

  it("IPv6 literals of every shape decode to their RFC 5952 form", () => {
    const cases: Array<[string, string]> = [
      ["::", "::"],
      ["::1", "::1"],
      ["fd00:77::99", "fd00:77::99"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["::ffff:10.0.0.1", "::ffff:10.0.0.1"],
      ["fe80::1%lo", "fe80::1"],
      ["ABCD::EF", "abcd::ef"],
    ];
    for (const [input, out] of cases) {
      const b = encodeInet(input, 15001);
      expect(b.length).toBe(28);
      expect(decodeInet(b), input).toEqual({ family: 6, address: out, port: 15001 });
    }
  });

  it("any 16 bytes format to a valid literal that encodes back to the same bytes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 65535 }),
        (bytes, port) => {
          const b = Buffer.alloc(28);
          b.writeUInt16LE(10, 0);
          b.writeUInt16BE(port, 2);
          Buffer.from(bytes).copy(b, 8);
          const a = decodeInet(b)!;
          expect(net.isIPv6(a.address)).toBe(true);
          expect(encodeInet(a.address, port).subarray(0, 24)).toEqual(b.subarray(0, 24));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("names, short buffers, other families and bad unix paths are refused", () => {
    expect(() => encodeInet("localhost", 1)).toThrow(/not an IP literal/);
    expect(decodeInet(Buffer.alloc(1))).toBeNull();
    expect(decodeInet(Buffer.from("0100", "hex"))).toBeNull();
    expect(encodeUnix("/run/x.sock").len).toBe(2 + 11 + 1);
    expect(() => encodeUnix("")).toThrow(/1-107 bytes/);
    expect(() => encodeUnix("/a\0b")).toThrow(/1-107 bytes/);
  });
});
