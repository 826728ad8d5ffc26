// HPACK decoder (RFC 7541 §6): one header block in, header records out.
// Peer bytes only ever produce return codes: a negative result is -COMPRESSION_ERROR
// (reason in lastReason) or -HPACK_LIST_TOO_LARGE (decoded fully, table in sync).
// Once the header list passes its limit nothing more is copied out (an indexed reference of
// one byte would otherwise copy a whole 4 KiB entry), and past LIST_WORK_FACTOR times the
// limit the block is refused as a connection error (ENHANCE_YOUR_CALM): decoding work stays
// bounded by the block's size plus that multiple of the limit.

import {
  COMPRESSION_ERROR, ENHANCE_YOUR_CALM, INTERNAL_ERROR, R_OUT_OF_MEMORY, R_HPACK_AMPLIFICATION, HPACK_LIST_TOO_LARGE, HDR_WORDS, HDR_NEVER_INDEXED, HDR_STATIC_VALUE,
  HDR_NAME_OFF, HDR_NAME_LEN, HDR_VALUE_OFF, HDR_VALUE_LEN, HDR_FLAGS, R_HPACK_TRUNCATED, R_HPACK_BAD_HUFFMAN,
  R_HPACK_BAD_INDEX, R_HPACK_INTEGER_OVERFLOW, R_HPACK_BAD_SIZE_UPDATE, R_HPACK_MISSING_SIZE_UPDATE, R_HPACK_LIST_TOO_LARGE,
} from "../abi";
import { headerRecords, headerBytes, reserve, reserveKeep } from "../memory";
import { Hpack, ENTRY_OVERHEAD, entry, entryName, entryNameLen, entryValue, entryValueLen, insert, setMaxSize } from "./table";
import { STATIC_COUNT, staticNameLen, staticNameOff, staticValueLen, staticValueOff, nameHash } from "./tables";
import { huffDecode } from "./huffman";

export let lastReason: i32 = 0;
/** How far past its limit a header list may expand before the block fails the connection. */
const LIST_WORK_FACTOR: i32 = 4;
let outOfMemory: bool = false;
let pos: usize = 0; // read position shared by the helpers below
let outBytes: i32 = 0; // bytes used in headerBytes

@inline function fail(reason: i32): i32 {
  lastReason = reason;
  return -COMPRESSION_ERROR;
}

@inline function fail2(code: i32, reason: i32): i32 {
  lastReason = reason;
  return -code;
}

/** The allocator's budget is spent: the table may be out of sync, so the connection must close. */
function oom(): i32 {
  lastReason = R_OUT_OF_MEMORY;
  return -INTERNAL_ERROR;
}

/** Reads an integer with an N-bit prefix at pos (§5.1); -1 on error (lastReason set). */
function readInt(end: usize, prefixBits: i32): i32 {
  const mask = (1 << prefixBits) - 1;
  const first = <i32>load<u8>(pos) & mask;
  pos++;
  if (first < mask) return first;
  let v: i64 = first;
  let shift: i64 = 0;
  while (true) {
    if (pos >= end) {
      lastReason = R_HPACK_TRUNCATED;
      return -1;
    }
    const b = <i64>load<u8>(pos++);
    v += (b & 0x7f) << shift;
    if (v > 0x7fffffff) {
      lastReason = R_HPACK_INTEGER_OVERFLOW;
      return -1;
    }
    if ((b & 0x80) == 0) return <i32>v;
    shift += 7;
    if (shift > 28) {
      lastReason = R_HPACK_INTEGER_OVERFLOW;
      return -1;
    }
  }
}

/** Reads a string literal at pos into headerBytes at outBytes (§5.2); returns its length or -1. */
function readString(end: usize): i32 {
  if (pos >= end) {
    lastReason = R_HPACK_TRUNCATED;
    return -1;
  }
  const huffman = (load<u8>(pos) & 0x80) != 0;
  const n = readInt(end, 7);
  if (n < 0) return -1;
  if (<usize>n > end - pos) {
    lastReason = R_HPACK_TRUNCATED;
    return -1;
  }
  const room = huffman ? (n * 8) / 5 + 1 : n;
  const base = reserveKeep(headerBytes, outBytes + room, outBytes);
  if (base == 0) {
    outOfMemory = true;
    lastReason = R_OUT_OF_MEMORY;
    return -1;
  }
  let len = n;
  if (huffman) {
    len = huffDecode(pos, n, base + outBytes);
    if (len < 0) {
      lastReason = R_HPACK_BAD_HUFFMAN;
      return -1;
    }
  } else {
    memory.copy(base + outBytes, pos, <usize>n);
  }
  pos += n;
  return len;
}

/** Copies n bytes to headerBytes; returns their offset, or -1 past the allocator's budget. */
function copyOut(src: usize, n: i32): i32 {
  const base = reserveKeep(headerBytes, outBytes + n, outBytes);
  if (base == 0) {
    outOfMemory = true;
    lastReason = R_OUT_OF_MEMORY;
    return -1;
  }
  memory.copy(base + outBytes, src, <usize>n);
  const at = outBytes;
  outBytes += n;
  return at;
}

/** Sets what the next blocks may use: our advertised SETTINGS_HEADER_TABLE_SIZE (§4.2). */
export function decoderSetAllowed(t: Hpack, n: i32): void {
  if (n < t.maxSize) t.needUpdate = 1; // the encoder must acknowledge a reduction first
  t.allowed = n;
}

/**
 * Decodes the block [p, p+len). Returns the number of header records written to
 * headerRecords (HDR_WORDS i32 each; offsets are into headerBytes) or a negative code.
 */
export function hpackDecode(t: Hpack, p: usize, len: i32): i32 {
  const end = p + <usize>len;
  pos = p;
  outBytes = 0;
  lastReason = 0;
  let count = 0;
  let listSize: i64 = 0;
  let over = false;
  let sawField = false;
  outOfMemory = false;
  const workLimit: i64 = <i64>t.maxList * LIST_WORK_FACTOR;
  if (reserve(headerRecords, 64 * HDR_WORDS * 4) == 0) return oom();
  while (pos < end) {
    const b = <i32>load<u8>(pos);
    if ((b & 0xe0) == 0x20) {
      // Dynamic table size update (§6.3): only before the first field, never above the allowed size.
      if (sawField) return fail(R_HPACK_BAD_SIZE_UPDATE);
      const n = readInt(end, 5);
      if (n < 0) return -COMPRESSION_ERROR;
      if (n > t.allowed) return fail(R_HPACK_BAD_SIZE_UPDATE);
      setMaxSize(t, n);
      t.needUpdate = 0;
      continue;
    }
    if (t.needUpdate) return fail(R_HPACK_MISSING_SIZE_UPDATE);
    sawField = true;
    let nameOff = -1, nameLen = 0, valueOff = -1, valueLen = 0, flags = 0;
    const mark = outBytes;
    if (b & 0x80) {
      // Indexed field (§6.1).
      const idx = readInt(end, 7);
      if (idx < 0) return -COMPRESSION_ERROR;
      if (idx == 0) return fail(R_HPACK_BAD_INDEX);
      if (idx <= STATIC_COUNT) {
        nameLen = staticNameLen(idx);
        valueLen = staticValueLen(idx);
        flags = idx | HDR_STATIC_VALUE;
      } else {
        const k = idx - STATIC_COUNT;
        if (k > t.count) return fail(R_HPACK_BAD_INDEX);
        const e = entry(t, k);
        nameLen = entryNameLen(e);
        valueLen = entryValueLen(e);
        if (!over) {
          nameOff = copyOut(entryName(t, e), nameLen);
          valueOff = copyOut(entryValue(t, e), valueLen);
          if (outOfMemory) return oom();
        }
      }
    } else {
      // Literal field (§6.2): with incremental indexing (01), never indexed (0001), without (0000).
      const indexing = (b & 0x40) != 0;
      if (!indexing && (b & 0x10) != 0) flags = HDR_NEVER_INDEXED;
      const idx = readInt(end, indexing ? 6 : 4);
      if (idx < 0) return -COMPRESSION_ERROR;
      if (idx == 0) {
        nameLen = readString(end);
        if (nameLen < 0) return outOfMemory ? oom() : -COMPRESSION_ERROR;
        nameOff = outBytes;
        outBytes += nameLen;
      } else if (idx <= STATIC_COUNT) {
        nameLen = staticNameLen(idx);
        flags |= idx;
      } else {
        const k = idx - STATIC_COUNT;
        if (k > t.count) return fail(R_HPACK_BAD_INDEX);
        const e = entry(t, k);
        nameLen = entryNameLen(e);
        // The name is needed only to be shown, or to be inserted (insert never reads its own buffer).
        if (!over || indexing) {
          nameOff = copyOut(entryName(t, e), nameLen);
          if (outOfMemory) return oom();
        }
      }
      valueLen = readString(end);
      if (valueLen < 0) return outOfMemory ? oom() : -COMPRESSION_ERROR;
      valueOff = outBytes;
      outBytes += valueLen;
      if (indexing) {
        const bytes = headerBytes.ptr;
        const np = nameOff >= 0 ? bytes + <usize>nameOff : staticNameOff(idx);
        const vp = bytes + <usize>valueOff;
        insert(t, np, nameLen, vp, valueLen, nameHash(np, nameLen), nameHash(vp, valueLen));
      }
    }
    listSize += <i64>(nameLen + valueLen + ENTRY_OVERHEAD);
    if (listSize > workLimit) return fail2(ENHANCE_YOUR_CALM, R_HPACK_AMPLIFICATION);
    if (over || listSize > <i64>t.maxList) {
      // Keep decoding so the table stays in sync, but stop producing output.
      over = true;
      outBytes = mark;
      continue;
    }
    const recs = reserveKeep(headerRecords, (count + 1) * HDR_WORDS * 4, count * HDR_WORDS * 4);
    if (recs == 0) return oom();
    const rec = recs + <usize>(count * HDR_WORDS * 4);
    store<i32>(rec, nameOff, HDR_NAME_OFF * 4);
    store<i32>(rec, nameLen, HDR_NAME_LEN * 4);
    store<i32>(rec, valueOff, HDR_VALUE_OFF * 4);
    store<i32>(rec, valueLen, HDR_VALUE_LEN * 4);
    store<i32>(rec, flags, HDR_FLAGS * 4);
    count++;
  }
  if (over) {
    lastReason = R_HPACK_LIST_TOO_LARGE;
    return -HPACK_LIST_TOO_LARGE;
  }
  return count;
}

export { staticValueOff };
