// Baggage header encoding exactly as ztunnel emits it (src/baggage.rs baggage_header_val): the set
// fields in slot order as key=value, joined by ',' with no spaces, no percent-encoding, no properties.

import { BAGGAGE_SLOTS, BAGGAGE_ENC_TEXT } from "./abi";
import { MAX_KEY_LEN, writeKey } from "./keys";

/** Output bytes enough for fields totalling `bytes` bytes. */
export function encodeBound(bytes: i32): i32 {
  return bytes + BAGGAGE_SLOTS * (MAX_KEY_LEN + 2); // each field adds its key, '=' and ','
}

/**
 * Encodes the fields at p (one u32 length per slot, then their bytes; length 0 = not set) with the
 * workload key of `type`. Returns the header's length at o, or -(slot + 1) for a field holding a byte
 * ztunnel's parser would not give back unchanged (not visible ASCII, space or tab; or ',' or '=').
 */
export function baggageEncode(p: usize, type: i32, o: usize): i32 {
  const start = o;
  let field = p + BAGGAGE_ENC_TEXT;
  for (let slot = 0; slot < BAGGAGE_SLOTS; slot++) {
    const len = <usize>load<u32>(p + (<usize>slot << 2));
    if (len == 0) continue;
    for (let q = field; q < field + len; q++) {
      const c = load<u8>(q);
      if ((c < 0x20 && c != 0x09) || c >= 0x7f || c == 0x2c || c == 0x3d) return -(slot + 1);
    }
    if (o != start) store<u8>(o++, 0x2c);
    o = writeKey(o, slot, type);
    store<u8>(o++, 0x3d);
    memory.copy(o, field, len);
    o += len;
    field += len;
  }
  return <i32>(o - start);
}
