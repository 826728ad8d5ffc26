// Baggage facade over the Wasm codec (assembly/baggage/): ztunnel's baggage (source and destination
// labels on HBONE CONNECT and its 200) and the W3C `baggage` header. Facts: ztunnel-compat.md §6.
//
// Header values go in as UTF-8: their ASCII chars are the same bytes either way, and every other
// char (latin1 0x80-0xff or beyond) becomes bytes >= 0x80, which both modes reject. latin1 would map
// a char above 0xff onto an unrelated byte (U+0141 onto 'A').

import * as bg from "../assembly/baggage/abi.js";
import { type Codec, getCodec } from "./wasm/codec.js";

export type WorkloadType = "deployment" | "cronjob" | "pod" | "job";
/** By type code - 1 (assembly/baggage/abi.ts BAGGAGE_TYPE_*). */
const WORKLOAD_TYPES: readonly WorkloadType[] = ["deployment", "cronjob", "pod", "job"];

/** ztunnel's `Baggage` struct, plus the workload type the `k8s.<type>.name` key carries. */
export interface BaggageMeta {
  clusterId?: string;
  namespace?: string;
  workloadName?: string;
  workloadType?: WorkloadType;
  /** Canonical service name (`service.name`). */
  service?: string;
  /** Canonical revision (`service.version`). */
  revision?: string;
  region?: string;
  zone?: string;
}

/** The string fields by slot, in ztunnel's emission order (BAGGAGE_SLOT_*). */
const FIELDS = ["clusterId", "namespace", "workloadName", "service", "revision", "region", "zone"] as const;

const fieldLengths = new Int32Array(bg.BAGGAGE_SLOTS); // encodeBaggage's scratch

/** One W3C list-member. */
export interface BaggageMember {
  key: string;
  /** Percent-decoded as UTF-8 (invalid sequences become U+FFFD; a '%' not followed by two hex digits stays). */
  value: string;
  /** The raw text after the member's first ';' (OWS-trimmed, not decoded); absent without properties. */
  properties?: string;
}

/** A W3C-mode decode: the members, and the ztunnel fields taken from them (same rules: last one wins, empty is none). */
export interface W3cBaggage extends BaggageMeta {
  valid: boolean;
  /** Why the header was rejected (only when !valid). */
  reason?: "invalid" | "too large";
  /** Kept members in order; empty when !valid. */
  members: BaggageMember[];
  /** Members were dropped (whole, from the first that did not fit) to stay within 64 members and 8192 bytes. */
  truncated: boolean;
}

let defaultCodec: Codec | undefined;
/** getCodec(), looked up once: it reads process.env, which would cost more than a whole decode. */
function threadCodec(): Codec {
  return (defaultCodec ??= getCodec());
}

/**
 * ztunnel's header for `meta`: `k8s.cluster.name`, `k8s.namespace.name`, `k8s.<type>.name` (type from
 * `workloadType`, `deployment` when unset), `service.name`, `service.version`, `cloud.region`,
 * `cloud.availability_zone`, joined by ',' with no spaces; unset and empty fields are skipped, nothing is
 * percent-encoded. Throws RangeError for a field ztunnel could not read back unchanged (a char that is
 * not printable ASCII, space or tab, or a ',' or '='), or an unknown workload type.
 */
export function encodeBaggage(meta: BaggageMeta, codec: Codec = threadCodec()): string {
  const type = WORKLOAD_TYPES.indexOf(meta.workloadType ?? "deployment") + 1;
  if (type === 0) throw new RangeError(`baggage: unknown workload type ${String(meta.workloadType)}`);
  // The fields go in with one write: their lengths in chars, then their text.
  let text = "";
  for (let s = 0; s < bg.BAGGAGE_SLOTS; s++) {
    const v = meta[FIELDS[s]] ?? "";
    fieldLengths[s] = v.length;
    text += v;
  }
  const ex = codec.ex;
  const inp = ex.input_reserve(bg.BAGGAGE_ENC_TEXT + 3 * text.length) >>> 0; // UTF-8: at most 3 bytes per char
  codec.refresh();
  codec.i32.set(fieldLengths, inp >>> 2);
  if (codec.mem.write(text, inp + bg.BAGGAGE_ENC_TEXT, "utf8") !== text.length) {
    // Lengths in chars fit the bytes only for ASCII; the encoder refuses any other char anyway (its bytes
    // are >= 0x80), so name the field here, where the lengths no longer line up with the bytes.
    throw unsendable(
      meta,
      FIELDS.findIndex((f) => /[^\x00-\x7f]/.test(meta[f] ?? "")),
    );
  }
  const out = ex.output_reserve(ex.baggage_encode_bound(text.length)) >>> 0;
  const n = ex.baggage_encode(inp, type, out);
  codec.refresh();
  if (n < 0) throw unsendable(meta, -n - 1);
  return codec.mem.latin1Slice(out, out + n);
}

function unsendable(meta: BaggageMeta, slot: number): RangeError {
  return new RangeError(`baggage: ${FIELDS[slot]} ${JSON.stringify(meta[FIELDS[slot]])} cannot be sent`);
}

/**
 * Decodes `baggage` header lines (one string per field line; several lines merge as one list in order).
 * Pass the lines as received, not joined with ", " (ztunnel mode does not trim). Inputs over 64 KiB
 * (all lines, plus one byte per line) are refused unread in both modes.
 *
 * - `ztunnel` (default), as ztunnel's parse_baggage_header: each line split on ',', then '='; the value
 *   is the second piece (`a=b=c` gives `b`), untrimmed and undecoded (`;props` stay in it); an empty
 *   value is none; unknown keys are ignored; the last one wins; `k8s.{deployment,cronjob,pod,job}.name`
 *   set the workload name and type. A char that is not printable ASCII, space or tab fails the whole
 *   parse, as do more than 1024 pieces or the size limit: the result then has every field unset.
 * - `w3c`, the W3C Baggage HTTP header format: OWS around members, keys, values and properties is
 *   trimmed; key = token, value = baggage-octets, percent-decoded (see BaggageMember); any member breaking
 *   the grammar (including an empty one: a stray ',' or an empty line) rejects the whole header. At most
 *   64 members and 8192 bytes (members plus one comma between) are kept, dropping whole members from
 *   the first that does not fit. The BaggageMeta fields come from the kept members.
 */
export function decodeBaggage(
  headerValues: string | readonly string[] | undefined,
  mode?: "ztunnel",
  codec?: Codec,
): BaggageMeta;
export function decodeBaggage(
  headerValues: string | readonly string[] | undefined,
  mode: "w3c",
  codec?: Codec,
): W3cBaggage;
export function decodeBaggage(
  headerValues: string | readonly string[] | undefined,
  mode: "ztunnel" | "w3c",
  codec?: Codec,
): BaggageMeta | W3cBaggage;
export function decodeBaggage(
  headerValues: string | readonly string[] | undefined,
  mode: "ztunnel" | "w3c" = "ztunnel",
  codec: Codec = threadCodec(),
): BaggageMeta | W3cBaggage {
  const lines = headerValues === undefined ? [] : typeof headerValues === "string" ? [headerValues] : headerValues;
  const w3c = mode === "w3c";
  const rc = decode(codec, lines, w3c ? bg.BAGGAGE_MODE_W3C : bg.BAGGAGE_MODE_ZTUNNEL);
  if (!w3c) return rc < 0 ? {} : ztunnelMeta(codec, lines);
  if (rc < 0) {
    return {
      valid: false,
      reason: rc === -bg.BAGGAGE_E_TOO_LARGE ? "too large" : "invalid",
      members: [],
      truncated: false,
    };
  }
  const members = membersOf(codec, lines, rc);
  const res: W3cBaggage = {
    valid: true,
    members,
    truncated: codec.i32[resultOf(codec) + bg.BAGGAGE_RES_TRUNCATED] !== 0,
  };
  fillMeta(codec, res, (rec) => members[rec].value);
  return res;
}

/** The result area's i32 index, a fixed address per codec. */
const resultIndex = new WeakMap<Codec, number>();
function resultOf(codec: Codec): number {
  let r = resultIndex.get(codec);
  if (r === undefined) resultIndex.set(codec, (r = codec.ex.baggage_result_ptr() >>> 2));
  return r;
}

/** Where each line of the last decode starts in Wasm memory. */
const lineStarts: number[] = [];

/** Copies the lines in and runs baggage_decode; -BAGGAGE_E_TOO_LARGE without copying over the input limit. */
function decode(codec: Codec, lines: readonly string[], mode: number): number {
  const count = lines.length;
  let chars = count;
  for (let k = 0; k < count; k++) chars += lines[k].length;
  if (chars > bg.BAGGAGE_MAX_INPUT) return -bg.BAGGAGE_E_TOO_LARGE;
  const p = codec.ex.input_reserve(4 * count + 3 * (chars - count)) >>> 0; // UTF-8: at most 3 bytes per UTF-16 unit
  codec.refresh();
  const mem = codec.mem,
    i32 = codec.i32;
  let at = p + 4 * count;
  lineStarts.length = count;
  for (let k = 0; k < count; k++) {
    const n = mem.write(lines[k], at, "utf8");
    i32[(p >>> 2) + k] = n;
    lineStarts[k] = at;
    at += n;
  }
  return codec.ex.baggage_decode(mode, p, count);
}

/**
 * The header text at Wasm address off, cut from the caller's own string: cheaper than reading the
 * bytes back, and exact because a decode only succeeds on ASCII (byte offsets are char offsets).
 */
function textAt(lines: readonly string[], off: number, len: number): string {
  let lo = 0,
    hi = lines.length - 1; // the last line starting at or before off
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid] <= off) lo = mid;
    else hi = mid - 1;
  }
  const from = off - lineStarts[lo];
  return lines[lo].substring(from, from + len);
}

/** Sets the BaggageMeta fields of a decode result; `valueOf` gives the value of a record. */
function fillMeta(codec: Codec, meta: BaggageMeta, valueOf: (rec: number) => string): void {
  const i32 = codec.i32,
    res = resultOf(codec);
  for (let s = 0; s < bg.BAGGAGE_SLOTS; s++) {
    const rec = i32[res + bg.BAGGAGE_RES_SLOT_RECORD + s];
    if (rec >= 0) meta[FIELDS[s]] = valueOf(rec);
  }
  const type = i32[res + bg.BAGGAGE_RES_TYPE];
  if (type !== bg.BAGGAGE_TYPE_NONE) meta.workloadType = WORKLOAD_TYPES[type - 1];
}

function ztunnelMeta(codec: Codec, lines: readonly string[]): BaggageMeta {
  const i32 = codec.i32,
    records = resultOf(codec) + bg.BAGGAGE_RES_RECORDS;
  const meta: BaggageMeta = {};
  fillMeta(codec, meta, (rec) => {
    const r = records + rec * bg.BAGGAGE_REC_WORDS;
    return textAt(lines, i32[r + bg.BAGGAGE_REC_VALUE_OFF] >>> 0, i32[r + bg.BAGGAGE_REC_VALUE_LEN]);
  });
  return meta;
}

function membersOf(codec: Codec, lines: readonly string[], count: number): BaggageMember[] {
  const i32 = codec.i32,
    mem = codec.mem;
  const members: BaggageMember[] = new Array(count);
  for (let k = 0, r = resultOf(codec) + bg.BAGGAGE_RES_RECORDS; k < count; k++, r += bg.BAGGAGE_REC_WORDS) {
    const value = i32[r + bg.BAGGAGE_REC_VALUE_OFF] >>> 0,
      valueLen = i32[r + bg.BAGGAGE_REC_VALUE_LEN];
    const m: BaggageMember = {
      key: textAt(lines, i32[r + bg.BAGGAGE_REC_KEY_OFF] >>> 0, i32[r + bg.BAGGAGE_REC_KEY_LEN]),
      // A percent-decoded value lives in Wasm memory, as UTF-8.
      value:
        i32[r + bg.BAGGAGE_REC_FLAGS] & bg.BAGGAGE_REC_DECODED
          ? mem.toString("utf8", value, value + valueLen)
          : textAt(lines, value, valueLen),
    };
    const propsLen = i32[r + bg.BAGGAGE_REC_PROPS_LEN];
    if (propsLen >= 0) m.properties = textAt(lines, i32[r + bg.BAGGAGE_REC_PROPS_OFF] >>> 0, propsLen);
    members[k] = m;
  }
  return members;
}
