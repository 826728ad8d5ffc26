// The ABI: the only export list of the Wasm module. Flat i32 functions over linear memory;
// the host (host/wasm/codec.ts) calls them raw. Pointers are byte addresses in `memory`.

import { ABI_VERSION } from "./abi";
import { input, output, reserve, events, EVENT_CAPACITY, headerRecords, headerBytes, heapCheck } from "./memory";
import * as reader from "./h2/frame-reader";
import * as writer from "./h2/frame-writer";
import { Hpack, hpackNew, hpackFree, ensureCapacity } from "./hpack/table";
import { hpackDecode, decoderSetAllowed, lastReason as hpackReason } from "./hpack/decoder";
import { hpackEncode, encoderSetMaxSize, encodeBound } from "./hpack/encoder";

export function abi_version(): i32 {
  return ABI_VERSION;
}

// Shared regions. A reserve may grow memory: the host re-creates its views afterwards.
export function input_reserve(size: i32): usize {
  return reserve(input, size);
}
export function output_reserve(size: i32): usize {
  return reserve(output, size);
}
export function events_ptr(): usize {
  return events;
}
export function events_capacity(): i32 {
  return EVENT_CAPACITY;
}

// Frame reader.
export function reader_new(maxFrameSize: i32, options: i32): usize {
  return changetype<usize>(reader.readerNew(maxFrameSize, options));
}
export function reader_free(r: usize): void {
  reader.readerFree(changetype<reader.Reader>(r));
}
export function reader_set_max_frame_size(r: usize, n: i32): void {
  reader.readerSetMaxFrameSize(changetype<reader.Reader>(r), n);
}
export function reader_parse(r: usize, p: usize, len: i32): i32 {
  return reader.readerParse(changetype<reader.Reader>(r), p, len);
}
export function reader_consumed(): i32 {
  return reader.consumed;
}
export function reader_error_reason(): i32 {
  return reader.lastReason;
}
export function reader_error_stream(): i32 {
  return reader.lastStream;
}

// HPACK contexts (one per direction per connection).
export function hpack_new(maxTableSize: i32): usize {
  return changetype<usize>(hpackNew(maxTableSize));
}
export function hpack_free(t: usize): void {
  hpackFree(changetype<Hpack>(t));
}
/** Decoder: the table size we advertise in SETTINGS_HEADER_TABLE_SIZE. */
export function hpack_set_allowed(t: usize, n: i32): void {
  const h = changetype<Hpack>(t);
  ensureCapacity(h, n);
  decoderSetAllowed(h, n);
}
/** Decoder: SETTINGS_MAX_HEADER_LIST_SIZE we enforce. */
export function hpack_set_max_list(t: usize, n: i32): void {
  changetype<Hpack>(t).maxList = n;
}
export function hpack_decode(t: usize, p: usize, len: i32): i32 {
  return hpackDecode(changetype<Hpack>(t), p, len);
}
export function hpack_error_reason(): i32 {
  return hpackReason;
}
export function hpack_records_ptr(): usize {
  return headerRecords.ptr;
}
export function hpack_bytes_ptr(): usize {
  return headerBytes.ptr;
}
/** Encoder: a new table size to use and announce (bounded by the peer's SETTINGS). */
export function hpack_encoder_set_max(t: usize, n: i32): void {
  encoderSetMaxSize(changetype<Hpack>(t), n);
}
export function hpack_encode_bound(count: i32, bytes: i32): i32 {
  return encodeBound(count, bytes);
}
export function hpack_encode(t: usize, inp: usize, count: i32, out: usize): i32 {
  return hpackEncode(changetype<Hpack>(t), inp, count, out);
}
export function hpack_table_size(t: usize): i32 {
  return changetype<Hpack>(t).size;
}
export function hpack_table_count(t: usize): i32 {
  return changetype<Hpack>(t).count;
}

// Frame writers.
export function write_data_header(o: usize, stream: i32, length: i32, endStream: i32): i32 {
  return writer.writeDataHeader(o, stream, length, endStream != 0);
}
export function write_headers(t: usize, inp: usize, count: i32, o: usize, stream: i32, endStream: i32,
                              maxFrameSize: i32): i32 {
  return writer.writeHeaders(changetype<Hpack>(t), inp, count, o, stream, endStream != 0, maxFrameSize);
}
export function write_settings(o: usize, pairs: usize, count: i32, ack: i32): i32 {
  return writer.writeSettings(o, pairs, count, ack != 0);
}
export function write_ping(o: usize, ack: i32, hi: u32, lo: u32): i32 {
  return writer.writePing(o, ack != 0, hi, lo);
}
export function write_goaway(o: usize, lastStream: i32, code: i32, debug: usize, debugLen: i32): i32 {
  return writer.writeGoaway(o, lastStream, code, debug, debugLen);
}
export function write_rst_stream(o: usize, stream: i32, code: i32): i32 {
  return writer.writeRstStream(o, stream, code);
}
export function write_window_update(o: usize, stream: i32, increment: i32): i32 {
  return writer.writeWindowUpdate(o, stream, increment);
}
export function write_priority(o: usize, stream: i32, dependency: i32, exclusive: i32, weight: i32): i32 {
  return writer.writePriority(o, stream, dependency, exclusive != 0, weight);
}

/** Free blocks held by the allocator, or -1 if its lists are corrupt (tests check this). */
export function heap_check(): i32 {
  return heapCheck();
}
/** Bytes of linear memory in use by the module (grows, never shrinks). */
export function memory_bytes(): i32 {
  return <i32>(memory.size() << 16);
}

// Baggage codec and load-balancing tables: each room owns its export list.
export * from "./baggage/exports";
export * from "./lb/exports";
