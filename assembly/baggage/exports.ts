// Baggage codec exports (see assembly/baggage/, constants in ./abi). Re-exported by assembly/index.ts.

import { baggageDecode, result } from "./decoder";
import { baggageEncode, encodeBound } from "./encoder";

/** Decodes header lines at p (`lines` u32 lengths, then the bytes); results at baggage_result_ptr(). */
export function baggage_decode(mode: i32, p: usize, lines: i32): i32 {
  return baggageDecode(mode, p, lines);
}
export function baggage_result_ptr(): usize {
  return result;
}
/** Writes the header for the fields at p (a u32 length per slot, then the bytes) at o; returns its length. */
export function baggage_encode(p: usize, type: i32, o: usize): i32 {
  return baggageEncode(p, type, o);
}
export function baggage_encode_bound(bytes: i32): i32 {
  return encodeBound(bytes);
}
