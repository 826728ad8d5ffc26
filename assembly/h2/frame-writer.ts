// HTTP/2 frame encoders (RFC 9113 §6) for every frame the host sends. Each writes a whole
// frame at `o` and returns its length. DATA gets only its 9-byte header: the payload goes
// from the application's buffer to the socket and never enters Wasm memory.

import {
  FRAME_DATA, FRAME_HEADERS, FRAME_PRIORITY, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_PING, FRAME_GOAWAY,
  FRAME_WINDOW_UPDATE, FRAME_CONTINUATION, FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS, FRAME_HEADER_SIZE,
  SETTINGS_PAIR_WORDS, SETTINGS_ENTRY_LENGTH, PING_LENGTH, GOAWAY_MIN_LENGTH, RST_STREAM_LENGTH, WINDOW_UPDATE_LENGTH,
  PRIORITY_LENGTH, STREAM_ID_MASK,
} from "../abi";
import { Hpack } from "../hpack/table";
import { hpackEncode } from "../hpack/encoder";

@inline export function writeFrameHeader(o: usize, length: i32, type: i32, flags: i32, stream: i32): void {
  store<u8>(o, <u8>(length >>> 16));
  store<u8>(o, <u8>(length >>> 8), 1);
  store<u8>(o, <u8>length, 2);
  store<u8>(o, <u8>type, 3);
  store<u8>(o, <u8>flags, 4);
  store<u32>(o, bswap<u32>(<u32>stream & STREAM_ID_MASK), 5);
}

export function writeDataHeader(o: usize, stream: i32, length: i32, endStream: bool): i32 {
  writeFrameHeader(o, length, FRAME_DATA, endStream ? FLAG_END_STREAM : 0, stream);
  return FRAME_HEADER_SIZE;
}

/** SETTINGS from `count` (u32 id, u32 value) pairs at `pairs`; ack = 1 writes an empty ACK. */
export function writeSettings(o: usize, pairs: usize, count: i32, ack: bool): i32 {
  if (ack) {
    writeFrameHeader(o, 0, FRAME_SETTINGS, FLAG_ACK, 0);
    return FRAME_HEADER_SIZE;
  }
  writeFrameHeader(o, count * SETTINGS_ENTRY_LENGTH, FRAME_SETTINGS, 0, 0);
  for (let i = 0; i < count; i++) {
    const q = o + FRAME_HEADER_SIZE + <usize>(i * SETTINGS_ENTRY_LENGTH);
    const pair = pairs + <usize>(i * SETTINGS_PAIR_WORDS * 4);
    store<u16>(q, bswap<u16>(<u16>load<u32>(pair)));
    store<u32>(q, bswap<u32>(load<u32>(pair, 4)), 2);
  }
  return FRAME_HEADER_SIZE + count * SETTINGS_ENTRY_LENGTH;
}

/** PING with the 8 opaque bytes given as two big-endian words. */
export function writePing(o: usize, ack: bool, hi: u32, lo: u32): i32 {
  writeFrameHeader(o, PING_LENGTH, FRAME_PING, ack ? FLAG_ACK : 0, 0);
  store<u32>(o, bswap<u32>(hi), FRAME_HEADER_SIZE);
  store<u32>(o, bswap<u32>(lo), FRAME_HEADER_SIZE + 4);
  return FRAME_HEADER_SIZE + PING_LENGTH;
}

export function writeGoaway(o: usize, lastStream: i32, code: i32, debug: usize, debugLen: i32): i32 {
  writeFrameHeader(o, GOAWAY_MIN_LENGTH + debugLen, FRAME_GOAWAY, 0, 0);
  store<u32>(o, bswap<u32>(<u32>lastStream & STREAM_ID_MASK), FRAME_HEADER_SIZE);
  store<u32>(o, bswap<u32>(<u32>code), FRAME_HEADER_SIZE + 4);
  if (debugLen > 0) memory.copy(o + FRAME_HEADER_SIZE + GOAWAY_MIN_LENGTH, debug, <usize>debugLen);
  return FRAME_HEADER_SIZE + GOAWAY_MIN_LENGTH + debugLen;
}

export function writeRstStream(o: usize, stream: i32, code: i32): i32 {
  writeFrameHeader(o, RST_STREAM_LENGTH, FRAME_RST_STREAM, 0, stream);
  store<u32>(o, bswap<u32>(<u32>code), FRAME_HEADER_SIZE);
  return FRAME_HEADER_SIZE + RST_STREAM_LENGTH;
}

export function writeWindowUpdate(o: usize, stream: i32, increment: i32): i32 {
  writeFrameHeader(o, WINDOW_UPDATE_LENGTH, FRAME_WINDOW_UPDATE, 0, stream);
  store<u32>(o, bswap<u32>(<u32>increment & STREAM_ID_MASK), FRAME_HEADER_SIZE);
  return FRAME_HEADER_SIZE + WINDOW_UPDATE_LENGTH;
}

export function writePriority(o: usize, stream: i32, dependency: i32, exclusive: bool, weight: i32): i32 {
  writeFrameHeader(o, PRIORITY_LENGTH, FRAME_PRIORITY, 0, stream);
  store<u32>(o, bswap<u32>((<u32>dependency & STREAM_ID_MASK) | (exclusive ? 0x80000000 : 0)), FRAME_HEADER_SIZE);
  store<u8>(o, <u8>(weight - 1), FRAME_HEADER_SIZE + 4);
  return FRAME_HEADER_SIZE + PRIORITY_LENGTH;
}

/**
 * HEADERS (+ CONTINUATION frames when the block exceeds maxFrameSize): HPACK-encodes the
 * fields at `inp` straight into the frame, then opens gaps for the CONTINUATION headers.
 * `o` must hold encodeBound(...) + 9 * (bound / maxFrameSize + 1) bytes.
 */
export function writeHeaders(t: Hpack, inp: usize, count: i32, o: usize, stream: i32, endStream: bool,
                             maxFrameSize: i32): i32 {
  const block = hpackEncode(t, inp, count, o + FRAME_HEADER_SIZE);
  const es = endStream ? FLAG_END_STREAM : 0;
  if (block <= maxFrameSize) {
    writeFrameHeader(o, block, FRAME_HEADERS, es | FLAG_END_HEADERS, stream);
    return FRAME_HEADER_SIZE + block;
  }
  const frames = (block + maxFrameSize - 1) / maxFrameSize;
  // Move fragments 1..frames-1 right, last first, each by 9 bytes per preceding frame header.
  for (let i = frames - 1; i >= 1; i--) {
    const from = o + FRAME_HEADER_SIZE + <usize>(i * maxFrameSize);
    const n = min<i32>(maxFrameSize, block - i * maxFrameSize);
    const to = from + <usize>((i - 1) * FRAME_HEADER_SIZE); // where frame i starts
    memory.copy(to + FRAME_HEADER_SIZE, from, <usize>n);
    writeFrameHeader(to, n, FRAME_CONTINUATION, i == frames - 1 ? FLAG_END_HEADERS : 0, stream);
  }
  writeFrameHeader(o, maxFrameSize, FRAME_HEADERS, es, stream);
  return block + frames * FRAME_HEADER_SIZE;
}
