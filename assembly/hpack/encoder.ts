// HPACK encoder (RFC 7541 §6): indexes what repeats, never indexes what is sensitive,
// Huffman-codes a string only when that is shorter, and signals table size changes.

import { ENC_SENSITIVE, ENC_NO_INDEX, ENC_WORDS, ENC_NAME_LEN, ENC_VALUE_LEN, ENC_FLAGS } from "../abi";
import { Hpack, ENTRY_OVERHEAD, entry, entryName, entryNameHash, entryNameLen, entryValue, entryValueHash,
  entryValueLen, ensureCapacity, insert, setMaxSize } from "./table";
import { STATIC_COUNT, findStaticName, nameHash, staticNameEnd, staticValueLen, staticValueOff } from "./tables";
import { huffEncode, huffEncodedLength } from "./huffman";

// Static indices whose names get special treatment.
const S_PATH_SLASH = 4;
const S_AUTHORIZATION = 23;
const S_CONTENT_LENGTH = 28;
const S_COOKIE = 32;
const S_DATE = 33;
const S_ETAG = 34;
const S_IF_MODIFIED_SINCE = 40;
const S_IF_NONE_MATCH = 41;
const S_LOCATION = 46;
const S_PROXY_AUTHORIZATION = 49;
const S_SET_COOKIE = 55;

/** Writes an integer with an N-bit prefix and the given high bits (§5.1); returns the new end. */
@inline export function writeInt(o: usize, high: i32, prefixBits: i32, v: i32): usize {
  const mask = (1 << prefixBits) - 1;
  if (v < mask) {
    store<u8>(o, <u8>(high | v));
    return o + 1;
  }
  store<u8>(o++, <u8>(high | mask));
  v -= mask;
  while (v >= 0x80) {
    store<u8>(o++, <u8>((v & 0x7f) | 0x80));
    v >>>= 7;
  }
  store<u8>(o++, <u8>v);
  return o;
}

/** Writes a string literal, Huffman-coded when strictly shorter (§5.2). */
function writeString(o: usize, p: usize, n: i32): usize {
  const h = huffEncodedLength(p, n);
  if (h < n) {
    o = writeInt(o, 0x80, 7, h);
    return o + <usize>huffEncode(p, n, o);
  }
  o = writeInt(o, 0, 7, n);
  memory.copy(o, p, <usize>n);
  return o + <usize>n;
}

/** Records a new table size to announce at the start of the next block (§4.2, §6.3). */
export function encoderSetMaxSize(t: Hpack, n: i32): void {
  // Past the allocator's budget keep the table as it is: a smaller size is always allowed.
  if (!ensureCapacity(t, n)) n = min(n, t.capacity);
  if (t.pendingMin < 0 || n < t.pendingMin) t.pendingMin = n;
  t.pendingFinal = n;
}

/** Worst-case encoded size of `count` fields with `bytes` name and value bytes in all. */
export function encodeBound(count: i32, bytes: i32): i32 {
  return bytes + count * 12 + 16;
}

/** Names whose values rarely repeat: indexing them would only churn the table. */
function notWorthIndexing(sidx: i32, name: usize, nameLen: i32): bool {
  if (sidx == S_PATH_SLASH || sidx == S_CONTENT_LENGTH || sidx == S_DATE || sidx == S_ETAG ||
      sidx == S_IF_MODIFIED_SINCE || sidx == S_IF_NONE_MATCH || sidx == S_LOCATION || sidx == S_SET_COOKIE) return true;
  // traceparent: random per connection.
  return nameLen == 11 && load<u64>(name) == 0x7261706563617274 && load<u16>(name, 8) == 0x6e65 &&
    load<u8>(name, 10) == 0x74;
}

/**
 * Encodes `count` fields laid out at `in` (abi.ts ENC_*: u32 name length, u32 value length, u32 flags,
 * name bytes, value bytes) into `out` (at least encodeBound bytes). Returns the block length.
 */
export function hpackEncode(t: Hpack, inp: usize, count: i32, out: usize): i32 {
  let o = out;
  if (t.pendingFinal >= 0) {
    if (t.pendingMin < t.pendingFinal) {
      setMaxSize(t, t.pendingMin);
      o = writeInt(o, 0x20, 5, t.pendingMin);
    }
    setMaxSize(t, t.pendingFinal);
    o = writeInt(o, 0x20, 5, t.pendingFinal);
    t.pendingMin = -1;
    t.pendingFinal = -1;
  }
  let p = inp;
  for (let i = 0; i < count; i++) {
    const nameLen = load<i32>(p, ENC_NAME_LEN * 4);
    const valueLen = load<i32>(p, ENC_VALUE_LEN * 4);
    const flags = load<i32>(p, ENC_FLAGS * 4);
    const name = p + ENC_WORDS * 4;
    const value = name + <usize>nameLen;
    p = value + <usize>valueLen;

    const nh = nameHash(name, nameLen);
    const sidx = findStaticName(name, nameLen, nh);
    let nameIdx = sidx;
    let full = 0;
    if (sidx != 0) {
      const last = <i32>load<u8>(staticNameEnd + sidx);
      for (let k = sidx; k <= last; k++) {
        if (staticValueLen(k) == valueLen && memory.compare(staticValueOff(k), value, <usize>valueLen) == 0) {
          full = k;
          break;
        }
      }
    }
    const sensitive = (flags & ENC_SENSITIVE) != 0 || sidx == S_AUTHORIZATION || sidx == S_PROXY_AUTHORIZATION ||
      (sidx == S_COOKIE && valueLen < 20);
    let vh: u32 = 0;
    if (full == 0 && t.count > 0) {
      vh = nameHash(value, valueLen);
      for (let k = 1; k <= t.count; k++) {
        const e = entry(t, k);
        if (entryNameHash(e) != nh || entryNameLen(e) != nameLen ||
            memory.compare(entryName(t, e), name, <usize>nameLen) != 0) continue;
        if (nameIdx == 0) nameIdx = STATIC_COUNT + k;
        if (entryValueHash(e) == vh && entryValueLen(e) == valueLen &&
            memory.compare(entryValue(t, e), value, <usize>valueLen) == 0) {
          full = STATIC_COUNT + k;
          break;
        }
      }
    }
    if (full != 0 && !sensitive) {
      o = writeInt(o, 0x80, 7, full); // indexed (§6.1)
      continue;
    }
    let indexing = false;
    if (sensitive) {
      o = writeInt(o, 0x10, 4, nameIdx); // never indexed (§6.2.3)
    } else if ((flags & ENC_NO_INDEX) != 0 || nameLen + valueLen + ENTRY_OVERHEAD > t.maxSize ||
               notWorthIndexing(sidx, name, nameLen)) {
      o = writeInt(o, 0x00, 4, nameIdx); // without indexing (§6.2.2)
    } else {
      o = writeInt(o, 0x40, 6, nameIdx); // incremental indexing (§6.2.1)
      indexing = true;
    }
    if (nameIdx == 0) o = writeString(o, name, nameLen);
    o = writeString(o, value, valueLen);
    if (indexing) {
      if (vh == 0) vh = nameHash(value, valueLen);
      insert(t, name, nameLen, value, valueLen, nh, vh);
    }
  }
  return <i32>(o - out);
}
