// The Wasm exports and the host agree: ABI version, exports present in both builds,
// event layout constants in range, allocator sane after load.

import { describe, expect, it } from "vitest";
import * as abi from "../../assembly/abi.js";
import { getCodec } from "../../host/wasm/codec.js";

const EXPORTS = [
  "abi_version", "input_reserve", "output_reserve", "events_ptr", "events_capacity", "reader_new", "reader_free",
  "reader_set_max_frame_size", "reader_parse", "reader_consumed", "reader_error_reason", "reader_error_stream",
  "hpack_new", "hpack_free", "hpack_set_allowed", "hpack_set_max_list", "hpack_decode", "hpack_error_reason",
  "hpack_records_ptr", "hpack_bytes_ptr", "hpack_encoder_set_max", "hpack_encode_bound", "hpack_encode",
  "hpack_table_size", "hpack_table_count", "write_data_header", "write_headers", "write_settings", "write_ping",
  "write_goaway", "write_rst_stream", "write_window_update", "write_priority", "heap_check", "memory_bytes",
  "reader_set_max_gather", "reader_release", "heap_set_limit", "heap_limit", "heap_taken",
];

for (const variant of ["release", "debug"] as const) {
  describe(`ABI (${variant})`, () => {
    const c = getCodec(variant);
    it("exports every function the host calls, and its memory", () => {
      for (const name of EXPORTS) expect(typeof (c.ex as unknown as Record<string, unknown>)[name], name).toBe("function");
      expect(c.ex.memory).toBeInstanceOf(WebAssembly.Memory);
    });
    it("agrees on the ABI version and event ring", () => {
      expect(c.ex.abi_version()).toBe(abi.ABI_VERSION);
      expect(c.eventsCapacity).toBeGreaterThanOrEqual(1024);
      expect(c.eventsPtr % 16).toBe(0);
      expect(abi.EV_C).toBe(abi.EVENT_WORDS - 1);
    });
    it("starts with a sane allocator", () => {
      expect(c.ex.heap_check()).toBeGreaterThanOrEqual(0);
    });
  });
}
