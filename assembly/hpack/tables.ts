// HPACK constant tables (RFC 7541 Appendix A and B), laid out once at instantiation
// into flat byte tables so the hot paths only do loads.

import { allocSystem } from "../memory";

// Appendix A: the 61 static entries, "name\tvalue" separated by "\n".
const STATIC_SOURCE =
  ":authority\t\n:method\tGET\n:method\tPOST\n:path\t/\n:path\t/index.html\n:scheme\thttp\n:scheme\thttps\n" +
  ":status\t200\n:status\t204\n:status\t206\n:status\t304\n:status\t400\n:status\t404\n:status\t500\n" +
  "accept-charset\t\naccept-encoding\tgzip, deflate\naccept-language\t\naccept-ranges\t\naccept\t\n" +
  "access-control-allow-origin\t\nage\t\nallow\t\nauthorization\t\ncache-control\t\ncontent-disposition\t\n" +
  "content-encoding\t\ncontent-language\t\ncontent-length\t\ncontent-location\t\ncontent-range\t\n" +
  "content-type\t\ncookie\t\ndate\t\netag\t\nexpect\t\nexpires\t\nfrom\t\nhost\t\nif-match\t\n" +
  "if-modified-since\t\nif-none-match\t\nif-range\t\nif-unmodified-since\t\nlast-modified\t\nlink\t\n" +
  "location\t\nmax-forwards\t\nproxy-authenticate\t\nproxy-authorization\t\nrange\t\nreferer\t\nrefresh\t\n" +
  "retry-after\t\nserver\t\nset-cookie\t\nstrict-transport-security\t\ntransfer-encoding\t\nuser-agent\t\n" +
  "vary\t\nvia\t\nwww-authenticate\t\n";

export const STATIC_COUNT: i32 = 61;

// Per static index 1..61: name offset, name length, value offset, value length (u16 each).
export const staticEntries: usize = memory.data(62 * 8);
export let staticBytes: usize = 0;
// For each index, the last index that shares its name (static names are grouped).
export const staticNameEnd: usize = memory.data(62);
// Open-addressed name hash -> first static index with that name.
const NAME_SLOTS: i32 = 128;
const staticNameSlots: usize = memory.data(NAME_SLOTS);

// Appendix B: code length in bits of symbols 0..256 (256 = EOS). The code is canonical
// (codes assigned in order of length, then symbol), so the lengths determine it.
const HUFFMAN_LENGTHS = memory.data<u8>([
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28,
  28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13,
  6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6,
  6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23,
  23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21,
  23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23,
  22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21,
  22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
]);
export const EOS: i32 = 256;

/** Code of each symbol, right-aligned (u32 x 257). */
export const huffCodes: usize = memory.data(257 * 4);
/** Length of each symbol's code. */
export const huffLengths: usize = HUFFMAN_LENGTHS;

// Decoding: a primary table over the first PRIMARY_BITS bits gives (symbol, length) for short
// codes; longer codes use the canonical ranges per length.
export const PRIMARY_BITS: i32 = 9;
/** u16 per slot: symbol | length << 9 when the code fits in PRIMARY_BITS, else 0. */
export const huffPrimary: usize = memory.data((1 << PRIMARY_BITS) * 2);
/** Per length 0..30: first code (u32), index of its first symbol in huffSorted (u32), count (u32). */
export const huffFirstCode: usize = memory.data(31 * 4);
export const huffFirstIndex: usize = memory.data(31 * 4);
export const huffCount: usize = memory.data(31 * 4);
/** Symbols sorted by (length, symbol), u16 each. */
export const huffSorted: usize = memory.data(257 * 2);

@inline export function nameHash(p: usize, n: i32): u32 {
  // FNV-1a over the name bytes.
  let h: u32 = 2166136261;
  for (let i = 0; i < n; i++) h = (h ^ load<u8>(p + i)) * 16777619;
  return h;
}

function bytesEqual(a: usize, b: usize, n: i32): bool {
  return memory.compare(a, b, <usize>n) == 0;
}

@inline export function staticNameOff(i: i32): usize {
  return staticBytes + load<u16>(staticEntries + (<usize>i << 3));
}
@inline export function staticNameLen(i: i32): i32 {
  return load<u16>(staticEntries + (<usize>i << 3), 2);
}
@inline export function staticValueOff(i: i32): usize {
  return staticBytes + load<u16>(staticEntries + (<usize>i << 3), 4);
}
@inline export function staticValueLen(i: i32): i32 {
  return load<u16>(staticEntries + (<usize>i << 3), 6);
}

/** First static index whose name equals the bytes [p, p+n), or 0. */
export function findStaticName(p: usize, n: i32, h: u32): i32 {
  let slot = <i32>(h & <u32>(NAME_SLOTS - 1));
  for (let probe = 0; probe < NAME_SLOTS; probe++) {
    const idx = <i32>load<u8>(staticNameSlots + slot);
    if (idx == 0) return 0;
    if (staticNameLen(idx) == n && bytesEqual(staticNameOff(idx), p, n)) return idx;
    slot = (slot + 1) & (NAME_SLOTS - 1);
  }
  return 0;
}

function initStatic(): void {
  const src = STATIC_SOURCE;
  const n = src.length;
  staticBytes = allocSystem(n);
  let pos = 0;
  let idx = 1;
  let nameStart = 0;
  let valueStart = -1;
  for (let i = 0; i < n; i++) {
    const c = src.charCodeAt(i);
    store<u8>(staticBytes + i, <u8>c);
    if (c == 9) {
      valueStart = i + 1;
    } else if (c == 10) {
      const e = staticEntries + (<usize>idx << 3);
      store<u16>(e, <u16>nameStart);
      store<u16>(e, <u16>(valueStart - 1 - nameStart), 2);
      store<u16>(e, <u16>valueStart, 4);
      store<u16>(e, <u16>(i - valueStart), 6);
      idx++;
      nameStart = i + 1;
    }
    pos++;
  }
  // Group ends and the name hash.
  for (let i = STATIC_COUNT; i >= 1; i--) {
    let end = i;
    if (i < STATIC_COUNT && staticNameLen(i + 1) == staticNameLen(i) &&
        bytesEqual(staticNameOff(i + 1), staticNameOff(i), staticNameLen(i))) {
      end = <i32>load<u8>(staticNameEnd + i + 1);
    }
    store<u8>(staticNameEnd + i, <u8>end);
  }
  for (let i = 1; i <= STATIC_COUNT; i++) {
    if (i > 1 && load<u8>(staticNameEnd + i - 1) == load<u8>(staticNameEnd + i)) continue; // not the first of its group
    const h = nameHash(staticNameOff(i), staticNameLen(i));
    let slot = <i32>(h & <u32>(NAME_SLOTS - 1));
    while (load<u8>(staticNameSlots + slot) != 0) slot = (slot + 1) & (NAME_SLOTS - 1);
    store<u8>(staticNameSlots + slot, <u8>i);
  }
}

function initHuffman(): void {
  // Canonical code assignment, symbols sorted by (length, symbol).
  let k = 0;
  let code: u32 = 0;
  let prevLen = 0;
  for (let len = 1; len <= 30; len++) {
    store<u32>(huffFirstIndex + (<usize>len << 2), <u32>k);
    let count = 0;
    for (let s = 0; s <= 256; s++) {
      if (<i32>load<u8>(huffLengths + s) != len) continue;
      if (count == 0) {
        code <<= <u32>(len - prevLen);
        prevLen = len;
        store<u32>(huffFirstCode + (<usize>len << 2), code);
      }
      store<u32>(huffCodes + (<usize>s << 2), code);
      store<u16>(huffSorted + (<usize>k << 1), <u16>s);
      code++;
      k++;
      count++;
    }
    store<u32>(huffCount + (<usize>len << 2), <u32>count);
  }
  // Primary table: every slot whose leading bits are a short code.
  for (let s = 0; s <= 256; s++) {
    const len = <i32>load<u8>(huffLengths + s);
    if (len > PRIMARY_BITS) continue;
    const base = load<u32>(huffCodes + (<usize>s << 2)) << <u32>(PRIMARY_BITS - len);
    const span: u32 = 1 << <u32>(PRIMARY_BITS - len);
    for (let j: u32 = 0; j < span; j++) {
      store<u16>(huffPrimary + (<usize>(base + j) << 1), <u16>(s | (len << 9)));
    }
  }
}

initStatic();
initHuffman();
