// HPACK context: the dynamic table (RFC 7541 §2.3.2, §4) plus the per-direction state of a
// decoder or an encoder. Entry bytes live contiguously, oldest first, in a buffer twice the
// table's capacity, compacted to its start when the newest entry would not fit at the end.

import { alloc, free } from "../memory";
import { nameHash } from "./tables";

export const ENTRY_OVERHEAD: i32 = 32;
const ENT_BYTES: i32 = 20; // off, nameLen, valueLen, nameHash, valueHash

@unmanaged export class Hpack {
  size: i32; // current size per §4.1
  maxSize: i32; // current maximum (changed by size updates)
  capacity: i32; // largest maxSize the buffers can hold
  count: i32;
  head: i32; // ring slot of the newest entry
  ents: usize;
  entCap: i32;
  buf: usize;
  bufCap: i32;
  start: i32; // offset of the oldest entry's bytes
  end: i32; // offset past the newest entry's bytes
  // Decoder: the SETTINGS_HEADER_TABLE_SIZE we advertised, the header list limit, and
  // whether a size update must open the next block.
  allowed: i32;
  maxList: i32;
  needUpdate: i32;
  // Encoder: table size changes not yet signalled (-1 = none).
  pendingMin: i32;
  pendingFinal: i32;
}

/** A new context, or null (0) when the allocator's budget is spent. */
export function hpackNew(maxSize: i32): Hpack | null {
  const p = alloc(offsetof<Hpack>());
  if (p == 0) return null;
  const t = changetype<Hpack>(p);
  memory.fill(p, 0, offsetof<Hpack>());
  t.maxSize = maxSize;
  t.allowed = maxSize;
  t.maxList = 65536;
  t.pendingMin = -1;
  t.pendingFinal = -1;
  if (!ensureCapacity(t, maxSize)) {
    free(p, offsetof<Hpack>());
    return null;
  }
  return t;
}

export function hpackFree(t: Hpack): void {
  free(t.ents, t.entCap * ENT_BYTES);
  free(t.buf, t.bufCap);
  free(changetype<usize>(t), offsetof<Hpack>());
}

/** Makes the buffers able to hold a table of `n` octets (keeps the entries); false (table kept) past the budget. */
export function ensureCapacity(t: Hpack, n: i32): bool {
  if (n <= t.capacity && t.ents != 0) return true;
  if (n < 0 || n > 1 << 24) return false;
  const entCap = n / ENTRY_OVERHEAD + 1;
  // Twice the table: entry bytes stay contiguous and are compacted when the end is reached
  // (an exact power of two for the default 4096, so the block is not rounded up to 16 KiB).
  const bufCap = n * 2;
  const ents = alloc(entCap * ENT_BYTES);
  const buf = alloc(bufCap);
  if (ents == 0 || buf == 0) {
    free(ents, entCap * ENT_BYTES);
    free(buf, bufCap);
    return false;
  }
  // Copy the live entries into the new ring (slots 0..count-1, oldest first) and bytes.
  let off = 0;
  for (let k = t.count; k >= 1; k--) {
    const src = entry(t, k);
    const dst = ents + <usize>((t.count - k) * ENT_BYTES);
    const len = load<i32>(src, 4) + load<i32>(src, 8);
    memory.copy(buf + off, t.buf + load<i32>(src), <usize>len);
    store<i32>(dst, off);
    memory.copy(dst + 4, src + 4, <usize>(ENT_BYTES - 4));
    off += len;
  }
  free(t.ents, t.entCap * ENT_BYTES);
  free(t.buf, t.bufCap);
  t.ents = ents;
  t.entCap = entCap;
  t.buf = buf;
  t.bufCap = bufCap;
  t.head = t.count > 0 ? t.count - 1 : entCap - 1;
  t.start = 0;
  t.end = off;
  t.capacity = n;
  return true;
}

/** Address of the descriptor of dynamic entry k (1 = newest). Caller checks 1 <= k <= count. */
@inline export function entry(t: Hpack, k: i32): usize {
  let slot = t.head - (k - 1);
  if (slot < 0) slot += t.entCap;
  return t.ents + <usize>(slot * ENT_BYTES);
}
@inline export function entryName(t: Hpack, e: usize): usize {
  return t.buf + <usize>load<i32>(e);
}
@inline export function entryNameLen(e: usize): i32 {
  return load<i32>(e, 4);
}
@inline export function entryValue(t: Hpack, e: usize): usize {
  return t.buf + <usize>(load<i32>(e) + load<i32>(e, 4));
}
@inline export function entryValueLen(e: usize): i32 {
  return load<i32>(e, 8);
}
@inline export function entryNameHash(e: usize): u32 {
  return load<u32>(e, 12);
}
@inline export function entryValueHash(e: usize): u32 {
  return load<u32>(e, 16);
}

function evictOldest(t: Hpack): void {
  const e = entry(t, t.count);
  const len = load<i32>(e, 4) + load<i32>(e, 8);
  t.size -= len + ENTRY_OVERHEAD;
  t.count--;
  t.start = load<i32>(e) + len;
  if (t.count == 0) {
    t.start = 0;
    t.end = 0;
  }
}

/** Applies a new maximum size (§4.3), evicting as needed. Caller checks n <= capacity. */
export function setMaxSize(t: Hpack, n: i32): void {
  t.maxSize = n;
  while (t.size > n) evictOldest(t);
}

/** Adds an entry (§4.4). The bytes must not live in this table's buffer. */
export function insert(t: Hpack, name: usize, nameLen: i32, value: usize, valueLen: i32, nh: u32, vh: u32): void {
  const need = nameLen + valueLen + ENTRY_OVERHEAD;
  if (need > t.maxSize) {
    while (t.count > 0) evictOldest(t);
    return;
  }
  while (t.size + need > t.maxSize) evictOldest(t);
  const len = nameLen + valueLen;
  if (t.end + len > t.bufCap) {
    // Compact: live bytes are at most capacity, the buffer is twice that.
    const live = t.end - t.start;
    memory.copy(t.buf, t.buf + t.start, <usize>live);
    for (let k = 1; k <= t.count; k++) {
      const e = entry(t, k);
      store<i32>(e, load<i32>(e) - t.start);
    }
    t.start = 0;
    t.end = live;
  }
  t.head = t.head + 1 == t.entCap ? 0 : t.head + 1;
  const e = t.ents + <usize>(t.head * ENT_BYTES);
  memory.copy(t.buf + t.end, name, <usize>nameLen);
  memory.copy(t.buf + t.end + nameLen, value, <usize>valueLen);
  store<i32>(e, t.end);
  store<i32>(e, nameLen, 4);
  store<i32>(e, valueLen, 8);
  store<u32>(e, nh, 12);
  store<u32>(e, vh, 16);
  if (t.count == 0) t.start = t.end;
  t.end += len;
  t.size += need;
  t.count++;
}

export { nameHash };
