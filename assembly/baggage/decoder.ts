// Baggage header decoding (ztunnel src/baggage.rs; W3C baggage HTTP_HEADER_FORMAT).
// Input: `lines` u32 lengths, then the header lines' bytes back to back; they merge as one list.
// Results go to fixed static areas (at most 64 W3C members and 8192 kept bytes, or 7 ztunnel slots),
// so decoding never allocates. Peer bytes only produce return codes; every byte is visited a
// bounded number of times, and the host caps the input at BAGGAGE_MAX_INPUT bytes.

import {
  BAGGAGE_MODE_ZTUNNEL, BAGGAGE_ZTUNNEL_MAX_MEMBERS, BAGGAGE_W3C_MAX_MEMBERS, BAGGAGE_W3C_MAX_BYTES, BAGGAGE_E_INVALID,
  BAGGAGE_E_NON_ASCII, BAGGAGE_E_TOO_LARGE, BAGGAGE_SLOTS, BAGGAGE_SLOT_WORKLOAD, BAGGAGE_TYPE_NONE, BAGGAGE_RES_TYPE,
  BAGGAGE_RES_TRUNCATED, BAGGAGE_RES_RECORDS, BAGGAGE_REC_WORDS, BAGGAGE_REC_KEY_OFF, BAGGAGE_REC_KEY_LEN,
  BAGGAGE_REC_VALUE_OFF, BAGGAGE_REC_VALUE_LEN, BAGGAGE_REC_PROPS_OFF, BAGGAGE_REC_PROPS_LEN, BAGGAGE_REC_FLAGS,
  BAGGAGE_REC_DECODED,
} from "./abi";
import { slotOfKey, keyType } from "./keys";

const RECORD_CAPACITY: i32 = BAGGAGE_W3C_MAX_MEMBERS > BAGGAGE_SLOTS ? BAGGAGE_W3C_MAX_MEMBERS : BAGGAGE_SLOTS;
export const result: usize = memory.data((BAGGAGE_RES_RECORDS + RECORD_CAPACITY * BAGGAGE_REC_WORDS) * 4, 16);
// Percent-decoded W3C values: never longer than their encoded form, which the byte limit bounds.
const decodedBytes: usize = memory.data(BAGGAGE_W3C_MAX_BYTES);

// Character classes: RFC 9110 token, W3C baggage-octet, OWS; what http's HeaderValue::to_str takes.
const TCHAR: u8 = 1;
const OCTET: u8 = 2;
const OWS: u8 = 4;
const VISIBLE: u8 = 8;
const charClass: usize = memory.data(256);
const hexValue: usize = memory.data(256); // 0xff: not a hex digit

function initClasses(): void {
  memory.fill(hexValue, 0xff, 256);
  for (let c = 0x21; c < 0x7f; c++) {
    let cls: u8 = VISIBLE;
    // baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
    if (c != 0x22 && c != 0x2c && c != 0x3b && c != 0x5c) cls |= OCTET;
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) cls |= TCHAR;
    store<u8>(charClass + c, cls);
  }
  const punct = "!#$%&'*+-.^_`|~"; // the rest of tchar
  for (let i = 0; i < punct.length; i++) {
    const c = punct.charCodeAt(i);
    store<u8>(charClass + c, load<u8>(charClass + c) | TCHAR);
  }
  store<u8>(charClass + 0x20, OWS | VISIBLE);
  store<u8>(charClass + 0x09, OWS | VISIBLE);
  for (let c = 0; c < 10; c++) store<u8>(hexValue + 0x30 + c, <u8>c);
  for (let c = 0; c < 6; c++) {
    store<u8>(hexValue + 0x41 + c, <u8>(10 + c));
    store<u8>(hexValue + 0x61 + c, <u8>(10 + c));
  }
}
initClasses();

@inline function is(p: usize, end: usize, cls: u8): bool {
  return p < end && (load<u8>(charClass + load<u8>(p)) & cls) != 0;
}

@inline function skip(p: usize, end: usize, cls: u8): usize {
  while (is(p, end, cls)) p++;
  return p;
}

@inline function record(k: i32): usize {
  return result + ((<usize>BAGGAGE_RES_RECORDS + <usize>k * BAGGAGE_REC_WORDS) << 2);
}

@inline function setSlot(slot: i32, rec: i32): void {
  store<i32>(result + (<usize>slot << 2), rec);
}

// State of one decode call.
let members: i32 = 0; // ztunnel: pieces seen; W3C: members kept
let keptBytes: i32 = 0;
let truncated: bool = false;
let decodedLen: i32 = 0;

/** Decodes the header lines at p; returns the W3C members kept (0 in ztunnel mode) or -BAGGAGE_E_*. */
export function baggageDecode(mode: i32, p: usize, lines: i32): i32 {
  for (let s = 0; s < BAGGAGE_SLOTS; s++) setSlot(s, -1);
  store<i32>(result + (BAGGAGE_RES_TYPE << 2), BAGGAGE_TYPE_NONE);
  members = 0;
  keptBytes = 0;
  truncated = false;
  decodedLen = 0;
  let line = p + (<usize>lines << 2);
  for (let i = 0; i < lines; i++) {
    const len = load<u32>(p + (<usize>i << 2));
    const rc = mode == BAGGAGE_MODE_ZTUNNEL ? ztunnelLine(line, line + len) : w3cLine(line, line + len);
    if (rc < 0) return rc;
    line += len;
  }
  store<i32>(result + (BAGGAGE_RES_TRUNCATED << 2), truncated ? 1 : 0);
  return mode == BAGGAGE_MODE_ZTUNNEL ? 0 : members;
}

/** Fills `slot` from record `rec`, or clears it for an empty value (ztunnel: empty means none, last one wins). */
function assign(slot: i32, type: i32, rec: i32, valueLen: i32): void {
  setSlot(slot, valueLen > 0 ? rec : -1);
  if (slot == BAGGAGE_SLOT_WORKLOAD) store<i32>(result + (BAGGAGE_RES_TYPE << 2), valueLen > 0 ? type : BAGGAGE_TYPE_NONE);
}

function setRecord(r: usize, key: usize, keyLen: i32, value: usize, valueLen: i32, props: usize, propsLen: i32,
                   flags: i32): void {
  store<i32>(r + (BAGGAGE_REC_KEY_OFF << 2), <i32>key);
  store<i32>(r + (BAGGAGE_REC_KEY_LEN << 2), keyLen);
  store<i32>(r + (BAGGAGE_REC_VALUE_OFF << 2), <i32>value);
  store<i32>(r + (BAGGAGE_REC_VALUE_LEN << 2), valueLen);
  store<i32>(r + (BAGGAGE_REC_PROPS_OFF << 2), <i32>props);
  store<i32>(r + (BAGGAGE_REC_PROPS_LEN << 2), propsLen);
  store<i32>(r + (BAGGAGE_REC_FLAGS << 2), flags);
}

// ztunnel (src/baggage.rs parse_baggage_header): a line that is not visible ASCII (HeaderValue::to_str)
// fails the whole parse; otherwise split on ',', then on '=': the key is the first piece, the value the
// second (`a=b=c` gives b), untrimmed and undecoded. Pieces without '=' are ignored. One pass: a piece
// is assigned at its ',' even if a later byte fails the line, since a failure discards everything.
// ztunnel has no limits; we stop at 1024 pieces over all lines (and the host at 64 KiB of input).
function ztunnelLine(p: usize, end: usize): i32 {
  let start = p;
  let eq: usize = 0; // the piece's first '=' (0: none yet; input never sits at address 0)
  let eq2: usize = 0; // its second '='
  let q = p;
  while (true) {
    if (q < end && load<u8>(q) != 0x2c) {
      const c = load<u8>(q);
      if ((load<u8>(charClass + c) & VISIBLE) == 0) return -BAGGAGE_E_NON_ASCII;
      if (c == 0x3d) {
        if (eq == 0) eq = q;
        else if (eq2 == 0) eq2 = q;
      }
      q++;
      continue;
    }
    // The piece [start, q) is complete.
    if (++members > BAGGAGE_ZTUNNEL_MAX_MEMBERS) return -BAGGAGE_E_TOO_LARGE;
    if (eq != 0) {
      const slot = slotOfKey(start, <i32>(eq - start));
      if (slot >= 0) {
        const valueLen = <i32>((eq2 != 0 ? eq2 : q) - eq - 1);
        setRecord(record(slot), start, <i32>(eq - start), eq + 1, valueLen, 0, -1, 0);
        assign(slot, keyType, slot, valueLen);
      }
    }
    if (q >= end) return 0;
    start = ++q;
    eq = 0;
    eq2 = 0;
  }
}

// W3C: list-member = key OWS "=" OWS value *( OWS ";" OWS property ), members joined by OWS "," OWS.
// Any member breaking the grammar rejects the whole header (as the W3C reference parser does);
// members past the limits are still checked, then dropped, whole and in order.
function w3cLine(p: usize, end: usize): i32 {
  // HTTP strips a field line's outer whitespace (RFC 9110 §5.5); a caller may not have.
  p = skip(p, end, OWS);
  while (end > p && (load<u8>(charClass + load<u8>(end - 1)) & OWS) != 0) end--;
  while (true) {
    const key = p;
    p = skip(p, end, TCHAR);
    if (p == key) return -BAGGAGE_E_INVALID;
    const keyLen = <i32>(p - key);
    p = skip(p, end, OWS);
    if (p >= end || load<u8>(p) != 0x3d) return -BAGGAGE_E_INVALID;
    const afterEq = ++p;
    p = skip(p, end, OWS);
    const value = p;
    let pct = false;
    while (is(p, end, OCTET)) {
      if (load<u8>(p) == 0x25) pct = true;
      p++;
    }
    const valueEnd = p;
    let memberEnd = p > value ? p : afterEq; // where the member's text ends, OWS excluded
    let props: usize = 0;
    p = skip(p, end, OWS);
    while (p < end && load<u8>(p) == 0x3b) {
      p = skip(p + 1, end, OWS);
      if (props == 0) props = p;
      // property = key OWS "=" OWS value / key OWS
      const propKey = p;
      p = skip(p, end, TCHAR);
      if (p == propKey) return -BAGGAGE_E_INVALID;
      memberEnd = p;
      p = skip(p, end, OWS);
      if (p < end && load<u8>(p) == 0x3d) {
        memberEnd = ++p; // an empty value ends the property at its '='
        p = skip(p, end, OWS);
        const propValue = p;
        p = skip(p, end, OCTET);
        if (p > propValue) memberEnd = p;
        p = skip(p, end, OWS);
      }
    }
    if (p < end && load<u8>(p) != 0x2c) return -BAGGAGE_E_INVALID;
    keep(key, keyLen, value, valueEnd, pct, props, memberEnd);
    if (p >= end) return 0;
    p = skip(p + 1, end, OWS);
  }
}

/** Records a valid W3C member if it fits the limits; once one does not, drops it and all later ones. */
function keep(key: usize, keyLen: i32, value: usize, valueEnd: usize, pct: bool, props: usize, memberEnd: usize): void {
  const size = <i32>(memberEnd - key) + (members > 0 ? 1 : 0);
  if (truncated || members == BAGGAGE_W3C_MAX_MEMBERS || keptBytes + size > BAGGAGE_W3C_MAX_BYTES) {
    truncated = true;
    return;
  }
  keptBytes += size;
  let v = value;
  let n = <i32>(valueEnd - value);
  if (pct) {
    v = decodedBytes + decodedLen;
    n = percentDecode(value, valueEnd, v);
    decodedLen += n;
  }
  const propsLen = props != 0 ? <i32>(memberEnd - props) : -1;
  setRecord(record(members), key, keyLen, v, n, props, propsLen, pct ? BAGGAGE_REC_DECODED : 0);
  const slot = slotOfKey(key, keyLen);
  if (slot >= 0) assign(slot, keyType, members, n);
  members++;
}

/** %XX (two hex digits) becomes byte XX; any other '%' stays as is (Python's unquote). Returns the length. */
function percentDecode(p: usize, end: usize, o: usize): i32 {
  const start = o;
  while (p < end) {
    const c = load<u8>(p);
    if (c == 0x25 && p + 2 < end) {
      const hi = load<u8>(hexValue + load<u8>(p + 1));
      const lo = load<u8>(hexValue + load<u8>(p + 2));
      if (hi != 0xff && lo != 0xff) {
        store<u8>(o++, (hi << 4) | lo);
        p += 3;
        continue;
      }
    }
    store<u8>(o++, c);
    p++;
  }
  return <i32>(o - start);
}
