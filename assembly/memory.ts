// Memory of the codec: a size-class allocator over the stub runtime's bump heap,
// and the few shared regions every call uses (input scratch, event ring, output arena).
// The stub runtime never frees, so freed blocks go to per-class free lists and are reused:
// memory stays bounded by the peak working set, with no GC and no managed objects.

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

/** Returns a 16-byte aligned block of at least `size` bytes (contents undefined). */
export function alloc(size: i32): usize {
  const c = classOf(size);
  const head = freeHeads + (<usize>c << 2);
  const p = load<u32>(head);
  if (p != 0) {
    store<u32>(head, load<u32>(p));
    return <usize>p;
  }
  return heap.alloc(<usize>(1 << (c + MIN_CLASS)));
}

/** Returns a block to its class; `size` is the size it was allocated with. */
export function free(ptr: usize, size: i32): void {
  if (ptr == 0) return;
  const head = freeHeads + (<usize>classOf(size) << 2);
  store<u32>(ptr, load<u32>(head));
  store<u32>(head, <u32>ptr);
}

/** Grows a block to hold `newSize` bytes, keeping the first `keep` bytes. */
export function grow(ptr: usize, oldSize: i32, newSize: i32, keep: i32): usize {
  if (ptr != 0 && capacityOf(oldSize) >= newSize) return ptr;
  const n = alloc(newSize);
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

/** Makes `r` hold at least `size` bytes (contents not kept); returns its address. */
export function reserve(r: Region, size: i32): usize {
  if (r.cap < size) {
    let cap = r.cap > 0 ? r.cap : 4096;
    while (cap < size) cap <<= 1;
    free(r.ptr, r.cap);
    r.ptr = alloc(cap);
    r.cap = cap;
  }
  return r.ptr;
}

/** Like `reserve` but keeps the first `keep` bytes. */
export function reserveKeep(r: Region, size: i32, keep: i32): usize {
  if (r.cap < size) {
    let cap = r.cap > 0 ? r.cap : 4096;
    while (cap < size) cap <<= 1;
    r.ptr = grow(r.ptr, r.cap, cap, keep);
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
export const events: usize = memory.data(EVENT_CAPACITY * 8 * 4, 16);

/** Zeroed allocation. */
export function allocZeroed(size: i32): usize {
  const p = alloc(size);
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
