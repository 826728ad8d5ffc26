// Frame reader validation (RFC 9113 §4-6), writers checked by the reader, and split-anywhere
// / garbage property tests. The reader must turn any peer bytes into frames or an H2Error.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as abi from "../../assembly/abi.js";
import { parseFrames, FrameWriter, type Frame } from "../../host/h2/frames.js";
import { HpackDecoder, HpackEncoder } from "../../host/h2/hpack.js";
import { H2Error } from "../../host/errors.js";
import { FrameReader, getCodec } from "../../host/wasm/codec.js";
import { frame, u32, settingsPayload } from "../helpers/frames.js";

const T = abi;

function codeOf(fn: () => unknown): { code: number; stream: boolean; reason: number } | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (!(e instanceof H2Error)) throw e;
    return { code: e.code, stream: e.streamLevel, reason: e.reason };
  }
}

describe("frame validation", () => {
  const bad: [string, Buffer, number, boolean][] = [
    ["frame larger than max frame size", frame(T.FRAME_DATA, 0, 1, Buffer.alloc(16385)), T.FRAME_SIZE_ERROR, false],
    ["DATA on stream 0", frame(T.FRAME_DATA, 0, 0, [1]), T.PROTOCOL_ERROR, false],
    ["DATA padded without pad length", frame(T.FRAME_DATA, T.FLAG_PADDED, 1), T.FRAME_SIZE_ERROR, false],
    ["DATA padding = payload", frame(T.FRAME_DATA, T.FLAG_PADDED, 1, [3, 0, 0]), T.PROTOCOL_ERROR, false],
    ["HEADERS on stream 0", frame(T.FRAME_HEADERS, T.FLAG_END_HEADERS, 0, [0x82]), T.PROTOCOL_ERROR, false],
    [
      "HEADERS with PRIORITY too short",
      frame(T.FRAME_HEADERS, T.FLAG_PRIORITY | 4, 1, [0, 0, 0]),
      T.FRAME_SIZE_ERROR,
      false,
    ],
    [
      "HEADERS padding too long",
      frame(T.FRAME_HEADERS, T.FLAG_PADDED | 4, 1, [5, 0x82, 0, 0]),
      T.PROTOCOL_ERROR,
      false,
    ],
    ["PRIORITY on stream 0", frame(T.FRAME_PRIORITY, 0, 0, [0, 0, 0, 1, 15]), T.PROTOCOL_ERROR, false],
    ["PRIORITY of 4 bytes", frame(T.FRAME_PRIORITY, 0, 3, [0, 0, 0, 1]), T.FRAME_SIZE_ERROR, true],
    ["PRIORITY on itself", frame(T.FRAME_PRIORITY, 0, 3, [0, 0, 0, 3, 15]), T.PROTOCOL_ERROR, true],
    ["RST_STREAM on stream 0", frame(T.FRAME_RST_STREAM, 0, 0, u32(8)), T.PROTOCOL_ERROR, false],
    ["RST_STREAM of 5 bytes", frame(T.FRAME_RST_STREAM, 0, 1, [0, 0, 0, 8, 0]), T.FRAME_SIZE_ERROR, false],
    ["SETTINGS on a stream", frame(T.FRAME_SETTINGS, 0, 1), T.PROTOCOL_ERROR, false],
    [
      "SETTINGS ACK with payload",
      frame(T.FRAME_SETTINGS, T.FLAG_ACK, 0, settingsPayload([[1, 0]])),
      T.FRAME_SIZE_ERROR,
      false,
    ],
    ["SETTINGS of 7 bytes", frame(T.FRAME_SETTINGS, 0, 0, [0, 1, 0, 0, 0, 0, 0]), T.FRAME_SIZE_ERROR, false],
    ["ENABLE_PUSH = 2", frame(T.FRAME_SETTINGS, 0, 0, settingsPayload([[2, 2]])), T.PROTOCOL_ERROR, false],
    [
      "INITIAL_WINDOW_SIZE = 2^31",
      frame(T.FRAME_SETTINGS, 0, 0, settingsPayload([[4, 2 ** 31]])),
      T.FLOW_CONTROL_ERROR,
      false,
    ],
    ["MAX_FRAME_SIZE = 16383", frame(T.FRAME_SETTINGS, 0, 0, settingsPayload([[5, 16383]])), T.PROTOCOL_ERROR, false],
    ["MAX_FRAME_SIZE = 2^24", frame(T.FRAME_SETTINGS, 0, 0, settingsPayload([[5, 2 ** 24]])), T.PROTOCOL_ERROR, false],
    ["ENABLE_CONNECT_PROTOCOL = 2", frame(T.FRAME_SETTINGS, 0, 0, settingsPayload([[8, 2]])), T.PROTOCOL_ERROR, false],
    ["PING on a stream", frame(T.FRAME_PING, 0, 1, Buffer.alloc(8)), T.PROTOCOL_ERROR, false],
    ["PING of 7 bytes", frame(T.FRAME_PING, 0, 0, Buffer.alloc(7)), T.FRAME_SIZE_ERROR, false],
    ["GOAWAY on a stream", frame(T.FRAME_GOAWAY, 0, 1, Buffer.alloc(8)), T.PROTOCOL_ERROR, false],
    ["GOAWAY of 7 bytes", frame(T.FRAME_GOAWAY, 0, 0, Buffer.alloc(7)), T.FRAME_SIZE_ERROR, false],
    ["WINDOW_UPDATE 0 on the connection", frame(T.FRAME_WINDOW_UPDATE, 0, 0, u32(0)), T.PROTOCOL_ERROR, false],
    ["WINDOW_UPDATE 0 on a stream", frame(T.FRAME_WINDOW_UPDATE, 0, 1, u32(0)), T.PROTOCOL_ERROR, true],
    ["WINDOW_UPDATE of 3 bytes", frame(T.FRAME_WINDOW_UPDATE, 0, 1, [0, 0, 1]), T.FRAME_SIZE_ERROR, false],
    ["PUSH_PROMISE to an odd stream", frame(T.FRAME_PUSH_PROMISE, 4, 1, u32(3)), T.PROTOCOL_ERROR, false],
    ["CONTINUATION on stream 0", frame(T.FRAME_CONTINUATION, 4, 0), T.PROTOCOL_ERROR, false],
    [
      "CONTINUATION after a complete frame",
      Buffer.concat([frame(T.FRAME_PING, 0, 0, Buffer.alloc(8)), frame(T.FRAME_CONTINUATION, 4, 1, [0x82])]),
      T.PROTOCOL_ERROR,
      false,
    ],
    [
      "CONTINUATION after a complete header block",
      Buffer.concat([frame(T.FRAME_HEADERS, 4, 1, [0x82]), frame(T.FRAME_CONTINUATION, 4, 1, [0x82])]),
      T.PROTOCOL_ERROR,
      false,
    ],
    [
      "DATA inside a header block",
      Buffer.concat([frame(T.FRAME_HEADERS, 0, 1, [0x82]), frame(T.FRAME_DATA, 0, 1, [1])]),
      T.PROTOCOL_ERROR,
      false,
    ],
    [
      "CONTINUATION of another stream",
      Buffer.concat([frame(T.FRAME_HEADERS, 0, 1, [0x82]), frame(T.FRAME_CONTINUATION, 4, 3, [0x84])]),
      T.PROTOCOL_ERROR,
      false,
    ],
    [
      "unknown frame inside a header block",
      Buffer.concat([frame(T.FRAME_HEADERS, 0, 1, [0x82]), frame(0xfa, 0, 1, [1])]),
      T.PROTOCOL_ERROR,
      false,
    ],
  ];
  for (const [name, bytes, code, streamLevel] of bad) {
    it(`${name} -> ${streamLevel ? "stream" : "connection"} error ${code}`, () => {
      const got = codeOf(() => parseFrames(bytes));
      expect(got).not.toBeNull();
      expect(got!.code).toBe(code);
      expect(got!.stream).toBe(streamLevel);
    });
  }

  it("rejects PUSH_PROMISE outright when push is disabled", () => {
    const r = new FrameReader(16384, 1 /* READER_NO_PUSH */);
    expect(() => r.feed(frame(T.FRAME_PUSH_PROMISE, 4, 1, u32(2)), () => {})).toThrow(H2Error);
    r.dispose();
  });

  it("accepts a header block split over CONTINUATION frames", () => {
    const frames = parseFrames(
      Buffer.concat([
        frame(T.FRAME_HEADERS, T.FLAG_END_STREAM, 1, [0x82]),
        frame(T.FRAME_CONTINUATION, 0, 1, [0x84]),
        frame(T.FRAME_CONTINUATION, T.FLAG_END_HEADERS, 1, [0x86]),
        frame(T.FRAME_DATA, 0, 1, [1]),
      ]),
    );
    expect(frames.map((f) => [f.type, f.flags, [...f.payload]])).toEqual([
      [T.FRAME_HEADERS, 1, [0x82]],
      [T.FRAME_CONTINUATION, 0, [0x84]],
      [T.FRAME_CONTINUATION, 4, [0x86]],
      [T.FRAME_DATA, 0, [1]],
    ]);
  });

  it("ignores unknown frame types and unknown settings", () => {
    const frames = parseFrames(
      Buffer.concat([
        frame(0xfa, 0xff, 7, Buffer.alloc(100, 1)),
        frame(
          T.FRAME_SETTINGS,
          0,
          0,
          settingsPayload([
            [0x99, 12345],
            [3, 100],
          ]),
        ),
      ]),
    );
    expect(frames).toHaveLength(1);
    expect(frames[0].settings).toEqual([
      [0x99, 12345],
      [3, 100],
    ]);
  });

  it("honours a larger max frame size", () => {
    const big = frame(T.FRAME_DATA, T.FLAG_END_STREAM, 1, Buffer.alloc(1 << 20, 7));
    expect(codeOf(() => parseFrames(big))?.code).toBe(T.FRAME_SIZE_ERROR);
    const f = parseFrames(big, 1 << 20);
    expect(f[0].payload.length).toBe(1 << 20);
    expect(f[0].flags).toBe(T.FLAG_END_STREAM);
  });

  it("never reports a connection error as success after it", () => {
    // The bytes after a connection error are never parsed: the error is final.
    const bytes = Buffer.concat([
      frame(T.FRAME_PING, 0, 1, Buffer.alloc(8)),
      frame(T.FRAME_PING, 0, 0, Buffer.alloc(8)),
    ]);
    expect(codeOf(() => parseFrames(bytes))?.code).toBe(T.PROTOCOL_ERROR);
  });
});

describe("frame writers", () => {
  const w = new FrameWriter();
  it("writes every control frame the host sends, readable by the reader", () => {
    const opaque = Buffer.from("12345678");
    const bytes = Buffer.concat([
      w.settings([
        [T.SETTINGS_INITIAL_WINDOW_SIZE, 4 << 20],
        [T.SETTINGS_MAX_FRAME_SIZE, 1 << 20],
        [T.SETTINGS_ENABLE_PUSH, 0],
      ]),
      w.settings([], true),
      w.ping(opaque),
      w.ping(opaque, true),
      w.windowUpdate(0, 12 << 20),
      w.windowUpdate(5, 1),
      w.rstStream(5, T.CANCEL),
      w.priority(7, { exclusive: true, dependency: 5, weight: 256 }),
      w.goaway(7, T.ENHANCE_YOUR_CALM, Buffer.from("calm down")),
      w.dataHeader(9, 3, true),
      Buffer.from("abc"),
    ]);
    const f = parseFrames(bytes);
    expect(f.map((x) => x.type)).toEqual([4, 4, 6, 6, 8, 8, 3, 2, 7, 0]);
    expect(f[0].settings).toEqual([
      [4, 4 << 20],
      [5, 1 << 20],
      [2, 0],
    ]);
    expect(f[1].flags).toBe(T.FLAG_ACK);
    expect(Buffer.from(f[2].opaqueData!).toString()).toBe("12345678");
    expect(f[3].flags).toBe(T.FLAG_ACK);
    expect([f[4].streamId, f[4].windowIncrement, f[5].streamId, f[5].windowIncrement]).toEqual([0, 12 << 20, 5, 1]);
    expect([f[6].streamId, f[6].errorCode]).toEqual([5, T.CANCEL]);
    expect(f[7].priority).toEqual({ exclusive: true, dependency: 5, weight: 256 });
    expect([f[8].lastStreamId, f[8].errorCode, Buffer.from(f[8].debugData!).toString()]).toEqual([7, 11, "calm down"]);
    expect([f[9].streamId, f[9].flags, Buffer.from(f[9].payload).toString()]).toEqual([9, 1, "abc"]);
  });

  it("splits a large header block into HEADERS + CONTINUATION frames", () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder();
    dec.setMaxHeaderListSize(1 << 20);
    const list: [string, string][] = [
      [":method", "CONNECT"],
      [":authority", "10.0.0.1:8080"],
    ];
    for (let i = 0; i < 8; i++) list.push([`x-big-${i}`, "v".repeat(5000 + i)]);
    const bytes = enc.encodeHeadersFrame(3, list, true, 16384);
    const f = parseFrames(bytes);
    expect(f.length).toBeGreaterThan(2);
    expect(f[0].type).toBe(T.FRAME_HEADERS);
    expect(f[0].flags).toBe(T.FLAG_END_STREAM);
    expect(f.slice(1).every((x) => x.type === T.FRAME_CONTINUATION && x.streamId === 3)).toBe(true);
    expect(f.at(-1)!.flags).toBe(T.FLAG_END_HEADERS);
    expect(f.slice(0, -1).every((x) => x.length === 16384)).toBe(true);
    expect(dec.decode(Buffer.concat(f.map((x) => x.payload)))).toEqual(list);
    // A small block stays one HEADERS frame with END_HEADERS.
    const one = parseFrames(enc.encodeHeadersFrame(5, [[":status", "200"]], false, 16384));
    expect(one.map((x) => [x.type, x.flags, x.streamId])).toEqual([[T.FRAME_HEADERS, T.FLAG_END_HEADERS, 5]]);
  });
});

// --- Property tests ---------------------------------------------------------------------

const arbFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .record({
      s: fc.integer({ min: 1, max: 99 }),
      d: fc.uint8Array({ maxLength: 3000 }),
      end: fc.boolean(),
      pad: fc.option(fc.integer({ min: 0, max: 255 })),
    })
    .map(({ s, d, end, pad }) =>
      pad === null
        ? frame(0, end ? 1 : 0, s, d)
        : frame(0, (end ? 1 : 0) | 8, s, Buffer.concat([Buffer.from([pad]), d, Buffer.alloc(pad)])),
    ),
  fc
    .record({ s: fc.integer({ min: 1, max: 99 }), b: fc.uint8Array({ maxLength: 200 }) })
    .map(({ s, b }) => frame(1, 4, s, b)),
  fc
    .record({
      s: fc.integer({ min: 1, max: 99 }),
      b: fc.uint8Array({ maxLength: 100 }),
      pad: fc.integer({ min: 0, max: 40 }),
      dep: fc.integer({ min: 100, max: 200 }),
      w: fc.integer({ min: 0, max: 255 }),
    })
    .map(({ s, b, pad, dep, w }) =>
      frame(1, 4 | 8 | 0x20, s, Buffer.concat([Buffer.from([pad]), u32(dep), Buffer.from([w]), b, Buffer.alloc(pad)])),
    ),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((o) => frame(6, 0, 0, o)),
  fc.integer({ min: 1, max: 2 ** 31 - 1 }).map((inc) => frame(8, 0, 0, u32(inc))),
  fc
    .array(fc.tuple(fc.integer({ min: 0x10, max: 0xffff }), fc.nat()), { maxLength: 5 })
    .map((e) => frame(4, 0, 0, settingsPayload(e))),
  fc
    .record({ last: fc.integer({ min: 0, max: 2 ** 31 - 1 }), code: fc.nat(), dbg: fc.uint8Array({ maxLength: 50 }) })
    .map(({ last, code, dbg }) => frame(7, 0, 0, Buffer.concat([u32(last, code), dbg]))),
  fc.record({ s: fc.integer({ min: 1, max: 99 }), code: fc.nat() }).map(({ s, code }) => frame(3, 0, s, u32(code))),
  fc.uint8Array({ maxLength: 300 }).map((b) => frame(0xf0, 0, 0, b)),
);

function summary(frames: Frame[]) {
  return frames.map((f) => ({
    ...f,
    payload: Buffer.from(f.payload).toString("hex"),
    opaqueData: f.opaqueData && Buffer.from(f.opaqueData).toString("hex"),
    debugData: f.debugData && Buffer.from(f.debugData).toString("hex"),
  }));
}

/** Feeds `bytes` in the given pieces and rebuilds whole frames from the events. */
function feedSplit(bytes: Buffer, cuts: number[], variant: "release" | "debug"): Frame[] {
  const r = new FrameReader(16384, 2, getCodec(variant));
  const out: Frame[] = [];
  let data: Uint8Array[] = [];
  let fcBytes = 0;
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    r.feed(bytes.subarray(prev, p), (type, flags, streamId, payload, a, b, c) => {
      if (type === 0) {
        data.push(Buffer.from(payload)); // the chunk may be reused by the caller
        fcBytes += a;
        if (flags & T.FLAG_FRAME_END) {
          expect(fcBytes).toBe(c); // flow control counts the whole frame, padding included
          out.push({
            type,
            flags: flags & 0xff,
            streamId,
            length: c,
            payload: Buffer.concat(data),
            padLength: flags & 8 ? b : undefined,
          });
          data = [];
          fcBytes = 0;
        }
      } else {
        out.push({ type, flags, streamId, length: -1, payload: Buffer.from(payload) });
      }
    });
    prev = p;
  }
  r.dispose();
  return out;
}

for (const variant of ["release", "debug"] as const) {
  describe(`frame reader properties (${variant})`, () => {
    it("parses the same frames however the bytes are split", () => {
      fc.assert(
        fc.property(
          fc.array(arbFrame, { minLength: 1, maxLength: 20 }),
          fc.array(fc.nat(), { maxLength: 30 }),
          (frames, cuts) => {
            const bytes = Buffer.concat(frames);
            const whole = parseFrames(bytes, 16384, getCodec(variant));
            expect(whole.length).toBe(frames.filter((f) => f[3] !== 0xf0).length);
            const split = feedSplit(bytes, cuts, variant);
            const strip = (fs: Frame[]) =>
              fs.map((f) => [f.type, f.flags, f.streamId, Buffer.from(f.payload).toString("hex")]);
            expect(strip(split)).toEqual(strip(whole));
            // And byte by byte, the worst case.
            if (bytes.length < 2000) {
              expect(strip(feedSplit(bytes, [...Array(bytes.length).keys()], variant))).toEqual(strip(whole));
            }
            expect(summary(whole).length).toBe(whole.length);
            expect(getCodec(variant).ex.heap_check()).toBeGreaterThanOrEqual(0);
          },
        ),
        { numRuns: 150 },
      );
    });

    it("turns random bytes into frames or an H2Error, never anything else", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 4000 }), (bytes) => {
          try {
            parseFrames(bytes, 16384, getCodec(variant));
          } catch (e) {
            expect(e).toBeInstanceOf(H2Error);
          }
          expect(getCodec(variant).ex.heap_check()).toBeGreaterThanOrEqual(0);
        }),
        { numRuns: 500 },
      );
    });

    it("survives mutated valid streams", () => {
      fc.assert(
        fc.property(
          fc.array(arbFrame, { minLength: 1, maxLength: 10 }),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
          (frames, muts) => {
            const bytes = Buffer.concat(frames);
            for (const [at, v] of muts) bytes[at % bytes.length] = v;
            try {
              feedSplit(bytes, [7, 100, 1000], variant);
            } catch (e) {
              expect(e).toBeInstanceOf(H2Error);
            }
            expect(getCodec(variant).ex.heap_check()).toBeGreaterThanOrEqual(0);
          },
        ),
        { numRuns: 300 },
      );
    });
  });
}
