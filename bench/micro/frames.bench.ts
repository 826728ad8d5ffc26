// Frame parsing: a 1 MiB connection stream of mixed frames, fed in 64 KiB chunks that split
// frames anywhere, through the Wasm FrameReader and through node-http2's pure-JS Deserializer
// (npm `http2`, molnarg/node-http2, lib/protocol/framer.js) on the same bytes.

import { createRequire } from "node:module";
import type { Transform } from "node:stream";
import * as abi from "../../assembly/abi.js";
import { FrameReader } from "../../host/wasm/codec.js";
import { type RunOptions, type SuiteResult, newBench, figureOf, ratioOf } from "../harness.js";

const STREAM_SIZE = 1 << 20;
const CHUNK = 64 << 10;
// node-http2 rejects payloads over the RFC default SETTINGS_MAX_FRAME_SIZE, so no frame exceeds it.
const MAX_PAYLOAD = 16384;
const DATA_SIZES = [16384, 16384, 16384, 8192, 16384, 1024, 16384, 4096, 16384, 100, 16384, 12000];
const HEADER_BLOCK = Buffer.from("828684418cf1e3c2e5f23a6ba0ab90f4ff", "hex"); // GET / http www.example.com

interface Expected {
  frames: string[]; // "type:stream:payloadLength" in wire order
  dataBytes: number;
  dataSum: number;
}

/** Deterministic payload bytes (xorshift), so runs see the same stream. */
function fill(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(9 + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(stream, 5);
  f.set(payload, 9);
  return f;
}

function u32(...v: number[]): Buffer {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32BE(x >>> 0, 4 * i));
  return b;
}

function byteSum(p: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s = (s + p[i]) | 0;
  return s;
}

/**
 * The stream: SETTINGS first (legal at a connection's start), then requests of a HEADERS frame
 * and several DATA frames, with WINDOW_UPDATE and PING among them; exactly STREAM_SIZE bytes.
 */
export function buildStream(): { bytes: Buffer; expected: Expected } {
  const frames: Buffer[] = [];
  const expected: Expected = { frames: [], dataBytes: 0, dataSum: 0 };
  let total = 0;
  // `body` is what a parser should report (no padding or priority); `wire` the payload sent.
  const add = (type: number, flags: number, stream: number, body: Uint8Array, wire = body): void => {
    const f = frame(type, flags, stream, wire);
    frames.push(f);
    total += f.length;
    expected.frames.push(`${type}:${stream}:${body.length}`);
    if (type === abi.FRAME_DATA) {
      expected.dataBytes += body.length;
      expected.dataSum = (expected.dataSum + byteSum(body)) | 0;
    }
  };
  const data = (stream: number, n: number, flags: number, pad = 0): void => {
    const body = fill(n, total + 1);
    if (pad === 0) return add(abi.FRAME_DATA, flags, stream, body);
    const wire = Buffer.concat([Buffer.from([pad]), body, Buffer.alloc(pad)]);
    add(abi.FRAME_DATA, flags | abi.FLAG_PADDED, stream, body, wire);
  };

  const settings = Buffer.alloc(18);
  [
    [abi.SETTINGS_MAX_CONCURRENT_STREAMS, 100],
    [abi.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20],
    [abi.SETTINGS_HEADER_TABLE_SIZE, 4096],
  ].forEach(([id, v], i) => {
    settings.writeUInt16BE(id, 6 * i);
    settings.writeUInt32BE(v, 6 * i + 2);
  });
  add(abi.FRAME_SETTINGS, 0, 0, settings);
  add(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0, Buffer.alloc(0));

  let k = 0,
    stream = 1;
  for (; STREAM_SIZE - total > 3 * (MAX_PAYLOAD + 9); stream += 2) {
    if (stream % 3 === 0) {
      // HEADERS with a priority block: the parser must skip it.
      const p = Buffer.concat([u32(stream - 2), Buffer.from([15]), HEADER_BLOCK]);
      add(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS | abi.FLAG_PRIORITY, stream, HEADER_BLOCK, p);
    } else {
      add(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, stream, HEADER_BLOCK);
    }
    for (let j = 0; j < 4 && STREAM_SIZE - total > 3 * (MAX_PAYLOAD + 9); j++, k++) {
      const n = DATA_SIZES[k % DATA_SIZES.length];
      const padded = k % 7 === 3 && n > 1024; // same wire size, 255 bytes of it padding
      data(stream, padded ? n - 256 : n, j === 3 ? abi.FLAG_END_STREAM : 0, padded ? 255 : 0);
      if (k % 5 === 4) add(abi.FRAME_WINDOW_UPDATE, 0, 0, u32(65536));
      if (k % 5 === 2) add(abi.FRAME_WINDOW_UPDATE, 0, stream, u32(32768));
      if (k % 16 === 9) add(abi.FRAME_PING, 0, 0, u32(k, ~k));
    }
  }
  // One last request whose DATA frames land exactly on STREAM_SIZE.
  add(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, stream, HEADER_BLOCK);
  for (let rem = STREAM_SIZE - total; rem > 0; rem = STREAM_SIZE - total) {
    const n = rem - 9 <= MAX_PAYLOAD ? rem - 9 : Math.min(MAX_PAYLOAD, rem - 18); // leave room for a header
    data(stream, n, rem - 9 <= MAX_PAYLOAD ? abi.FLAG_END_STREAM : 0);
  }
  const bytes = Buffer.concat(frames);
  if (bytes.length !== STREAM_SIZE) throw new Error(`frames bench: stream is ${bytes.length} bytes`);
  return { bytes, expected };
}

/** The frame object node-http2's Deserializer pushes (its fields vary by frame type). */
interface JsFrame {
  type: string;
  stream: number;
  data?: Buffer;
}
type DeserializerCtor = new (log: unknown, role: string) => Transform;

const TYPE_NAMES = [
  "DATA",
  "HEADERS",
  "PRIORITY",
  "RST_STREAM",
  "SETTINGS",
  "PUSH_PROMISE",
  "PING",
  "GOAWAY",
  "WINDOW_UPDATE",
  "CONTINUATION",
];

function nodeHttp2Deserializer(): Transform {
  const require = createRequire(import.meta.url);
  const { Deserializer } = require("http2/lib/protocol/framer.js") as { Deserializer: DeserializerCtor };
  const noop = (): void => {};
  // It logs through a bunyan-like logger; a silent one keeps logging out of the measurement.
  const log = { child: () => log, trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop };
  const d = new Deserializer(log, "SERVER");
  d.on("error", (e: unknown) => {
    throw new Error(`node-http2 Deserializer: ${String(e)}`);
  });
  return d;
}

export async function runFramesBench(opts: RunOptions): Promise<SuiteResult> {
  const { bytes, expected } = buildStream();
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < bytes.length; o += CHUNK) chunks.push(bytes.subarray(o, o + CHUNK));

  // Sanity: both parsers must see the frames we wrote, with the same DATA bytes. Lengths are
  // compared for DATA and HEADERS (padding and priority stripped); fixed-size frames by type.
  const normalize = (s: string): string => {
    const [t, st, len] = s.split(":");
    const type = Number(t);
    const fixed = type === abi.FRAME_SETTINGS || type === abi.FRAME_WINDOW_UPDATE || type === abi.FRAME_PING;
    return `${t}:${st}:${fixed ? 0 : len}`;
  };
  const want = expected.frames.map(normalize);
  {
    const seen: string[] = [];
    let piece = 0,
      sum = 0;
    const r = new FrameReader(1 << 20, 0);
    for (const c of chunks) {
      r.feed(c, (type, flags, streamId, payload) => {
        if (type === abi.FRAME_DATA) {
          piece += payload.length;
          sum = (sum + byteSum(payload)) | 0;
          if (!(flags & abi.FLAG_FRAME_END)) return;
          seen.push(normalize(`${type}:${streamId}:${piece}`));
          piece = 0;
        } else {
          seen.push(normalize(`${type}:${streamId}:${payload.length}`));
        }
      });
    }
    r.dispose();
    check("Wasm FrameReader", seen, want, sum, expected.dataSum);
  }
  {
    const seen: string[] = [];
    let sum = 0;
    const d = nodeHttp2Deserializer();
    d.on("data", (f: JsFrame) => {
      seen.push(normalize(`${TYPE_NAMES.indexOf(f.type)}:${f.stream}:${f.data ? f.data.length : 0}`));
      if (f.type === "DATA" && f.data) sum = (sum + byteSum(f.data)) | 0;
    });
    for (const c of chunks) d.write(c);
    check("node-http2 Deserializer", seen, want, sum, expected.dataSum);
  }

  const bench = newBench("frames", opts);
  const reader = new FrameReader(1 << 20, 0);
  let wasmBytes = 0;
  const visit = (type: number, _flags: number, _stream: number, payload: Uint8Array): void => {
    if (type === abi.FRAME_DATA) wasmBytes += payload.length;
  };
  const deser = nodeHttp2Deserializer();
  let jsBytes = 0;
  deser.on("data", (f: JsFrame) => {
    if (f.type === "DATA" && f.data) jsBytes += f.data.length;
  });

  const WASM = "frames: Wasm FrameReader",
    JS = "frames: node-http2 Deserializer (pure JS)";
  bench.add(WASM, () => {
    wasmBytes = 0;
    for (let i = 0; i < chunks.length; i++) reader.feed(chunks[i], visit);
    if (wasmBytes !== expected.dataBytes) throw new Error(`Wasm FrameReader saw ${wasmBytes} DATA bytes`);
  });
  bench.add(JS, () => {
    jsBytes = 0;
    for (let i = 0; i < chunks.length; i++) deser.write(chunks[i]);
    if (jsBytes !== expected.dataBytes) throw new Error(`node-http2 Deserializer saw ${jsBytes} DATA bytes`);
  });
  await bench.run();
  reader.dispose();

  const extra = { bytesPerOp: expected.dataBytes, throughputUnit: "MB/s DATA" };
  const wasm = figureOf(bench.getTask(WASM)!, { ...extra, baseline: JS });
  const js = figureOf(bench.getTask(JS)!, extra);
  const mbps = wasm.throughputMBps!;
  return {
    suite: "frames",
    figures: [wasm, js],
    ratios: [ratioOf("frame parsing: Wasm vs node-http2", wasm, js)],
    targets: [{ name: "Wasm frame parsing, MB/s of DATA payload", value: mbps, goal: 2000, met: mbps >= 2000 }],
    notes: [
      `frames: ${want.length} frames, ${bytes.length} bytes, ${expected.dataBytes} DATA payload bytes per op, ` +
        `fed in ${CHUNK / 1024} KiB chunks; frames <= 16 KiB (node-http2's limit). MB = 10^6 bytes.`,
      "frames baseline: npm `http2` 3.3.7 (molnarg/node-http2) lib/protocol/framer.js Deserializer, " +
        "driven through its stream write() with a silent logger.",
    ],
  };
}

function check(who: string, seen: string[], want: string[], sum: number, wantSum: number): void {
  const i = want.findIndex((w, k) => seen[k] !== w);
  if (i >= 0 || seen.length !== want.length) {
    const at = i >= 0 ? i : Math.min(seen.length, want.length);
    throw new Error(
      `frames bench: ${who} disagrees at frame ${at}: got ${seen[at]}, want ${want[at]} ` +
        `(${seen.length} vs ${want.length} frames)`,
    );
  }
  if (sum !== wantSum) throw new Error(`frames bench: ${who} DATA bytes differ from what was written`);
}
