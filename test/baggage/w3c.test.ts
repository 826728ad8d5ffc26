// W3C-mode baggage: every case of test/vectors/baggage/baggage-parse-cases.json against the W3C
// reference parser's results, several header lines, and the limits (64 members, 8192 bytes, never a
// partial member). Both Wasm builds.

import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { type BaggageMember, decodeBaggage } from "../../host/baggage.js";
import { getCodec } from "../../host/wasm/codec.js";
import { vectorDir, readJson } from "../helpers/vectors.js";

type Property = [string, string | null];
interface ParseCase {
  name: string;
  header: string;
  w3c_reference_impl: { valid: boolean; entries?: { key: string; value: string; properties: Property[] }[] };
}
interface ParseCases {
  cases: ParseCase[];
  extra_facts: { otel_two_header_lines: { headers: string[]; otel_js_core_2_12_1: [string, string][] } };
}

const FILE = readJson<ParseCases>(join(vectorDir("baggage"), "baggage-parse-cases.json"));

/**
 * Our raw property text as the reference parser's [key, value | null] pairs: split on ';' and the first
 * '=', OWS trimmed. The reference also percent-decodes property values; we keep them raw (no case has one).
 */
function propertyPairs(raw: string | undefined): Property[] {
  if (raw === undefined) return [];
  return raw.split(/[ \t]*;[ \t]*/).map((p): Property => {
    const m = /^([^=]*?)[ \t]*=[ \t]*(.*)$/.exec(p);
    return m ? [m[1], m[2]] : [p, null];
  });
}

const asReference = (members: BaggageMember[]) =>
  members.map((m) => ({ key: m.key, value: m.value, properties: propertyPairs(m.properties) }));

for (const variant of ["release", "debug"] as const) {
  const codec = getCodec(variant);
  const decode = (v: string | string[] | undefined) => decodeBaggage(v, "w3c", codec);

  describe(`W3C baggage vs the reference parser (${variant} build)`, () => {
    it("has the whole file", () => {
      expect(FILE.cases.length).toBe(24);
    });

    for (const c of FILE.cases) {
      const want = c.w3c_reference_impl;
      it(`${c.name}: ${want.valid ? "valid" : "rejected"} ${JSON.stringify(c.header)}`, () => {
        const got = decode(c.header);
        expect(got.valid).toBe(want.valid);
        expect(asReference(got.members)).toStrictEqual(want.valid ? want.entries : []);
        if (!want.valid) expect(got.reason).toBe("invalid");
        expect(got.truncated).toBe(false);
        expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
      });
    }

    it("fills the ztunnel fields from known keys (istio_style)", () => {
      const c = FILE.cases.find((x) => x.name === "istio_style")!;
      const { valid, members, truncated, ...fields } = decode(c.header);
      expect(fields).toStrictEqual({
        clusterId: "Kubernetes",
        namespace: "default",
        workloadName: "productpage-v1",
        workloadType: "deployment",
        service: "productpage",
        revision: "v1",
      });
      expect([valid, members.length, truncated]).toStrictEqual([true, 5, false]);
    });
  });

  describe(`W3C baggage details (${variant} build)`, () => {
    it("merges header lines as one list in order", () => {
      const fact = FILE.extra_facts.otel_two_header_lines;
      expect(decode(fact.headers).members.map((m) => [m.key, m.value])).toStrictEqual(fact.otel_js_core_2_12_1);
      expect(decode(["a=1", "b=2;p", "a=3"]).members).toStrictEqual([
        { key: "a", value: "1" },
        { key: "b", value: "2", properties: "p" },
        { key: "a", value: "3" },
      ]);
      expect(decode(["a=1", "b=2"]).valid).toBe(true);
    });

    it("rejects every line when one line is bad or empty; no header at all is valid and empty", () => {
      expect(decode(["a=1", "b"])).toStrictEqual({ valid: false, reason: "invalid", members: [], truncated: false });
      expect(decode(["a=1", ""]).valid).toBe(false);
      expect(decode(["a=1", " \t "]).valid).toBe(false);
      expect(decode([])).toStrictEqual({ valid: true, members: [], truncated: false });
      expect(decode(undefined)).toStrictEqual({ valid: true, members: [], truncated: false });
    });

    it("trims a line's outer OWS, which HTTP strips anyway", () => {
      expect(decode(" \tk=v;p \t").members).toStrictEqual([{ key: "k", value: "v", properties: "p" }]);
    });

    it("keeps properties as raw text and validates them", () => {
      expect(decode("k=v ; a ;b = %41 ; c=").members).toStrictEqual([
        { key: "k", value: "v", properties: "a ;b = %41 ; c=" },
      ]);
      expect(decode("k=v;a= \t,x= ;y").members.map((m) => m.properties)).toStrictEqual(["a=", "y"]);
      for (const bad of ["k=v;", "k=v;;a", "k=v;=x", "k=v;a b", "k=v;a=b c", 'k=v;a="b"', "k=v;a=b\\"]) {
        expect(decode(bad).valid, bad).toBe(false);
      }
    });

    it("percent-decodes values as UTF-8, U+FFFD for invalid sequences, '%' without two hex digits kept", () => {
      const values = (h: string) => decode(h).members.map((m) => m.value);
      expect(values("a=%e2%82%AC,b=%F0%9F%98%80,c=%,d=%4,e=%%41,f=%4g,g=%C3,h=%ED%A0%80,i=100%25")).toStrictEqual([
        "€",
        "😀",
        "%",
        "%4",
        "%A",
        "%4g",
        "\uFFFD",
        "\uFFFD\uFFFD\uFFFD",
        "100%",
      ]);
      expect(decode("k=%00%0A").members[0].value).toBe("\0\n");
      expect(decode("%41=v").members[0].key).toBe("%41"); // keys are tokens, not decoded
    });

    it("sets the ztunnel fields from the decoded value; empty is none, last one wins", () => {
      const { members, valid, truncated, ...fields } = decode(
        "service.name=a%2Fb,cloud.region=r,cloud.region=,k8s.pod.name=p",
      );
      expect(fields).toStrictEqual({ service: "a/b", workloadName: "p", workloadType: "pod" });
      expect(members.length).toBe(4);
    });

    it("keeps 64 members, dropping the rest whole", () => {
      const members = Array.from({ length: 70 }, (_, i) => `k${i}=v${i}`);
      const got = decode(members.join(","));
      expect(got.valid).toBe(true);
      expect(got.truncated).toBe(true);
      expect(got.members.map((m) => `${m.key}=${m.value}`)).toStrictEqual(members.slice(0, 64));
      const exact = decode([members.slice(0, 30).join(","), members.slice(30, 64).join(",")]);
      expect([exact.members.length, exact.truncated]).toStrictEqual([64, false]);
    });

    it("keeps 8192 bytes (members plus one comma between), never a partial member", () => {
      const a = `a=${"x".repeat(4094)}`; // 4096 bytes
      const b = `b=${"y".repeat(4093)}`; // 4095 bytes: with its comma, 8192 in all
      expect(decode(`${a},${b}`)).toMatchObject({ valid: true, truncated: false });
      expect(decode([`${a} \t`, ` ${b}`])).toMatchObject({ valid: true, truncated: false }); // OWS is not counted
      const over = decode([a, `${b}z`, "c=1"]); // 8193: b is dropped, and c after it
      expect(over).toMatchObject({ valid: true, truncated: true });
      expect(over.members.map((m) => m.key)).toStrictEqual(["a"]);
      const big = decode(`big=${"x".repeat(9000)}`);
      expect([big.valid, big.truncated, big.members.length]).toStrictEqual([true, true, 0]);
    });

    it("still rejects a bad member after the limits", () => {
      const many = Array.from({ length: 100 }, (_, i) => `k${i}=v`).join(",");
      expect(decode(`${many},bad member`).valid).toBe(false);
    });
  });
}
