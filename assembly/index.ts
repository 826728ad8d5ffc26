// The module's entry: the core, HTTP/2 and HPACK exports, plus the baggage and LB rooms' lists
// (re-exported at the end). Flat functions over linear memory taking and returning i32/u32 (and
// f64 for the LB's times); the host types them all in host/wasm/exports.ts and calls them raw.
// Pointers are byte addresses in `memory`; the layouts behind them are in abi.ts and the rooms' ABI files.

import { ABI_VERSION } from "./abi";
import {
  input, output, reserve, events, EVENT_CAPACITY, headerRecords, headerBytes, heapCheck, heapLimit, heapTaken, setHeapLimit,
} from "./memory";
import * as reader from "./h2/frame-reader";
import * as writer from "./h2/frame-writer";
import { Hpack, hpackNew, hpackFree, ensureCapacity } from "./hpack/table";
import { hpackDecode, decoderSetAllowed, lastReason as hpackReason } from "./hpack/decoder";
import { hpackEncode, encoderSetMaxSize, encodeBound } from "./hpack/encoder";

export function abi_version(): i32 {
  return ABI_VERSION;
}

// Shared regions. A reserve may grow memory: the host re-creates its views afterwards.
// The two shared regions are one per thread, sized by the largest chunk or frame handled, so
// they are not budgeted; every per-connection allocating export returns 0 (or a negative
// code) once the allocator's budget is spent.
export function input_reserve(size: i32): usize {
  return reserve(input, size, true);
}
export function output_reserve(size: i32): usize {
  return reserve(output, size, true);
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
/** Largest non-DATA frame the reader gathers (at least 16 KiB); larger ones: ENHANCE_YOUR_CALM. */
export function reader_set_max_gather(r: usize, n: i32): void {
  reader.readerSetMaxGather(changetype<reader.Reader>(r), n);
}
/** Call once the events of a parse are taken: frees the gather buffer unless a frame is half gathered. */
export function reader_release(r: usize): void {
  reader.readerRelease(changetype<reader.Reader>(r));
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
/** A new HPACK context, or 0 when the allocator's budget is spent. */
export function hpack_new(maxTableSize: i32): usize {
  return changetype<usize>(hpackNew(maxTableSize));
}
export function hpack_free(t: usize): void {
  hpackFree(changetype<Hpack>(t));
}
/** Decoder: the table size we advertise in SETTINGS_HEADER_TABLE_SIZE. 0, or -1 past the budget (nothing changed). */
export function hpack_set_allowed(t: usize, n: i32): i32 {
  const h = changetype<Hpack>(t);
  if (!ensureCapacity(h, n)) return -1;
  decoderSetAllowed(h, n);
  return 0;
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
/** Bytes of linear memory in use by the module (grows, never shrinks; read it `>>> 0`). */
export function memory_bytes(): u32 {
  return <u32>(memory.size() << 16);
}
/** Budget of fresh heap bytes for peer-driven allocations (default 768 MiB; the memory maximum is 1 GiB). */
export function heap_set_limit(n: u32): void {
  setHeapLimit(<usize>n);
}
export function heap_limit(): u32 {
  return <u32>heapLimit;
}
/** Fresh heap bytes taken so far (free-list blocks are reused before any more is taken). */
export function heap_taken(): u32 {
  return <u32>heapTaken;
}

// Baggage codec and load-balancing tables: each room owns its export list.
export * from "./baggage/exports";
export * from "./lb/exports";
