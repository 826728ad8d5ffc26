// The raw exports of the Wasm module, every room's (assembly/index.ts re-exports the baggage and LB
// rooms' lists), typed once for the host. Calls are flat: integers and f64 only, never i64 (a BigInt).
// The aliases name the Wasm type each number carries; the layouts behind the pointers are in
// assembly/abi.ts, assembly/baggage/abi.ts and assembly/lb/layout.ts.

/** A byte address in `memory` (Wasm usize); 0 when an allocation failed. Read it `>>> 0`. */
export type Ptr = number;
/** A Wasm i32. */
export type I32 = number;
/** A Wasm u32 (arrives as a negative number from 2^31 up: read it `>>> 0`). */
export type U32 = number;
/** A Wasm f64 (the LB's times in ms). */
export type F64 = number;

/** The shared regions, the allocator and the ABI version (assembly/index.ts, memory.ts). */
export interface CoreExports {
  memory: WebAssembly.Memory;
  abi_version(): I32;
  input_reserve(size: I32): Ptr;
  output_reserve(size: I32): Ptr;
  events_ptr(): Ptr;
  events_capacity(): I32;
  heap_check(): I32;
  memory_bytes(): U32;
  heap_set_limit(n: U32): void;
  heap_limit(): U32;
  heap_taken(): U32;
}

/** The frame reader and writers (assembly/h2/). */
export interface H2Exports {
  reader_new(maxFrameSize: I32, options: I32): Ptr;
  reader_free(r: Ptr): void;
  reader_set_max_frame_size(r: Ptr, n: I32): void;
  reader_set_max_gather(r: Ptr, n: I32): void;
  reader_release(r: Ptr): void;
  /** Events written to events_ptr(), or -(connection error code). */
  reader_parse(r: Ptr, p: Ptr, len: I32): I32;
  reader_consumed(): I32;
  reader_error_reason(): I32;
  reader_error_stream(): I32;
  write_data_header(o: Ptr, stream: I32, length: I32, endStream: I32): I32;
  write_headers(t: Ptr, inp: Ptr, count: I32, o: Ptr, stream: I32, endStream: I32, maxFrameSize: I32): I32;
  write_settings(o: Ptr, pairs: Ptr, count: I32, ack: I32): I32;
  write_ping(o: Ptr, ack: I32, hi: U32, lo: U32): I32;
  write_goaway(o: Ptr, lastStream: I32, code: I32, debug: Ptr, debugLen: I32): I32;
  write_rst_stream(o: Ptr, stream: I32, code: I32): I32;
  write_window_update(o: Ptr, stream: I32, increment: I32): I32;
  write_priority(o: Ptr, stream: I32, dependency: I32, exclusive: I32, weight: I32): I32;
}

/** HPACK contexts (assembly/hpack/). */
export interface HpackExports {
  hpack_new(maxTableSize: I32): Ptr;
  hpack_free(t: Ptr): void;
  hpack_set_allowed(t: Ptr, n: I32): I32;
  hpack_set_max_list(t: Ptr, n: I32): void;
  /** Header records written to hpack_records_ptr(), or a negative code. */
  hpack_decode(t: Ptr, p: Ptr, len: I32): I32;
  hpack_error_reason(): I32;
  hpack_records_ptr(): Ptr;
  hpack_bytes_ptr(): Ptr;
  hpack_encoder_set_max(t: Ptr, n: I32): void;
  hpack_encode_bound(count: I32, bytes: I32): I32;
  hpack_encode(t: Ptr, inp: Ptr, count: I32, out: Ptr): I32;
  hpack_table_size(t: Ptr): I32;
  hpack_table_count(t: Ptr): I32;
}

/** The baggage codec (assembly/baggage/exports.ts). */
export interface BaggageExports {
  /** Records written to baggage_result_ptr(), or -(BAGGAGE_E_*). */
  baggage_decode(mode: I32, p: Ptr, lines: I32): I32;
  baggage_result_ptr(): Ptr;
  /** The header's length at o, or -(slot + 1) for a field that cannot be sent. */
  baggage_encode(p: Ptr, type: I32, o: Ptr): I32;
  baggage_encode_bound(bytes: I32): I32;
}

/** The load-balancing tables and outlier state (assembly/lb/exports.ts). */
export interface LbExports {
  lb_new(failures: I32, baseEjectionMs: F64, maxEjectionMs: F64): Ptr;
  lb_free(ctx: Ptr): void;
  lb_endpoints_reserve(ctx: Ptr, count: I32): I32;
  lb_endpoint_reset(ctx: Ptr, id: I32): void;
  lb_report_failure(ctx: Ptr, id: I32, now: F64): I32;
  lb_report_success(ctx: Ptr, id: I32, now: F64): void;
  lb_ejected_until(ctx: Ptr, id: I32): F64;
  lb_table_new(ctx: Ptr, count: I32, ports: I32): Ptr;
  lb_table_records(t: Ptr): Ptr;
  lb_table_free(t: Ptr): void;
  lb_pick(
    t: Ptr,
    port: I32,
    policy: I32,
    network: I32,
    cluster: I32,
    region: I32,
    zone: I32,
    subzone: I32,
    node: I32,
    rand: U32,
    now: F64,
  ): I32;
  lb_pick_rank(): I32;
  /** A second candidate of the last lb_pick (two choices), drawn with rand2; -1 if none. */
  lb_pick_second(rand2: U32): I32;
}

/** Every export of the module. */
export type WasmExports = CoreExports & H2Exports & HpackExports & BaggageExports & LbExports;
