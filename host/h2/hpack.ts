// HPACK facades over the Wasm coder (assembly/hpack/). Header names and values are byte
// strings: they cross as latin1, so every octet maps to one char and back.

import * as abi from "../../assembly/abi.js";
import { H2Error } from "../errors.js";
import { type Codec, getCodec, outOfMemory, wasmFinalizer } from "../wasm/codec.js";

export type HeaderList = [string, string][];

/** RFC 7541 Appendix A, interned so decoded static names and values cost no string copy. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** Headers decoded with their never-indexed marks (RFC 7541 §6.2.3), for proxies that forward them. */
export interface DecodedHeaders {
  headers: HeaderList;
  neverIndexed: boolean[];
}

/** An HPACK context in Wasm memory (dynamic table and direction state), freed by dispose() or GC. */
abstract class HpackContext {
  protected readonly codec: Codec;
  protected t: number;

  /** Throws H2Error(INTERNAL_ERROR, R_OUT_OF_MEMORY) when the codec's budget is spent. */
  constructor(maxTableSize: number, codec: Codec) {
    this.codec = codec;
    const ex = codec.ex;
    const t = (this.t = ex.hpack_new(maxTableSize) >>> 0);
    if (t === 0) throw outOfMemory();
    wasmFinalizer.register(this, () => ex.hpack_free(t), this);
  }

  /** Current dynamic table size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.codec.ex.hpack_table_size(this.t);
  }

  dispose(): void {
    if (this.t) {
      wasmFinalizer.unregister(this);
      this.codec.ex.hpack_free(this.t);
      this.t = 0;
    }
  }
}

export class HpackDecoder extends HpackContext {
  constructor(maxTableSize = abi.DEFAULT_HEADER_TABLE_SIZE, codec: Codec = getCodec()) {
    super(maxTableSize, codec);
  }

  /** The SETTINGS_HEADER_TABLE_SIZE we advertise: size updates above it are errors. */
  setMaxTableSize(n: number): void {
    if (this.codec.ex.hpack_set_allowed(this.t, n) < 0) throw outOfMemory();
  }

  /** SETTINGS_MAX_HEADER_LIST_SIZE we enforce (RFC 9113 §6.5.2), 64 KiB by default. */
  setMaxHeaderListSize(n: number): void {
    this.codec.ex.hpack_set_max_list(this.t, n);
  }

  /** Decodes one complete header block. Throws H2Error (COMPRESSION_ERROR, or PROTOCOL_ERROR for an oversized list). */
  decode(block: Uint8Array): HeaderList {
    return this.decodeFull(block, false).headers;
  }

  decodeFull(block: Uint8Array, withFlags = true): DecodedHeaders {
    const c = this.codec,
      ex = c.ex;
    const p = c.copyIn(block);
    const n = ex.hpack_decode(this.t, p, block.length);
    if (n < 0) {
      if (-n === abi.HPACK_LIST_TOO_LARGE) {
        throw H2Error.violation(abi.PROTOCOL_ERROR, abi.R_HPACK_LIST_TOO_LARGE);
      }
      throw H2Error.violation(-n, ex.hpack_error_reason());
    }
    c.refresh();
    const rec = ex.hpack_records_ptr() >>> 2;
    const bytes = ex.hpack_bytes_ptr() >>> 0;
    const i32 = c.i32,
      mem = c.mem;
    const headers: HeaderList = new Array(n);
    const neverIndexed: boolean[] = withFlags ? new Array(n) : [];
    for (let k = 0, r = rec; k < n; k++, r += abi.HDR_WORDS) {
      const flags = i32[r + abi.HDR_FLAGS];
      const s = flags & abi.HDR_STATIC_INDEX_MASK;
      let at = bytes + (i32[r + abi.HDR_NAME_OFF] >>> 0);
      const name = s !== 0 ? STATIC_TABLE[s][0] : mem.latin1Slice(at, at + i32[r + abi.HDR_NAME_LEN]);
      at = bytes + (i32[r + abi.HDR_VALUE_OFF] >>> 0);
      const value =
        flags & abi.HDR_STATIC_VALUE ? STATIC_TABLE[s][1] : mem.latin1Slice(at, at + i32[r + abi.HDR_VALUE_LEN]);
      headers[k] = [name, value];
      if (withFlags) neverIndexed[k] = (flags & abi.HDR_NEVER_INDEXED) !== 0;
    }
    return { headers, neverIndexed };
  }
}

export interface EncodeOptions {
  /** Names (lower case) whose fields are sent never-indexed, beyond authorization, proxy-authorization, short cookies. */
  sensitive?: ReadonlySet<string>;
}

export class HpackEncoder extends HpackContext {
  private readonly sensitive: ReadonlySet<string> | undefined;

  constructor(maxTableSize = abi.DEFAULT_HEADER_TABLE_SIZE, codec: Codec = getCodec(), opts: EncodeOptions = {}) {
    super(maxTableSize, codec);
    this.sensitive = opts.sensitive;
  }

  /** Uses a new table size (at most the peer's SETTINGS_HEADER_TABLE_SIZE); announced in the next block. */
  setMaxTableSize(n: number): void {
    this.codec.ex.hpack_encoder_set_max(this.t, n);
  }

  /** Lays the fields out in the input region; returns [address, bound of the encoded size]. */
  private stage(headers: HeaderList, never?: readonly boolean[]): [number, number] {
    const c = this.codec;
    let bytes = 0;
    for (let i = 0; i < headers.length; i++) bytes += headers[i][0].length + headers[i][1].length;
    const fieldHeader = abi.ENC_WORDS * 4;
    const inp = c.ex.input_reserve(bytes + fieldHeader * headers.length) >>> 0;
    c.refresh();
    const mem = c.mem;
    let o = inp;
    for (let i = 0; i < headers.length; i++) {
      const [name, value] = headers[i];
      let flags = 0;
      if ((never && never[i]) || (this.sensitive && this.sensitive.has(name))) flags |= abi.ENC_SENSITIVE;
      mem.writeUInt32LE(name.length, o + abi.ENC_NAME_LEN * 4);
      mem.writeUInt32LE(value.length, o + abi.ENC_VALUE_LEN * 4);
      mem.writeUInt32LE(flags, o + abi.ENC_FLAGS * 4);
      mem.latin1Write(name, o + fieldHeader, name.length);
      mem.latin1Write(value, o + fieldHeader + name.length, value.length);
      o += fieldHeader + name.length + value.length;
    }
    return [inp, c.ex.hpack_encode_bound(headers.length, bytes)];
  }

  /** Encodes one header block. `neverIndexed[i]` forces field i to be sent never-indexed. */
  encode(headers: HeaderList, neverIndexed?: readonly boolean[]): Uint8Array {
    const c = this.codec;
    const [inp, bound] = this.stage(headers, neverIndexed);
    const out = c.ex.output_reserve(bound) >>> 0;
    const n = c.ex.hpack_encode(this.t, inp, headers.length, out);
    c.refresh();
    return c.copyOut(out, n);
  }

  /** A HEADERS frame (plus CONTINUATION frames past maxFrameSize) carrying these fields. */
  encodeHeadersFrame(
    streamId: number,
    headers: HeaderList,
    endStream: boolean,
    maxFrameSize: number,
    neverIndexed?: readonly boolean[],
  ): Buffer {
    const c = this.codec;
    const [inp, bound] = this.stage(headers, neverIndexed);
    const size = bound + abi.FRAME_HEADER_SIZE * (Math.ceil(bound / maxFrameSize) + 1);
    const out = c.ex.output_reserve(size) >>> 0;
    const n = c.ex.write_headers(this.t, inp, headers.length, out, streamId, endStream ? 1 : 0, maxFrameSize);
    c.refresh();
    return c.copyOut(out, n);
  }
}
