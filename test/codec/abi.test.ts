// The Wasm exports and the host agree: ABI version, every export host/wasm/exports.ts types present in both
// builds with its arity (and nothing else exported), event layout constants in range, allocator sane after load.

import { describe, expect, it } from "vitest";
import * as abi from "../../assembly/abi.js";
import { getCodec } from "../../host/wasm/codec.js";
import type { WasmExports } from "../../host/wasm/exports.js";

/** Each export's parameter count (-1: the memory). `satisfies` makes tsc fail when this and the typings differ. */
const EXPORTS = {
  memory: -1,
  abi_version: 0,
  input_reserve: 1,
  output_reserve: 1,
  events_ptr: 0,
  events_capacity: 0,
  heap_check: 0,
  memory_bytes: 0,
  heap_set_limit: 1,
  heap_limit: 0,
  heap_taken: 0,
  reader_new: 2,
  reader_free: 1,
  reader_set_max_frame_size: 2,
  reader_set_max_gather: 2,
  reader_release: 1,
  reader_parse: 3,
  reader_consumed: 0,
  reader_error_reason: 0,
  reader_error_stream: 0,
  write_data_header: 4,
  write_headers: 7,
  write_settings: 4,
  write_ping: 4,
  write_goaway: 5,
  write_rst_stream: 3,
  write_window_update: 3,
  write_priority: 5,
  hpack_new: 1,
  hpack_free: 1,
  hpack_set_allowed: 2,
  hpack_set_max_list: 2,
  hpack_decode: 3,
  hpack_error_reason: 0,
  hpack_records_ptr: 0,
  hpack_bytes_ptr: 0,
  hpack_encoder_set_max: 2,
  hpack_encode_bound: 2,
  hpack_encode: 4,
  hpack_table_size: 1,
  hpack_table_count: 1,
  baggage_decode: 3,
  baggage_result_ptr: 0,
  baggage_encode: 3,
  baggage_encode_bound: 1,
  lb_new: 3,
  lb_free: 1,
  lb_endpoints_reserve: 2,
  lb_endpoint_reset: 2,
  lb_report_failure: 3,
  lb_report_success: 3,
  lb_ejected_until: 2,
  lb_table_new: 3,
  lb_table_records: 1,
  lb_table_free: 1,
  lb_pick: 11,
  lb_pick_rank: 0,
  lb_pick_second: 1,
} satisfies Record<keyof WasmExports, number>;

for (const variant of ["release", "debug"] as const) {
  describe(`ABI (${variant})`, () => {
    const c = getCodec(variant);
    const raw = c.ex as unknown as Record<string, unknown>;
    it("exports every function the host types, with its arity, and its memory; nothing else", () => {
      for (const [name, arity] of Object.entries(EXPORTS)) {
        if (arity < 0) continue;
        expect(typeof raw[name], name).toBe("function");
        expect((raw[name] as (...args: unknown[]) => unknown).length, name).toBe(arity);
      }
      expect(c.ex.memory).toBeInstanceOf(WebAssembly.Memory);
      expect(Object.keys(raw).sort()).toEqual(Object.keys(EXPORTS).sort());
    });
    it("agrees on the ABI version and event ring", () => {
      expect(c.ex.abi_version()).toBe(abi.ABI_VERSION);
      expect(c.eventsCapacity).toBeGreaterThanOrEqual(1024);
      expect(c.eventsPtr % 16).toBe(0);
      expect(abi.EV_C).toBe(abi.EVENT_WORDS - 1);
      expect(abi.HDR_FLAGS).toBe(abi.HDR_WORDS - 1);
      expect(abi.ENC_FLAGS).toBe(abi.ENC_WORDS - 1);
    });
    it("starts with a sane allocator", () => {
      expect(c.ex.heap_check()).toBeGreaterThanOrEqual(0);
    });
  });
}
