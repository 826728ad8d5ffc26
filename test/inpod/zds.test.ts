// ZDS wire format (istio.workload.zds, ztunnel 1.29 numbering), checked against bytes written by hand from the
// proto field numbers, and decoding of hostile datagrams (never throws, names the problem).

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeAck, decodeHello, decodeRequest, encodeAck, encodeHello, encodeRequest } from "../../host/inpod/zds.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("ZDS messages", () => {
  it("ZdsHello{version: V1} is field 1 varint 1", () => {
    expect(hex(encodeHello())).toBe("0801");
    expect(decodeHello(Buffer.from("0801", "hex"))).toEqual({ version: 1 });
    expect(decodeHello(Buffer.from("0800", "hex"))).toBeNull(); // NOT_USED
  });

  it("WorkloadResponse{ack: Ack{error}} is field 1 of field 1", () => {
    expect(hex(encodeAck())).toBe("0a00");
    expect(hex(encodeAck("no"))).toBe("0a040a026e6f");
    expect(decodeAck(Buffer.from("0a040a026e6f", "hex"))).toEqual({ ok: true, error: "no" });
    expect(decodeAck(Buffer.alloc(0))).toEqual({ ok: false, error: "WorkloadResponse without an ack" });
  });

  it("add: AddWorkload{uid=1, workload_info=2{name=1, namespace=2, service_account=3}} under field 1", () => {
    const bytes = encodeRequest({
      payload: { $case: "add", add: { uid: "u1", workloadInfo: { name: "a", namespace: "ns", serviceAccount: "sa" } } },
    });
    // 0a LEN { 0a 02 "u1"  12 LEN { 0a 01 "a" 12 02 "ns" 1a 02 "sa" } }
    expect(hex(bytes)).toBe("0a11" + "0a027531" + "120b" + "0a0161" + "12026e73" + "1a027361");
    const d = decodeRequest(bytes);
    expect(d).toEqual({
      ok: true,
      request: { $case: "add", add: { uid: "u1", workloadInfo: { name: "a", namespace: "ns", serviceAccount: "sa" } } },
    });
  });

  it("del is DelWorkload{uid=2} under field 2; snapshot_sent field 3; keep{uid=1} field 5", () => {
    expect(hex(encodeRequest({ payload: { $case: "del", del: { uid: "u1" } } }))).toBe("1204" + "12027531");
    expect(hex(encodeRequest({ payload: { $case: "snapshotSent", snapshotSent: {} } }))).toBe("1a00");
    expect(hex(encodeRequest({ payload: { $case: "keep", keep: { uid: "u1" } } }))).toBe("2a04" + "0a027531");
    expect(decodeRequest(Buffer.from("1a00", "hex"))).toEqual({
      ok: true,
      request: { $case: "snapshotSent", snapshotSent: {} },
    });
    expect(decodeRequest(Buffer.from("2a040a027531", "hex"))).toEqual({
      ok: true,
      request: { $case: "keep", keep: { uid: "u1" } },
    });
  });

  it("an old-numbered AddWorkload (uid=2) decodes with an empty uid, which the client refuses", () => {
    // pre-1.29 ztunnel: AddWorkload { string uid = 2 } — field 2 is now workload_info, so the bytes do not parse
    // as a WorkloadInfo of a string; either way the uid is not read.
    const d = decodeRequest(Buffer.from("0a04" + "12027531", "hex"));
    if (d.ok) expect(d.request.$case === "add" && d.request.add.uid).toBe("");
    else expect(d.error).toMatch(/malformed/);
  });

  it("hostile datagrams: empty, unknown fields only, truncated varints, garbage — a reason, never a throw", () => {
    expect(decodeRequest(Buffer.alloc(0))).toEqual({
      ok: false,
      error: expect.stringMatching(/without a known payload/),
    });
    expect(decodeRequest(Buffer.from("2001", "hex"))).toEqual({
      ok: false,
      error: expect.stringMatching(/without a known payload/),
    });
    expect(decodeRequest(Buffer.from("0aff", "hex"))).toEqual({ ok: false, error: expect.stringMatching(/malformed/) });
    expect(decodeRequest(Buffer.from("ffffffffffffffffffff", "hex"))).toEqual({
      ok: false,
      error: expect.stringMatching(/malformed/),
    });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), (b) => {
        const d = decodeRequest(b);
        expect(typeof d.ok).toBe("boolean");
        const a = decodeAck(b);
        expect(typeof a.ok).toBe("boolean");
      }),
      { numRuns: 2000 },
    );
  });
});
