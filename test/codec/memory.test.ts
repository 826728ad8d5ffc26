// The codec's memory bounds at the Wasm boundary, on both builds: the gather limit and incremental
// gathering of the frame reader, and allocation past the budget as a return code (H2Error
// INTERNAL_ERROR, R_OUT_OF_MEMORY), never a trap, with the allocator's lists intact.

import { describe, expect, it } from "vitest";
import * as abi from "../../assembly/abi.js";
import { H2Error } from "../../host/errors.js";
import { FrameReader, getCodec } from "../../host/wasm/codec.js";
import { HpackDecoder, HpackEncoder } from "../../host/h2/hpack.js";
import { frame } from "../helpers/frames.js";

const MiB = 1 << 20;

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(H2Error);
    return (e as H2Error).code;
  }
  return undefined;
}

for (const variant of ["release", "debug"] as const) {
  describe(`codec memory (${variant})`, () => {
    const codec = getCodec(variant);

    it("refuses a non-DATA frame over the gather limit at its header, accepts one at the limit in 1-byte chunks", () => {
      const r = new FrameReader(MiB, 0, codec);
      r.setMaxGather(20_000);
      try {
        const ok = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(20_000, 0x82));
        const seen: number[] = [];
        const taken = codec.heapTaken;
        for (let i = 0; i < ok.length; i++)
          r.feed(ok.subarray(i, i + 1), (type, _f, _s, payload) => seen.push(type, payload.length));
        expect(seen).toEqual([abi.FRAME_HEADERS, 20_000]);
        expect(codec.heapTaken - taken).toBeLessThanOrEqual(80 * 1024); // 4+8+16+32 KiB steps, not 1 MiB up front
        const big = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 3, Buffer.alloc(20_001)).subarray(0, 9);
        expect(codeOf(() => r.feed(big, () => {}))).toBe(abi.ENHANCE_YOUR_CALM);
      } finally {
        r.dispose();
      }
      expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
    });

    it("turns a spent budget into INTERNAL_ERROR from every allocating entry point, and recovers", () => {
      const enc = new HpackEncoder(4096, codec);
      const block = enc.encode(Array.from({ length: 200 }, (_, i) => [`k${i}`, "v".repeat(3000)]));
      enc.dispose();
      const saved = codec.heapLimit;
      const held: (FrameReader | HpackDecoder)[] = [];
      codec.heapLimit = codec.heapTaken + 256 * 1024;
      try {
        // New contexts until the budget is spent: the constructor throws, no trap.
        let code: number | undefined;
        for (let i = 0; i < 1000 && code === undefined; i++) {
          code = codeOf(() => held.push(new HpackDecoder(4096, codec), new FrameReader(MiB, 0, codec)));
        }
        expect(code).toBe(abi.INTERNAL_ERROR);
        // A reader gathering a large frame, and a decoder producing a large list, fail the same way.
        const r = held.find((x): x is FrameReader => x instanceof FrameReader)!;
        const head = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(512 * 1024)).subarray(0, 9);
        expect(codeOf(() => r.feed(Buffer.concat([head, Buffer.alloc(400 * 1024)]), () => {}))).toBe(
          abi.INTERNAL_ERROR,
        );
        const d = held.find((x): x is HpackDecoder => x instanceof HpackDecoder)!;
        d.setMaxHeaderListSize(64 * MiB);
        expect(codeOf(() => d.decode(block))).toBe(abi.INTERNAL_ERROR);
        expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
      } finally {
        codec.heapLimit = saved;
        for (const x of held) x.dispose();
      }
      // With the budget back, everything works again.
      const d = new HpackDecoder(4096, codec);
      expect(d.decode(Buffer.from([0x82]))).toEqual([[":method", "GET"]]);
      d.dispose();
      expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
    });
  });
}
