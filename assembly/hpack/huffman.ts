// HPACK Huffman coding (RFC 7541 §5.2, Appendix B).

import {
  EOS, PRIMARY_BITS, huffCodes, huffLengths, huffPrimary, huffFirstCode, huffFirstIndex, huffCount, huffSorted,
} from "./tables";

/** Length in bytes of the Huffman encoding of [p, p+n). */
export function huffEncodedLength(p: usize, n: i32): i32 {
  let bits: i64 = 0;
  for (let i = 0; i < n; i++) bits += <i64>load<u8>(huffLengths + load<u8>(p + i));
  return <i32>((bits + 7) >> 3);
}

/** Writes the Huffman encoding of [p, p+n) at dst (padded with the EOS prefix); returns bytes written. */
export function huffEncode(p: usize, n: i32, dst: usize): i32 {
  let acc: u64 = 0;
  let bits: i32 = 0;
  let o = dst;
  for (let i = 0; i < n; i++) {
    const s = <usize>load<u8>(p + i);
    const len = <i32>load<u8>(huffLengths + s);
    acc = (acc << <u64>len) | <u64>load<u32>(huffCodes + (s << 2));
    bits += len;
    while (bits >= 8) {
      bits -= 8;
      store<u8>(o++, <u8>(acc >> <u64>bits));
    }
  }
  if (bits > 0) {
    store<u8>(o++, <u8>((acc << <u64>(8 - bits)) | ((<u64>1 << <u64>(8 - bits)) - 1)));
  }
  return <i32>(o - dst);
}

/**
 * Decodes n Huffman-coded bytes at p into dst (which must hold n * 8 / 5 + 1 bytes).
 * Returns the decoded length, or -1 when the input decodes EOS or ends in bad padding
 * (more than 7 bits, or not the EOS prefix).
 */
export function huffDecode(p: usize, n: i32, dst: usize): i32 {
  let acc: u64 = 0; // left-aligned bit buffer
  let bits: i32 = 0;
  let i = 0;
  let o = dst;
  while (true) {
    while (bits <= 56 && i < n) {
      acc |= <u64>load<u8>(p + i) << <u64>(56 - bits);
      bits += 8;
      i++;
    }
    if (bits == 0) break;
    // Peek PRIMARY_BITS, filling missing bits with ones (a code cut short is padding).
    let peek = <i32>(acc >> <u64>(64 - PRIMARY_BITS));
    if (bits < PRIMARY_BITS) peek |= (1 << (PRIMARY_BITS - bits)) - 1;
    const e = <i32>load<u16>(huffPrimary + (<usize>peek << 1));
    let sym: i32 = -1;
    let len: i32 = 0;
    if (e != 0) {
      len = e >> 9;
      if (len > bits) break;
      sym = e & 0x1ff;
    } else {
      for (len = PRIMARY_BITS + 1; len <= 30; len++) {
        if (len > bits) break;
        const code = <u32>(acc >> <u64>(64 - len));
        const rel = code - load<u32>(huffFirstCode + (<usize>len << 2));
        if (rel < load<u32>(huffCount + (<usize>len << 2))) {
          sym = <i32>load<u16>(huffSorted + (<usize>(load<u32>(huffFirstIndex + (<usize>len << 2)) + rel) << 1));
          break;
        }
      }
      if (sym < 0) break;
    }
    if (sym == EOS) return -1;
    store<u8>(o++, <u8>sym);
    acc <<= <u64>len;
    bits -= len;
  }
  // What is left must be padding: at most 7 bits, all ones.
  if (bits > 7) return -1;
  if (bits > 0 && <i32>(acc >> <u64>(64 - bits)) != (1 << bits) - 1) return -1;
  return <i32>(o - dst);
}
