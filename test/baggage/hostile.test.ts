// Hostile baggage headers: huge, thousands of members, non-ASCII, any byte, unbalanced '%'. Both modes
// must answer (never trap, never throw), in bounded time, with the allocator's lists intact. Both builds.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeBaggage } from "../../host/baggage.js";
import { getCodec } from "../../host/wasm/codec.js";

const MIB = "k8s.cluster.name=" + "x".repeat(1 << 20);
const latin1High = String.fromCharCode(...Array.from({ length: 128 }, (_, i) => 0x80 + i));
const members = (n: number, m = (i: number) => `k${i}=v`) => Array.from({ length: n }, (_, i) => m(i)).join(",");

/** Runs `fn` and checks it took under a second: every input here is linear work over at most 64 KiB. */
function quick<T>(fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  expect(performance.now() - t0).toBeLessThan(1000);
  return r;
}

for (const variant of ["release", "debug"] as const) {
  const codec = getCodec(variant);
  const ztunnel = (v: string | string[]) => quick(() => decodeBaggage(v, "ztunnel", codec));
  const w3c = (v: string | string[]) => quick(() => decodeBaggage(v, "w3c", codec));

  describe(`hostile baggage (${variant} build)`, () => {
    it("refuses a 1 MiB header unread, and a million empty lines", () => {
      const before = codec.ex.memory_bytes();
      expect(ztunnel(MIB)).toStrictEqual({});
      expect(w3c(MIB)).toMatchObject({ valid: false, reason: "too large", members: [] });
      expect(w3c(new Array<string>(1 << 20).fill(""))).toMatchObject({ valid: false, reason: "too large" });
      expect(codec.ex.memory_bytes()).toBe(before); // nothing was copied in
    });

    it("takes up to 64 KiB, one byte per line counted", () => {
      const line = `cloud.region=${"r".repeat(65536 - 14)}`; // 65535 bytes + 1 for the line
      expect(ztunnel(line).region).toHaveLength(65536 - 14);
      expect(ztunnel(`${line}x`)).toStrictEqual({});
      expect(w3c(line)).toMatchObject({ valid: true, truncated: true, members: [] });
    });

    it("caps ztunnel at 1024 pieces over all lines", () => {
      expect(ztunnel(members(1023, () => "x") + ",cloud.region=r")).toStrictEqual({ region: "r" });
      expect(ztunnel([members(1000, () => "x"), members(24, () => "cloud.region=r"), "a"])).toStrictEqual({});
      expect(ztunnel(members(10000))).toStrictEqual({});
    });

    it("keeps 64 of 10000 W3C members, and rejects them all for one bad member", () => {
      const many = members(10000, () => "k=v"); // 40 KB
      const got = w3c(`k8s.cluster.name=c,${many}`);
      expect([got.valid, got.truncated, got.members.length, got.clusterId]).toStrictEqual([true, true, 64, "c"]);
      expect(w3c(`${many},é`).valid).toBe(false);
    });

    it("rejects non-ASCII and every byte 0x80-0xff in both modes", () => {
      for (const s of ["k=Amélie", `k=${latin1High}`, "k=\u{1F600}", "k=\u0141", "k=\uD800"]) {
        expect(ztunnel(s), s).toStrictEqual({});
        expect(w3c(s).valid, s).toBe(false);
      }
      for (let b = 0x80; b <= 0xff; b++) {
        expect(ztunnel(`cloud.region=r${String.fromCharCode(b)}`)).toStrictEqual({});
        expect(w3c(`cloud.region=r${String.fromCharCode(b)}`).valid).toBe(false);
      }
    });

    it("keeps unbalanced '%' literally", () => {
      expect(w3c("a=%,b=%%,c=%%%,d=%4").members.map((m) => m.value)).toStrictEqual(["%", "%%", "%%%", "%4"]);
      expect(w3c(`k=${"%".repeat(8000)}`).members[0].value).toHaveLength(8000);
      // The next line's first bytes are hex digits: a '%' at a line's end must not reach them.
      expect(w3c(["k=%4", "5=v", "a=%", "41=v"]).members.map((m) => m.value)).toStrictEqual(["%4", "v", "%", "v"]);
      expect(ztunnel("service.name=%")).toStrictEqual({ service: "%" });
    });

    it("answers any string of baggage-ish pieces and random chars (fast-check)", () => {
      const piece = fc.oneof(
        fc.constantFrom(
          "k",
          "v",
          "=",
          ",",
          ";",
          " ",
          "\t",
          "%",
          "%4",
          "%41",
          "%E9",
          "%C3%A9",
          '"',
          "\\",
          "é",
          "\u0141",
          "\0",
          "k8s.pod.name=",
          "service.name",
          "cloud.region=r",
        ),
        fc.string({ unit: "binary", maxLength: 8 }),
      );
      const header = fc.array(piece, { maxLength: 60 }).map((p) => p.join(""));
      fc.assert(
        fc.property(fc.array(header, { minLength: 1, maxLength: 4 }), (lines) => {
          const z = decodeBaggage(lines, "ztunnel", codec);
          expect(typeof z).toBe("object");
          const w = decodeBaggage(lines, "w3c", codec);
          expect(w.members.length).toBeLessThanOrEqual(64);
          if (!w.valid) expect(w.members).toStrictEqual([]);
          expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
        }),
        { numRuns: 500 },
      );
    });
  });
}
