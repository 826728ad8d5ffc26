// Frame-level facade over the Wasm reader and writers: parseFrames for tests and tools,
// and encoders for every frame the host sends.

import * as abi from "../../assembly/abi.js";
import { H2Error } from "../errors.js";
import { FrameReader, type Codec, getCodec } from "../wasm/codec.js";

export interface Priority {
  exclusive: boolean;
  dependency: number;
  weight: number;
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  /** The length field of the frame header. */
  length: number;
  /** DATA: the data; HEADERS/PUSH_PROMISE/CONTINUATION: the header block fragment; else the payload. */
  payload: Uint8Array;
  padLength?: number;
  priority?: Priority;
  settings?: [number, number][];
  errorCode?: number;
  lastStreamId?: number;
  debugData?: Uint8Array;
  windowIncrement?: number;
  promisedStreamId?: number;
  opaqueData?: Uint8Array;
}

function priorityOf(dep: number, weight: number): Priority {
  return { exclusive: (dep & ~abi.STREAM_ID_MASK) !== 0, dependency: dep & abi.STREAM_ID_MASK, weight };
}

function settingsOf(p: Uint8Array): [number, number][] {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: [number, number][] = [];
  for (let i = 0; i + abi.SETTINGS_ENTRY_LENGTH <= p.length; i += abi.SETTINGS_ENTRY_LENGTH) {
    out.push([dv.getUint16(i), dv.getUint32(i + 2)]);
  }
  return out;
}

/**
 * Parses every complete frame in `bytes` (a slice of a connection after its preface: it may
 * start with a CONTINUATION). Incomplete trailing bytes are ignored. A connection or stream
 * error throws an H2Error whose `code` is the HTTP/2 error code.
 */
export function parseFrames(bytes: Uint8Array, maxFrameSize = abi.DEFAULT_MAX_FRAME_SIZE, codec?: Codec): Frame[] {
  const reader = new FrameReader(maxFrameSize, abi.READER_MID_STREAM, codec);
  const frames: Frame[] = [];
  let data: Uint8Array[] = [];
  try {
    reader.feed(bytes, (type, flags, streamId, payload, a, b, c) => {
      if (type === abi.EV_STREAM_ERROR) throw H2Error.streamViolation(streamId, a, b);
      if (type === abi.FRAME_DATA) {
        data.push(payload);
        if (!(flags & abi.FLAG_FRAME_END)) return;
        frames.push({
          type,
          flags: flags & abi.FLAG_WIRE_MASK,
          streamId,
          length: c,
          padLength: flags & abi.FLAG_PADDED ? b : undefined,
          payload: data.length === 1 ? data[0] : Buffer.concat(data),
        });
        data = [];
        return;
      }
      const f: Frame = { type, flags, streamId, length: c, payload };
      switch (type) {
        case abi.FRAME_HEADERS:
          f.length =
            payload.length +
            (flags & abi.FLAG_PADDED ? 1 + a : 0) +
            (flags & abi.FLAG_PRIORITY ? abi.PRIORITY_LENGTH : 0);
          if (flags & abi.FLAG_PADDED) f.padLength = a;
          if (flags & abi.FLAG_PRIORITY) f.priority = priorityOf(b, c);
          break;
        case abi.FRAME_PRIORITY:
          f.length = abi.PRIORITY_LENGTH;
          f.priority = priorityOf(b, c);
          break;
        case abi.FRAME_PUSH_PROMISE:
          if (flags & abi.FLAG_PADDED) f.padLength = a;
          f.promisedStreamId = b;
          break;
        case abi.FRAME_RST_STREAM:
          f.errorCode = a >>> 0;
          break;
        case abi.FRAME_SETTINGS:
          f.settings = settingsOf(payload);
          break;
        case abi.FRAME_PING:
          f.opaqueData = payload;
          break;
        case abi.FRAME_GOAWAY:
          f.lastStreamId = a;
          f.errorCode = b >>> 0;
          f.debugData = payload;
          break;
        case abi.FRAME_WINDOW_UPDATE:
          f.windowIncrement = a;
          break;
      }
      frames.push(f);
    });
  } finally {
    reader.dispose();
  }
  return frames;
}

/**
 * Frame encoders. Each returns a fresh Buffer holding one whole frame (DATA: only its
 * 9-byte header; the payload is written after it straight from the caller's buffer).
 */
export class FrameWriter {
  readonly codec: Codec;
  constructor(codec: Codec = getCodec()) {
    this.codec = codec;
  }

  private take(size: number, write: (o: number) => number): Buffer {
    const c = this.codec;
    const o = c.ex.output_reserve(size) >>> 0;
    const n = write(o);
    c.refresh();
    return c.copyOut(o, n);
  }

  dataHeader(streamId: number, length: number, endStream: boolean): Buffer {
    return this.take(abi.FRAME_HEADER_SIZE, (o) =>
      this.codec.ex.write_data_header(o, streamId, length, endStream ? 1 : 0),
    );
  }

  settings(entries: [number, number][] = [], ack = false): Buffer {
    const c = this.codec;
    const words = abi.SETTINGS_PAIR_WORDS;
    const pairs = c.ex.input_reserve((entries.length + 1) * words * 4) >>> 0;
    c.refresh();
    const u32 = new Uint32Array(c.u8.buffer, pairs, entries.length * words);
    entries.forEach(([id, v], i) => {
      u32[i * words] = id;
      u32[i * words + 1] = v;
    });
    return this.take(abi.FRAME_HEADER_SIZE + entries.length * abi.SETTINGS_ENTRY_LENGTH, (o) =>
      c.ex.write_settings(o, pairs, entries.length, ack ? 1 : 0),
    );
  }

  ping(opaque: Uint8Array, ack = false): Buffer {
    const dv = new DataView(opaque.buffer, opaque.byteOffset, abi.PING_LENGTH);
    return this.take(abi.FRAME_HEADER_SIZE + abi.PING_LENGTH, (o) =>
      this.codec.ex.write_ping(o, ack ? 1 : 0, dv.getUint32(0), dv.getUint32(4)),
    );
  }

  goaway(lastStreamId: number, code: number, debug: Uint8Array = new Uint8Array(0)): Buffer {
    const c = this.codec;
    const d = c.copyIn(debug);
    return this.take(abi.FRAME_HEADER_SIZE + abi.GOAWAY_MIN_LENGTH + debug.length, (o) =>
      c.ex.write_goaway(o, lastStreamId, code, d, debug.length),
    );
  }

  rstStream(streamId: number, code: number): Buffer {
    return this.take(abi.FRAME_HEADER_SIZE + abi.RST_STREAM_LENGTH, (o) =>
      this.codec.ex.write_rst_stream(o, streamId, code),
    );
  }

  windowUpdate(streamId: number, increment: number): Buffer {
    return this.take(abi.FRAME_HEADER_SIZE + abi.WINDOW_UPDATE_LENGTH, (o) =>
      this.codec.ex.write_window_update(o, streamId, increment),
    );
  }

  priority(streamId: number, p: Priority): Buffer {
    return this.take(abi.FRAME_HEADER_SIZE + abi.PRIORITY_LENGTH, (o) =>
      this.codec.ex.write_priority(o, streamId, p.dependency, p.exclusive ? 1 : 0, p.weight),
    );
  }
}
