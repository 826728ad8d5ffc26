// Memory of the codec: a size-class allocator over the stub runtime's bump heap,
// and the few shared regions every call uses (input scratch, event ring, output arena).
// The stub runtime never frees, so freed blocks go to per-class free lists and are reused:
// memory stays bounded by the peak working set, with no GC and no managed objects.
//
// Peer-driven allocations (`alloc`, `grow`, `reserve`, `reserveKeep`) stop at a budget
// (`heapLimit`, default 768 MiB, below the module's 1 GiB maximum memory): past it they return
// 0 and the caller turns that into a clean error of its session, never a trap (the stub runtime
// traps when memory.grow fails) and never a wrapped pointer. Operator-driven tables (LB) use the
// *System variants, which only the memory maximum bounds.

import { EVENT_WORDS } from "./abi";

const MIN_CLASS: i32 = 5; // 32 bytes
const CLASSES: i32 = 27; // up to 2^31

const freeHeads = memory.data(CLASSES * 4);

@inline function classOf(size: i32): i32 {
  if (size <= 1 << MIN_CLASS) return 0;
  return 32 - clz<i32>(size - 1) - MIN_CLASS;
}

/** Capacity (bytes) of a block obtained with `alloc(size)`. */
@inline export function capacityOf(size: i32): i32 {
  return 1 << (classOf(size) + MIN_CLASS);
}

/** Budget for peer-driven allocations: bytes of fresh heap (beyond the free lists) they may take. */
export let heapLimit: usize = 768 << 20;
/** Fresh heap bytes taken from the runtime so far (each block plus the stub's header). */
export let heapTaken: usize = 0;
const STUB_OVERHEAD: usize = 16;
const LARGEST_CLASS: i32 = 1 << 30;

export function setHeapLimit(n: usize): void {
  heapLimit = n;
}

function take(size: i32, capped: bool): usize {
  if (size < 0 || size > LARGEST_CLASS) return 0;
  const c = classOf(size);
  const head = freeHeads + (<usize>c << 2);
  const p = load<u32>(head);
  if (p != 0) {
    store<u32>(head, load<u32>(p));
    return <usize>p;
  }
  const bytes = <usize>(1 << (c + MIN_CLASS));
  if (capped && heapTaken + bytes + STUB_OVERHEAD > heapLimit) return 0;
  heapTaken += bytes + STUB_OVERHEAD;
  return heap.alloc(bytes);
}

/** Returns a 16-byte aligned block of at least `size` bytes (contents undefined), or 0 past the budget. */
export function alloc(size: i32): usize {
  return take(size, true);
}

/** Like `alloc` for operator-driven data: not bounded by the budget (only by the memory maximum). */
export function allocSystem(size: i32): usize {
  return take(size, false);
}

/** Returns a block to its class; `size` is the size it was allocated with. */
export function free(ptr: usize, size: i32): void {
  if (ptr == 0) return;
  const head = freeHeads + (<usize>classOf(size) << 2);
  store<u32>(ptr, load<u32>(head));
  store<u32>(head, <u32>ptr);
}

/** Grows a block to hold `newSize` bytes, keeping the first `keep` bytes; 0 (old block kept) past the budget. */
export function grow(ptr: usize, oldSize: i32, newSize: i32, keep: i32, system: bool = false): usize {
  if (ptr != 0 && capacityOf(oldSize) >= newSize) return ptr;
  const n = take(newSize, !system);
  if (n == 0) return 0;
  if (ptr != 0) {
    if (keep > 0) memory.copy(n, ptr, <usize>keep);
    free(ptr, oldSize);
  }
  return n;
}

/** A growable shared region: [ptr, cap]. */
@unmanaged export class Region {
  ptr: usize = 0;
  cap: i32 = 0;
}

@inline function regionCap(r: Region, size: i32): i32 {
  let cap = r.cap > 0 ? r.cap : 4096;
  while (cap < size && cap < LARGEST_CLASS) cap <<= 1;
  return cap;
}

/** Makes `r` hold at least `size` bytes (contents not kept); returns its address, or 0 (region kept) past the budget. */
export function reserve(r: Region, size: i32, system: bool = false): usize {
  if (r.cap < size || r.ptr == 0) {
    const cap = regionCap(r, size);
    const p = take(cap, !system);
    if (p == 0) return 0;
    free(r.ptr, r.cap);
    r.ptr = p;
    r.cap = cap;
  }
  return r.ptr;
}

/** Like `reserve` but keeps the first `keep` bytes. */
export function reserveKeep(r: Region, size: i32, keep: i32): usize {
  if (r.cap < size || r.ptr == 0) {
    const cap = regionCap(r, size);
    const p = grow(r.ptr, r.cap, cap, keep);
    if (p == 0) return 0;
    r.ptr = p;
    r.cap = cap;
  }
  return r.ptr;
}

/** Where the host copies incoming bytes before a parse or decode call. */
export const input = changetype<Region>(memory.data(offsetof<Region>()));
/** Where encoders write bytes for the host to send. */
export const output = changetype<Region>(memory.data(offsetof<Region>()));
/** HPACK decode results: header records, then their bytes. */
export const headerRecords = changetype<Region>(memory.data(offsetof<Region>()));
export const headerBytes = changetype<Region>(memory.data(offsetof<Region>()));

/** The event ring: frame events of one parse call. */
export const EVENT_CAPACITY: i32 = 8192;
export const events: usize = memory.data(EVENT_CAPACITY * EVENT_WORDS * 4, 16);

/** Zeroed allocation (operator-driven data: not budgeted). */
export function allocZeroed(size: i32): usize {
  const p = allocSystem(size);
  memory.fill(p, 0, <usize>size);
  return p;
}

/** Walks the free lists; returns the number of free blocks, or -1 if a list is corrupt. */
export function heapCheck(): i32 {
  const top = <usize>memory.size() << 16;
  let blocks = 0;
  for (let c = 0; c < CLASSES; c++) {
    let p = <usize>load<u32>(freeHeads + (<usize>c << 2));
    while (p != 0) {
      if (p >= top || (p & 15) != 0 || blocks > 1 << 24) return -1;
      blocks++;
      p = <usize>load<u32>(p);
    }
  }
  return blocks;
}
