// Fuzz target: the baggage decoder (host/baggage.ts over assembly/baggage/), both modes. Input: [mode, ...lines];
// mode bit 0 = W3C, bit 1 = lines are UTF-8 (any Unicode; else latin1, as header values arrive from HPACK).
// Invariants: decodeBaggage never throws; W3C results keep at most 64 members; ztunnel results re-encode
// (encodeBaggage) and decode back to themselves.

import { decodeBaggage, encodeBaggage, type BaggageMeta } from "../../host/baggage.js";
import type { Codec } from "../../host/wasm/codec.js";
import { baggageCorpus } from "./corpus.js";
import { Mismatch, type Target } from "./harness.js";
import { mutate, type Rng } from "./rng.js";

const KEYS = [
  "k8s.cluster.name",
  "k8s.namespace.name",
  "k8s.deployment.name",
  "k8s.pod.name",
  "k8s.job.name",
  "k8s.cronjob.name",
  "k8s.daemonset.name",
  "service.name",
  "service.version",
  "cloud.region",
  "cloud.availability_zone",
  "userId",
  "a",
  "",
];

function text(rng: Rng, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rng.int(20);
    s +=
      r === 0
        ? `%${rng.int(256).toString(16).padStart(2, "0")}`
        : r === 1
          ? rng.pick(["%", "%z", "%e2%82", "=", ";", " ", "\t"])
          : r === 2
            ? String.fromCharCode(rng.int(256))
            : String.fromCharCode(rng.range(0x21, 0x7e));
  }
  return s;
}

function member(rng: Rng): string {
  const ows = () => (rng.chance(0.2) ? rng.pick([" ", "\t", "  "]) : "");
  let m = ows() + (rng.chance(0.8) ? rng.pick(KEYS) : text(rng, rng.size(20))) + ows();
  if (rng.chance(0.95)) m += "=" + ows() + text(rng, rng.chance(0.02) ? rng.range(4000, 9000) : rng.size(30)) + ows();
  for (let k = rng.chance(0.2) ? rng.range(1, 3) : 0; k > 0; k--) m += ";" + ows() + text(rng, rng.size(10));
  return m;
}

function line(rng: Rng): string {
  const members = rng.chance(0.05) ? rng.range(60, 1100) : rng.range(0, 10);
  return Array.from({ length: members }, () => member(rng)).join(rng.chance(0.9) ? "," : rng.pick([", ", " ,", ",,"]));
}

/** The type only counts with a name (encodeBaggage writes k8s.deployment.name for a name without one). */
function norm(m: BaggageMeta): string {
  const n: BaggageMeta = { ...m, workloadType: m.workloadName ? (m.workloadType ?? "deployment") : undefined };
  return JSON.stringify(
    Object.entries(n)
      .filter(([, v]) => v !== undefined)
      .sort(),
  );
}

export const baggageTarget: Target = {
  name: "baggage",
  memoryBound: 64 << 20,
  generate(rng) {
    const utf8 = rng.chance(0.1);
    const lines: string[] = [];
    for (let k = rng.chance(0.8) ? 1 : rng.range(0, 4); k > 0; k--) {
      const r = rng.int(10);
      lines.push(
        r < 5
          ? line(rng)
          : r < 9
            ? mutate(rng, Buffer.from(rng.pick(baggageCorpus()), "latin1")).toString("latin1")
            : "k8s.pod.name=" + "x".repeat(rng.pick([100, 8192, 65000, 70000])),
      );
    }
    const enc = utf8 ? "utf8" : "latin1";
    return [Buffer.from([(rng.chance(0.5) ? 1 : 0) | (utf8 ? 2 : 0)]), ...lines.map((l) => Buffer.from(l, enc))];
  },
  execute(input, codec: Codec) {
    const mode = input[0]?.[0] ?? 0;
    const lines = input.slice(1).map((b) => b.toString(mode & 2 ? "utf8" : "latin1"));
    if (mode & 1) {
      const r = decodeBaggage(lines, "w3c", codec);
      if (r.valid && r.members.length > 64) throw new Mismatch(`${r.members.length} W3C members kept (limit 64)`);
      return;
    }
    const meta = decodeBaggage(lines, "ztunnel", codec);
    if (Object.keys(meta).length === 0) return;
    // What ztunnel mode decodes is what a proxy would send on: it must encode and read back unchanged.
    let header: string;
    try {
      header = encodeBaggage(meta, codec);
    } catch (e) {
      throw new Mismatch(`decoded baggage cannot be re-encoded: ${(e as Error).message}`);
    }
    const back = decodeBaggage(header, "ztunnel", codec);
    if (norm(meta) !== norm(back)) {
      throw new Mismatch(`round trip: ${JSON.stringify(meta)} -> ${header} -> ${JSON.stringify(back)}`);
    }
  },
};
