// Loads the Wasm codec once per thread. The loader instantiates it (its abort import turns an
// AssemblyScript trap into a readable error); the hot path then calls `instance.exports`
// directly, never through the loader's wrappers.

import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { instantiateSync } from "@assemblyscript/loader";

/** The raw exports of assembly/index.ts. */
export interface CodecExports {
  memory: WebAssembly.Memory;
  abi_version(): number;
  input_reserve(size: number): number;
  output_reserve(size: number): number;
  events_ptr(): number;
  events_capacity(): number;
  reader_new(maxFrameSize: number, options: number): number;
  reader_free(r: number): void;
  reader_set_max_frame_size(r: number, n: number): void;
  reader_set_max_gather(r: number, n: number): void;
  reader_release(r: number): void;
  reader_parse(r: number, p: number, len: number): number;
  reader_consumed(): number;
  reader_error_reason(): number;
  reader_error_stream(): number;
  hpack_new(maxTableSize: number): number;
  hpack_free(t: number): void;
  hpack_set_allowed(t: number, n: number): number;
  hpack_set_max_list(t: number, n: number): void;
  hpack_decode(t: number, p: number, len: number): number;
  hpack_error_reason(): number;
  hpack_records_ptr(): number;
  hpack_bytes_ptr(): number;
  hpack_encoder_set_max(t: number, n: number): void;
  hpack_encode_bound(count: number, bytes: number): number;
  hpack_encode(t: number, inp: number, count: number, out: number): number;
  hpack_table_size(t: number): number;
  hpack_table_count(t: number): number;
  write_data_header(o: number, stream: number, length: number, endStream: number): number;
  write_headers(t: number, inp: number, count: number, o: number, stream: number, endStream: number,
    maxFrameSize: number): number;
  write_settings(o: number, pairs: number, count: number, ack: number): number;
  write_ping(o: number, ack: number, hi: number, lo: number): number;
  write_goaway(o: number, lastStream: number, code: number, debug: number, debugLen: number): number;
  write_rst_stream(o: number, stream: number, code: number): number;
  write_window_update(o: number, stream: number, increment: number): number;
  write_priority(o: number, stream: number, dependency: number, exclusive: number, weight: number): number;
  heap_check(): number;
  memory_bytes(): number;
  heap_set_limit(n: number): void;
  heap_limit(): number;
  heap_taken(): number;
}

export type Variant = "release" | "debug";

function wasmPath(variant: Variant): string {
  const file = variant === "debug" ? "hbone.debug.wasm" : "hbone.wasm";
  // From host/wasm (sources, run by vitest) or dist/host/wasm (compiled).
  for (const rel of ["../../dist/wasm/", "../../wasm/"]) {
    const p = fileURLToPath(new URL(rel + file, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`hbone-wasm: ${file} not found; run \`npm run build\` first`);
}

const instances = new Map<Variant, CodecExports>();

export function defaultVariant(): Variant {
  return process.env.HBONE_WASM_DEBUG === "1" ? "debug" : "release";
}

export function loadExports(variant: Variant = defaultVariant()): CodecExports {
  let ex = instances.get(variant);
  if (!ex) {
    const mod = new WebAssembly.Module(readFileSync(wasmPath(variant)));
    const { instance } = instantiateSync(mod, {});
    ex = instance.exports as unknown as CodecExports;
    instances.set(variant, ex);
  }
  return ex;
}
