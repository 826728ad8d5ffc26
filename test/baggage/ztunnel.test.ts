// ztunnel-mode baggage (ztunnel-compat.md §6, ztunnel src/baggage.rs): its test vectors, the lenient
// parse rules one by one, the emission order, and encode/decode round trips. Both Wasm builds.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { type BaggageMeta, type WorkloadType, decodeBaggage, encodeBaggage } from "../../host/baggage.js";
import { getCodec } from "../../host/wasm/codec.js";

const VECTOR = "k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1";
const VECTOR_META: BaggageMeta = {
  clusterId: "K1",
  namespace: "NS1",
  workloadName: "N1",
  workloadType: "deployment",
  service: "N2",
  revision: "V1",
};
const FULL: BaggageMeta = {
  clusterId: "Kubernetes",
  namespace: "default",
  workloadName: "productpage-v1",
  workloadType: "deployment",
  service: "productpage",
  revision: "v1",
  region: "us-east1",
  zone: "us-east1-b",
};

for (const variant of ["release", "debug"] as const) {
  const codec = getCodec(variant);
  const decode = (v: string | string[] | undefined) => decodeBaggage(v, "ztunnel", codec);
  const encode = (m: BaggageMeta) => encodeBaggage(m, codec);

  describe(`ztunnel baggage vectors (${variant} build)`, () => {
    it("decodes K1/NS1/N1/N2/V1", () => {
      expect(decode(VECTOR)).toStrictEqual(VECTOR_META);
      expect(decodeBaggage(VECTOR, undefined, codec)).toStrictEqual(VECTOR_META); // ztunnel is the default mode
    });

    it("merges the same pairs on five header lines", () => {
      expect(decode(VECTOR.split(","))).toStrictEqual(VECTOR_META);
    });

    it("gives all none for all-empty values and for no header", () => {
      expect(
        decode("k8s.cluster.name=,k8s.namespace.name=,k8s.deployment.name=,service.name=,service.version="),
      ).toStrictEqual({});
      expect(decode(undefined)).toStrictEqual({});
      expect(decode([])).toStrictEqual({});
    });

    it("round-trips the emitted string (ztunnel's two structs, and every field)", () => {
      expect(encode({})).toBe("");
      expect(decode(encode({}))).toStrictEqual({});
      const partial: BaggageMeta = {
        clusterId: "cluster",
        namespace: "default",
        workloadName: "workload",
        workloadType: "deployment",
        service: "service",
      };
      expect(decode(encode(partial))).toStrictEqual(partial);
      expect(decode(encode(FULL))).toStrictEqual(FULL);
    });
  });

  describe(`ztunnel baggage parse rules (${variant} build)`, () => {
    it("takes the second '=' piece as the value, untrimmed and undecoded, with ;props", () => {
      expect(decode("service.name=a=b=c")).toStrictEqual({ service: "a" });
      expect(decode("service.name= a%20b ;p=1")).toStrictEqual({ service: " a%20b ;p" });
    });

    it("matches keys exactly (no trimming) and ignores unknown keys and pieces without '='", () => {
      expect(
        decode(" k8s.cluster.name=a,k8s.cluster.name =b,K8S.CLUSTER.NAME=c,app.name=d,cloud.region"),
      ).toStrictEqual({});
      expect(decode("foo=bar,,cloud.region=r,=x")).toStrictEqual({ region: "r" });
    });

    it("lets the last one win, an empty value clearing the field", () => {
      expect(decode("cloud.availability_zone=z1,cloud.availability_zone=z2")).toStrictEqual({ zone: "z2" });
      expect(decode(["service.version=v1", "service.version="])).toStrictEqual({});
      expect(decode("k8s.pod.name=p,k8s.job.name=")).toStrictEqual({});
    });

    it("sets the workload name and type from any of the four k8s.<type>.name keys", () => {
      for (const t of ["deployment", "cronjob", "pod", "job"] as const) {
        expect(decode(`k8s.${t}.name=w`)).toStrictEqual({ workloadName: "w", workloadType: t });
      }
      expect(decode("k8s.deployment.name=a,k8s.cronjob.name=b")).toStrictEqual({
        workloadName: "b",
        workloadType: "cronjob",
      });
      expect(decode("k8s.statefulset.name=s")).toStrictEqual({});
    });

    it("fails the whole parse on a char that is not printable ASCII, space or tab, on any line", () => {
      expect(decode("service.name=a\tb")).toStrictEqual({ service: "a\tb" });
      for (const bad of ["é", "\x7f", "\x00", "\r", "\n", "\x1f", "\u0141", "\u{1F600}"]) {
        expect(decode([VECTOR, `cloud.region=r${bad}`]), JSON.stringify(bad)).toStrictEqual({});
      }
    });
  });

  describe(`ztunnel baggage encode (${variant} build)`, () => {
    it("emits ztunnel's key order, no spaces, no percent-encoding", () => {
      // Fields given in reverse order: the output follows ztunnel's order, not the object's.
      const reversed: BaggageMeta = {
        zone: "z",
        region: "r",
        revision: "v 1",
        service: "s/1",
        workloadType: "job",
        workloadName: "w%20",
        namespace: "ns",
        clusterId: "c",
      };
      expect(encode(reversed)).toBe(
        "k8s.cluster.name=c,k8s.namespace.name=ns,k8s.job.name=w%20,service.name=s/1," +
          "service.version=v 1,cloud.region=r,cloud.availability_zone=z",
      );
    });

    it("skips unset and empty fields", () => {
      expect(encode({ clusterId: "", namespace: "ns", service: undefined, zone: "z" })).toBe(
        "k8s.namespace.name=ns,cloud.availability_zone=z",
      );
      expect(encode({ workloadType: "pod" })).toBe("");
    });

    it("names the workload key after its type, deployment by default", () => {
      expect(encode({ workloadName: "w" })).toBe("k8s.deployment.name=w");
      for (const t of ["deployment", "cronjob", "pod", "job"] as const) {
        expect(encode({ workloadName: "w", workloadType: t })).toBe(`k8s.${t}.name=w`);
      }
      expect(() => encode({ workloadName: "w", workloadType: "statefulset" as WorkloadType })).toThrow(RangeError);
    });

    it("refuses a field ztunnel could not read back unchanged", () => {
      for (const bad of ["a,b", "a=b", "é", "\u0141", "\x00", "\n", "\x7f"]) {
        expect(() => encode({ namespace: "ns", region: bad }), JSON.stringify(bad)).toThrow(/region/);
      }
      expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
    });

    it("round-trips random metadata (fast-check)", () => {
      const value = fc.stringMatching(/^[\t\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,40}$/);
      const arbMeta = fc.record(
        {
          clusterId: value,
          namespace: value,
          workloadName: value,
          service: value,
          revision: value,
          region: value,
          zone: value,
          workloadType: fc.constantFrom<WorkloadType>("deployment", "cronjob", "pod", "job"),
        },
        { requiredKeys: [] },
      );
      fc.assert(
        fc.property(arbMeta, (meta) => {
          // What ztunnel gives back: empty fields are none, the type travels with the workload name.
          const want: BaggageMeta = {};
          for (const [k, v] of Object.entries(meta))
            if (v !== "" && k !== "workloadType") Object.assign(want, { [k]: v });
          if (want.workloadName !== undefined) want.workloadType = meta.workloadType ?? "deployment";
          const header = encode(meta);
          expect(decode(header)).toStrictEqual(want);
          // A header on several lines, split at the commas, reads the same.
          expect(decode(header.split(","))).toStrictEqual(want);
          expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
        }),
        { numRuns: 300 },
      );
    });

    it("round-trips Kubernetes-style metadata through the W3C decoder too (fast-check)", () => {
      const name = fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?$/);
      const arbMeta = fc.record(
        {
          clusterId: name,
          namespace: name,
          workloadName: name,
          service: name,
          revision: name,
          region: name,
          zone: name,
          workloadType: fc.constantFrom<WorkloadType>("deployment", "cronjob", "pod", "job"),
        },
        { requiredKeys: ["workloadName", "workloadType"] },
      );
      fc.assert(
        fc.property(arbMeta, (meta) => {
          const { valid, members, truncated, ...fields } = decodeBaggage(encode(meta), "w3c", codec);
          expect(valid).toBe(true);
          expect(truncated).toBe(false);
          expect(members.map((m) => m.value)).toStrictEqual(
            encode(meta)
              .split(",")
              .map((m) => m.split("=")[1]),
          );
          expect(fields).toStrictEqual({ ...meta });
        }),
        { numRuns: 200 },
      );
    });
  });
}
