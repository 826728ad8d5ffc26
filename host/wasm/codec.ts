// The one thin boundary between the host and the Wasm codec: copy bytes in, run, read
// fixed-size event records, map payload offsets back onto the caller's chunk.

import { H2Error } from "../errors.js";
import type { WasmExports } from "./exports.js";
import { type Variant, loadExports, defaultVariant } from "./instance.js";
import * as abi from "../../assembly/abi.js";

/** Node's Buffer has fast latin1 accessors that its typings leave out (undici uses them too). */
export type LatinBuffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length: number): number;
};

/** Views over Wasm memory, re-created whenever memory grows (growth detaches them). */
export class Codec {
  readonly ex: WasmExports;
  u8!: Uint8Array;
  i32!: Int32Array;
  mem!: LatinBuffer;
  private buffer: ArrayBuffer | null = null;
  readonly eventsPtr: number;
  readonly eventsCapacity: number;

  constructor(ex: WasmExports) {
    if (ex.abi_version() !== abi.ABI_VERSION) {
      throw new Error(`hbone-wasm: Wasm ABI ${ex.abi_version()} does not match host ABI ${abi.ABI_VERSION}; rebuild`);
    }
    this.ex = ex;
    this.eventsPtr = ex.events_ptr() >>> 0;
    this.eventsCapacity = ex.events_capacity();
    this.refresh();
  }

  /** Call after any export that may allocate. Cheap when memory did not grow. */
  refresh(): void {
    const b = this.ex.memory.buffer;
    if (b !== this.buffer) {
      this.buffer = b;
      this.u8 = new Uint8Array(b);
      this.i32 = new Int32Array(b);
      this.mem = Buffer.from(b) as LatinBuffer;
    }
  }

  /** Copies bytes into the input region; returns their address. */
  copyIn(bytes: Uint8Array): number {
    const p = this.ex.input_reserve(bytes.length) >>> 0;
    if (p === 0) throw outOfMemory();
    this.refresh();
    this.u8.set(bytes, p);
    return p;
  }

  /** Bytes of Wasm linear memory (never shrinks; the module's maximum is 1 GiB). */
  get memoryBytes(): number {
    return this.ex.memory_bytes() >>> 0;
  }

  /** Budget of fresh heap bytes for per-connection allocations (default 768 MiB); tests lower it. */
  get heapLimit(): number {
    return this.ex.heap_limit() >>> 0;
  }
  set heapLimit(n: number) {
    this.ex.heap_set_limit(n >>> 0);
  }

  /** Fresh heap bytes taken so far (freed blocks are reused first). */
  get heapTaken(): number {
    return this.ex.heap_taken() >>> 0;
  }

  /** How deep FrameReader.feed calls are nested (a visitor feeding another reader). */
  feedDepth = 0;
  private readonly eventCopies: Int32Array[] = [];

  /** Where a feed at nesting `depth` copies its events: one buffer per depth, shared by all readers. */
  eventScratch(depth: number): Int32Array {
    return (this.eventCopies[depth] ??= new Int32Array(this.eventsCapacity * abi.EVENT_WORDS));
  }

  /** A copy of Wasm bytes [p, p+n) that outlives the next call. */
  copyOut(p: number, n: number): Buffer {
    return Buffer.from(this.u8.subarray(p, p + n));
  }
}

/** The codec's allocation budget is spent: a connection error of the session that asked (INTERNAL_ERROR). */
export function outOfMemory(): H2Error {
  return H2Error.violation(abi.INTERNAL_ERROR, abi.R_OUT_OF_MEMORY);
}

const codecs = new Map<Variant, Codec>();

/** The codec of this thread (release build unless HBONE_WASM_DEBUG=1, or as asked). */
export function getCodec(variant: Variant = defaultVariant()): Codec {
  let c = codecs.get(variant);
  if (!c) {
    c = new Codec(loadExports(variant));
    codecs.set(variant, c);
  }
  return c;
}

/** Frees Wasm-side objects whose JS owner was collected without dispose(). */
export const wasmFinalizer = new FinalizationRegistry<() => void>((free) => free());

/**
 * Receives the events of FrameReader.feed in wire order. `payload` is a view of the fed chunk
 * (DATA, and anything that arrived whole) or a private copy; it stays valid after the call.
 */
export type FrameVisitor = (
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array,
  a: number,
  b: number,
  c: number,
) => void;

const EMPTY = new Uint8Array(0);

/** Incremental frame reader: one per connection (assembly/h2/frame-reader.ts). */
export class FrameReader {
  readonly codec: Codec;
  private r: number;
  private payloads: Uint8Array[] = [];

  /** Throws H2Error(INTERNAL_ERROR, R_OUT_OF_MEMORY) when the codec's budget is spent. */
  constructor(maxFrameSize = abi.DEFAULT_MAX_FRAME_SIZE, options = 0, codec: Codec = getCodec()) {
    this.codec = codec;
    this.r = codec.ex.reader_new(maxFrameSize, options) >>> 0;
    if (this.r === 0) throw outOfMemory();
    const ex = codec.ex,
      r = this.r;
    wasmFinalizer.register(this, () => ex.reader_free(r), this);
  }

  setMaxFrameSize(n: number): void {
    this.codec.ex.reader_set_max_frame_size(this.r, n);
  }

  /** Largest non-DATA frame accepted (at least 16 KiB; default: the max frame size). */
  setMaxGather(n: number): void {
    this.codec.ex.reader_set_max_gather(this.r, n);
  }

  /**
   * Parses a chunk and calls `visit` for each event. A connection error throws H2Error
   * (stream errors arrive as events of type EV_STREAM_ERROR).
   */
  feed(chunk: Uint8Array, visit: FrameVisitor): void {
    const codec = this.codec;
    const depth = codec.feedDepth++;
    try {
      this.feedAt(chunk, depth, visit);
    } finally {
      codec.feedDepth--;
    }
  }

  private feedAt(chunk: Uint8Array, depth: number, visit: FrameVisitor): void {
    const codec = this.codec,
      ex = codec.ex,
      len = chunk.length;
    let off = 0;
    let base = codec.copyIn(chunk);
    while (off < len) {
      if (this.r === 0) return; // disposed by a visitor (the session failed)
      const n = ex.reader_parse(this.r, base + off, len - off);
      const consumed = ex.reader_consumed();
      if (n < 0) {
        throw H2Error.violation(-n, ex.reader_error_reason(), ex.reader_error_stream());
      }
      codec.refresh();
      // Copy the events and resolve payloads before any visitor runs: a visitor may feed
      // another reader (a session nested in a stream), which reuses the shared regions.
      const ev = codec.eventScratch(depth);
      const w = n * abi.EVENT_WORDS;
      ev.set(codec.i32.subarray(codec.eventsPtr >>> 2, (codec.eventsPtr >>> 2) + w));
      const payloads = this.payloads;
      const lo = base + off,
        hi = base + len; // where the chunk's unparsed bytes sit in Wasm memory
      for (let k = 0; k < n; k++) {
        const o = ev[k * abi.EVENT_WORDS + abi.EV_OFF] >>> 0,
          l = ev[k * abi.EVENT_WORDS + abi.EV_LEN];
        if (l === 0) payloads[k] = EMPTY;
        else if (o >= lo && o + l <= hi) payloads[k] = chunk.subarray(o - base, o - base + l);
        else payloads[k] = codec.copyOut(o, l);
      }
      ex.reader_release(this.r); // gathered payloads are copied: the buffer goes back to the allocator
      off += consumed;
      for (let k = 0, i = 0; k < n; k++, i += abi.EVENT_WORDS) {
        visit(
          ev[i + abi.EV_TYPE],
          ev[i + abi.EV_FLAGS],
          ev[i + abi.EV_STREAM],
          payloads[k],
          ev[i + abi.EV_A],
          ev[i + abi.EV_B],
          ev[i + abi.EV_C],
        );
        payloads[k] = EMPTY;
      }
      if (n === 0 && consumed === 0) break;
      if (off < len && n > 0) base = codec.copyIn(chunk.subarray(off)) - off; // visitors may have reused the region
    }
  }

  dispose(): void {
    if (this.r) {
      wasmFinalizer.unregister(this);
      this.codec.ex.reader_free(this.r);
      this.r = 0;
    }
  }
}
