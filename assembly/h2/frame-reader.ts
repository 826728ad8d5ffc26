// Incremental HTTP/2 frame reader (RFC 9113 §4, §6). Bytes arrive in chunks of any size;
// each call turns the complete parts into fixed-size event records (see abi.ts). DATA
// payload is never copied: its events point into the chunk. Other frames are parsed in
// place when whole, else gathered in a per-reader buffer. Peer bytes only ever produce
// return codes: a negative result is -(connection error code), with the reason in lastReason.
//
// Memory a peer controls: a gathered frame is at most `maxGather` bytes (the host sets it from
// its header-list limit: no non-DATA frame needs the 1 MiB a DATA frame may use; beyond it,
// ENHANCE_YOUR_CALM), SETTINGS carry at most MAX_SETTINGS_ENTRIES entries, the gather buffer
// grows with the bytes that actually arrived (not the declared length), and the host returns
// it with reader_release once the frame's event is taken. Allocation past the codec's budget
// is a connection error (INTERNAL_ERROR, R_OUT_OF_MEMORY) of this reader only.

import {
  FRAME_DATA, FRAME_HEADERS, FRAME_PRIORITY, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_PUSH_PROMISE, FRAME_PING,
  FRAME_GOAWAY, FRAME_WINDOW_UPDATE, FRAME_CONTINUATION, FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS, FLAG_PADDED,
  FLAG_PRIORITY, FLAG_FRAME_END, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, EVENT_WORDS,
  EV_STREAM_ERROR, SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_ENABLE_CONNECT_PROTOCOL, DEFAULT_MAX_FRAME_SIZE, MAX_ALLOWED_FRAME_SIZE, MAX_WINDOW_SIZE,
  R_FRAME_TOO_LARGE, R_STREAM_ID_ZERO, R_STREAM_ID_NONZERO, R_BAD_LENGTH, R_BAD_PADDING, R_ZERO_INCREMENT,
  R_SETTINGS_ACK_PAYLOAD, R_BAD_SETTING_VALUE, R_UNEXPECTED_CONTINUATION, R_EXPECTED_CONTINUATION,
  R_BAD_PROMISED_STREAM, R_SELF_DEPENDENCY, ENHANCE_YOUR_CALM, INTERNAL_ERROR, MAX_SETTINGS_ENTRIES,
  R_HEADER_BLOCK_TOO_LARGE, R_OUT_OF_MEMORY, R_TOO_MANY_SETTINGS, R_GATHER_TOO_LARGE, READER_NO_PUSH,
  READER_MID_STREAM, EV_TYPE, EV_FLAGS, EV_STREAM, EV_OFF, EV_LEN, EV_A, EV_B, EV_C, PRIORITY_LENGTH,
  RST_STREAM_LENGTH, SETTINGS_ENTRY_LENGTH, PING_LENGTH, GOAWAY_MIN_LENGTH, WINDOW_UPDATE_LENGTH,
} from "../abi";
import { alloc, free, grow, capacityOf, events, EVENT_CAPACITY } from "../memory";

const S_HEADER: i32 = 0;
const S_GATHER: i32 = 1; // collecting a non-DATA payload split across chunks
const S_DATA_PAD: i32 = 2; // DATA: next byte is the pad length
const S_DATA: i32 = 3;
const S_DATA_PADDING: i32 = 4;
const S_SKIP: i32 = 5; // unknown type, or a frame already answered with a stream error

@unmanaged export class Reader {
  state: i32;
  hdrFill: i32;
  type: i32;
  flags: i32;
  stream: i32;
  length: i32;
  remaining: i32; // payload bytes of the current frame not yet consumed
  padLen: i32;
  dataLeft: i32; // DATA bytes not yet delivered
  fc: i32; // flow-controlled DATA bytes not yet reported
  buf: usize;
  bufSize: i32;
  bufFill: i32;
  maxFrameSize: i32;
  contStream: i32; // stream whose header block is open; 0 none; -1 unknown (mid-stream start)
  options: i32;
  hdr0: u64; // the 9 header bytes while they straddle chunks
  hdr1: u64;
  maxGather: i32; // largest non-DATA frame accepted
}

export let lastReason: i32 = 0;
export let lastStream: i32 = 0;
/** Bytes consumed by the last reader_parse call (less than given when the event ring filled). */
export let consumed: i32 = 0;

let nev: i32 = 0;
let bufUsed: bool = false; // the gather buffer holds a payload an event of this call points to

export function readerNew(maxFrameSize: i32, options: i32): Reader {
  const p = alloc(offsetof<Reader>());
  if (p == 0) return changetype<Reader>(0); // budget spent: the host refuses the connection
  const r = changetype<Reader>(p);
  memory.fill(p, 0, offsetof<Reader>());
  r.maxFrameSize = maxFrameSize > 0 ? maxFrameSize : DEFAULT_MAX_FRAME_SIZE;
  r.maxGather = r.maxFrameSize;
  r.options = options;
  r.contStream = (options & READER_MID_STREAM) != 0 ? -1 : 0;
  return r;
}

export function readerFree(r: Reader): void {
  free(r.buf, r.bufSize);
  free(changetype<usize>(r), offsetof<Reader>());
}

/** Returns the gather buffer to the allocator unless a frame is half gathered in it. */
export function readerRelease(r: Reader): void {
  if (r.buf == 0 || (r.state == S_GATHER && r.bufFill > 0)) return;
  free(r.buf, r.bufSize);
  r.buf = 0;
  r.bufSize = 0;
}

export function readerSetMaxGather(r: Reader, n: i32): void {
  // Every endpoint must accept frames of 16 KiB (§4.2).
  r.maxGather = max<i32>(n, DEFAULT_MAX_FRAME_SIZE);
}

@inline function emit(type: i32, flags: i32, stream: i32, off: usize, len: i32, a: i32, b: i32, c: i32): void {
  const e = events + <usize>(nev * EVENT_WORDS * 4);
  store<i32>(e, type, EV_TYPE * 4);
  store<i32>(e, flags, EV_FLAGS * 4);
  store<i32>(e, stream, EV_STREAM * 4);
  store<i32>(e, <i32>off, EV_OFF * 4);
  store<i32>(e, len, EV_LEN * 4);
  store<i32>(e, a, EV_A * 4);
  store<i32>(e, b, EV_B * 4);
  store<i32>(e, c, EV_C * 4);
  nev++;
}

@inline function connError(code: i32, reason: i32, stream: i32): i32 {
  lastReason = reason;
  lastStream = stream;
  return -code;
}

@inline function streamError(stream: i32, code: i32, reason: i32): void {
  emit(EV_STREAM_ERROR, 0, stream, 0, 0, code, reason, 0);
}

/** Checks a frame header before its payload (§4.2, §6); sets the state for the payload. */
function beginFrame(r: Reader): i32 {
  const type = r.type, flags = r.flags, stream = r.stream, length = r.length;
  if (length > r.maxFrameSize) return connError(FRAME_SIZE_ERROR, R_FRAME_TOO_LARGE, stream);
  // A header block must be followed only by its CONTINUATION frames (§6.10).
  if (r.contStream > 0) {
    if (type != FRAME_CONTINUATION || stream != r.contStream) {
      return connError(PROTOCOL_ERROR, R_EXPECTED_CONTINUATION, stream);
    }
  } else if (type == FRAME_CONTINUATION && r.contStream == 0) {
    return connError(PROTOCOL_ERROR, R_UNEXPECTED_CONTINUATION, stream);
  }
  r.remaining = length;
  switch (type) {
    case FRAME_DATA: {
      if (stream == 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_ZERO, stream);
      r.fc = 0;
      r.padLen = 0;
      if (flags & FLAG_PADDED) {
        if (length < 1) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
        r.state = S_DATA_PAD;
      } else {
        r.dataLeft = length;
        r.state = S_DATA;
      }
      return 0;
    }
    case FRAME_HEADERS:
    case FRAME_CONTINUATION:
      if (stream == 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_ZERO, stream);
      break;
    case FRAME_PUSH_PROMISE:
      if (stream == 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_ZERO, stream);
      if (r.options & READER_NO_PUSH) return connError(PROTOCOL_ERROR, R_BAD_PROMISED_STREAM, stream);
      break;
    case FRAME_PRIORITY:
      if (stream == 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_ZERO, stream);
      if (length != PRIORITY_LENGTH) {
        streamError(stream, FRAME_SIZE_ERROR, R_BAD_LENGTH);
        r.state = S_SKIP;
        return 0;
      }
      break;
    case FRAME_RST_STREAM:
      if (stream == 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_ZERO, stream);
      if (length != RST_STREAM_LENGTH) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      break;
    case FRAME_SETTINGS:
      if (stream != 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_NONZERO, stream);
      if ((flags & FLAG_ACK) && length != 0) return connError(FRAME_SIZE_ERROR, R_SETTINGS_ACK_PAYLOAD, stream);
      if (length % SETTINGS_ENTRY_LENGTH != 0) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      // Each entry may walk every stream: a frame of 174k entries is only a CPU attack.
      if (length > MAX_SETTINGS_ENTRIES * SETTINGS_ENTRY_LENGTH) return connError(ENHANCE_YOUR_CALM, R_TOO_MANY_SETTINGS, stream);
      break;
    case FRAME_PING:
      if (stream != 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_NONZERO, stream);
      if (length != PING_LENGTH) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      break;
    case FRAME_GOAWAY:
      if (stream != 0) return connError(PROTOCOL_ERROR, R_STREAM_ID_NONZERO, stream);
      if (length < GOAWAY_MIN_LENGTH) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      break;
    case FRAME_WINDOW_UPDATE:
      if (length != WINDOW_UPDATE_LENGTH) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      break;
    default:
      // Unknown frame types are ignored (§4.1, §5.5).
      if (r.contStream < 0) r.contStream = 0;
      r.state = S_SKIP;
      return 0;
  }
  if (length > r.maxGather) {
    const header = type == FRAME_HEADERS || type == FRAME_CONTINUATION || type == FRAME_PUSH_PROMISE;
    return connError(ENHANCE_YOUR_CALM, header ? R_HEADER_BLOCK_TOO_LARGE : R_GATHER_TOO_LARGE, stream);
  }
  r.state = S_GATHER;
  r.bufFill = 0;
  return 0;
}

// The payload after the pad length byte (multiple results via globals, no allocation).
let bodyOff: usize = 0;
let bodyLen: i32 = 0;

/** Skips the pad length byte of a PADDED frame (§6.1): returns the pad length, or -1 if there is no room for it. */
function stripPadLength(p: usize, length: i32, flags: i32): i32 {
  bodyOff = p;
  bodyLen = length;
  if ((flags & FLAG_PADDED) == 0) return 0;
  if (length < 1) return -1;
  bodyOff = p + 1;
  bodyLen = length - 1;
  return <i32>load<u8>(p);
}

/** Validates a whole non-DATA payload at p and emits its event. */
function completeFrame(r: Reader, p: usize): i32 {
  const type = r.type, flags = r.flags, stream = r.stream, length = r.length;
  r.state = S_HEADER;
  switch (type) {
    case FRAME_HEADERS: {
      const padLen = stripPadLength(p, length, flags);
      if (padLen < 0) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      let off = bodyOff;
      let n = bodyLen;
      let dep = 0, weight = 0;
      if (flags & FLAG_PRIORITY) {
        if (n < 5) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
        dep = <i32>bswap<u32>(load<u32>(off));
        weight = <i32>load<u8>(off, 4) + 1;
        off += 5;
        n -= 5;
      }
      if (padLen > n) return connError(PROTOCOL_ERROR, R_BAD_PADDING, stream);
      n -= padLen;
      r.contStream = (flags & FLAG_END_HEADERS) ? 0 : stream;
      emit(FRAME_HEADERS, flags, stream, off, n, padLen, dep, weight);
      // A stream cannot depend on itself (§5.3.1): a stream error, after the block is decoded.
      if ((flags & FLAG_PRIORITY) && (dep & 0x7fffffff) == stream) streamError(stream, PROTOCOL_ERROR, R_SELF_DEPENDENCY);
      return 0;
    }
    case FRAME_CONTINUATION:
      r.contStream = (flags & FLAG_END_HEADERS) ? 0 : stream;
      emit(FRAME_CONTINUATION, flags, stream, p, length, 0, 0, length);
      return 0;
    case FRAME_PUSH_PROMISE: {
      const padLen = stripPadLength(p, length, flags);
      if (padLen < 0) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      let off = bodyOff;
      let n = bodyLen;
      if (n < 4) return connError(FRAME_SIZE_ERROR, R_BAD_LENGTH, stream);
      const promised = <i32>(bswap<u32>(load<u32>(off)) & 0x7fffffff);
      off += 4;
      n -= 4;
      if (padLen > n) return connError(PROTOCOL_ERROR, R_BAD_PADDING, stream);
      // Only servers push, on even stream ids (§5.1.1, §6.6).
      if (promised == 0 || (promised & 1) != 0) return connError(PROTOCOL_ERROR, R_BAD_PROMISED_STREAM, stream);
      r.contStream = (flags & FLAG_END_HEADERS) ? 0 : stream;
      emit(FRAME_PUSH_PROMISE, flags, stream, off, n - padLen, padLen, promised, length);
      return 0;
    }
    case FRAME_PRIORITY: {
      const dep = <i32>bswap<u32>(load<u32>(p));
      emit(FRAME_PRIORITY, flags, stream, p, length, 0, dep, <i32>load<u8>(p, 4) + 1);
      if ((dep & 0x7fffffff) == stream) streamError(stream, PROTOCOL_ERROR, R_SELF_DEPENDENCY);
      break;
    }
    case FRAME_RST_STREAM:
      emit(FRAME_RST_STREAM, flags, stream, p, length, <i32>bswap<u32>(load<u32>(p)), 0, length);
      break;
    case FRAME_SETTINGS: {
      // Values outside their range are connection errors (§6.5.2); unknown ids are ignored.
      for (let i = 0; i < length; i += SETTINGS_ENTRY_LENGTH) {
        const id = <i32>bswap<u16>(load<u16>(p + i));
        const v = bswap<u32>(load<u32>(p + i, 2));
        if ((id == SETTINGS_ENABLE_PUSH || id == SETTINGS_ENABLE_CONNECT_PROTOCOL) && v > 1) {
          return connError(PROTOCOL_ERROR, R_BAD_SETTING_VALUE, stream);
        }
        if (id == SETTINGS_INITIAL_WINDOW_SIZE && v > <u32>MAX_WINDOW_SIZE) {
          return connError(FLOW_CONTROL_ERROR, R_BAD_SETTING_VALUE, stream);
        }
        if (id == SETTINGS_MAX_FRAME_SIZE && (v < <u32>DEFAULT_MAX_FRAME_SIZE || v > <u32>MAX_ALLOWED_FRAME_SIZE)) {
          return connError(PROTOCOL_ERROR, R_BAD_SETTING_VALUE, stream);
        }
      }
      emit(FRAME_SETTINGS, flags, stream, p, length, length / SETTINGS_ENTRY_LENGTH, 0, length);
      break;
    }
    case FRAME_PING:
      emit(FRAME_PING, flags, stream, p, length, 0, 0, length);
      break;
    case FRAME_GOAWAY:
      emit(FRAME_GOAWAY, flags, stream, p + 8, length - 8, <i32>(bswap<u32>(load<u32>(p)) & 0x7fffffff),
        <i32>bswap<u32>(load<u32>(p, 4)), length);
      break;
    case FRAME_WINDOW_UPDATE: {
      const inc = <i32>(bswap<u32>(load<u32>(p)) & 0x7fffffff);
      if (inc == 0) {
        if (stream == 0) return connError(PROTOCOL_ERROR, R_ZERO_INCREMENT, stream);
        streamError(stream, PROTOCOL_ERROR, R_ZERO_INCREMENT);
        break;
      }
      emit(FRAME_WINDOW_UPDATE, flags, stream, p, length, inc, 0, length);
      break;
    }
  }
  if (r.contStream < 0) r.contStream = 0;
  return 0;
}

/** Ends a DATA frame: the last event carries END_STREAM and FLAG_FRAME_END. */
function endData(r: Reader, p: usize, pieceEmitted: bool): void {
  const fin = (r.flags & FLAG_END_STREAM) | FLAG_FRAME_END;
  if (pieceEmitted && r.fc == 0) {
    const e = events + <usize>((nev - 1) * EVENT_WORDS * 4);
    store<i32>(e, load<i32>(e, EV_FLAGS * 4) | fin, EV_FLAGS * 4);
  } else {
    emit(FRAME_DATA, (r.flags & ~FLAG_END_STREAM) | fin, r.stream, p, 0, r.fc, r.padLen, r.length);
  }
  r.fc = 0;
  r.state = S_HEADER;
  if (r.contStream < 0) r.contStream = 0;
}

/**
 * Parses [p, p+len). Returns the number of events written at `events`, or -(error code).
 * `consumed` tells how far it got: less than len when the event ring is full or the gather
 * buffer is still referenced by an event (call again with the rest after handling events).
 */
export function readerParse(r: Reader, p: usize, len: i32): i32 {
  const start = p;
  const end = p + <usize>len;
  nev = 0;
  bufUsed = false;
  lastReason = 0;
  lastStream = 0;
  while (true) {
    if (nev > EVENT_CAPACITY - 3) break;
    const state = r.state;
    if (state == S_HEADER) {
      if (p >= end) break;
      let h = p;
      if (r.hdrFill == 0 && end - p >= 9) {
        p += 9;
      } else {
        // Header straddles chunks: collect it in hdr0/hdr1.
        const hb = changetype<usize>(r) + offsetof<Reader>("hdr0");
        const n = min<i32>(9 - r.hdrFill, <i32>(end - p));
        memory.copy(hb + <usize>r.hdrFill, p, <usize>n);
        r.hdrFill += n;
        p += n;
        if (r.hdrFill < 9) break;
        r.hdrFill = 0;
        h = hb;
      }
      r.length = (<i32>load<u8>(h) << 16) | (<i32>load<u8>(h, 1) << 8) | <i32>load<u8>(h, 2);
      r.type = <i32>load<u8>(h, 3);
      r.flags = <i32>load<u8>(h, 4);
      r.stream = <i32>(bswap<u32>(load<u32>(h, 5)) & 0x7fffffff);
      const rc = beginFrame(r);
      if (rc < 0) {
        consumed = <i32>(p - start);
        return rc;
      }
      if (r.state == S_GATHER) {
        if (<usize>r.length <= end - p) {
          const rc2 = completeFrame(r, p); // whole payload here: parse in place
          p += <usize>r.length;
          if (rc2 < 0) {
            consumed = <i32>(p - start);
            return rc2;
          }
        } else {
          r.bufFill = 0; // gathered by the S_GATHER step below
        }
      } else if (r.state == S_DATA && r.length == 0) {
        endData(r, p, false);
      } else if (r.state == S_SKIP && r.length == 0) {
        r.state = S_HEADER;
      }
      continue;
    }
    if (state == S_GATHER) {
      if (p >= end) break;
      // The gather buffer may still back an event of this call: let the host take it first.
      if (r.bufFill == 0 && bufUsed) break;
      const n = min<i32>(r.length - r.bufFill, <i32>(end - p));
      const need = r.bufFill + n;
      if (r.buf == 0 || capacityOf(r.bufSize) < need) {
        // Grow with what arrived (doubling), never straight to the declared length.
        const size = min<i32>(r.length, max<i32>(need, r.buf == 0 ? 4096 : capacityOf(r.bufSize) * 2));
        const nb = grow(r.buf, r.bufSize, size, r.bufFill);
        if (nb == 0) {
          consumed = <i32>(p - start);
          return connError(INTERNAL_ERROR, R_OUT_OF_MEMORY, r.stream);
        }
        r.buf = nb;
        r.bufSize = size;
      }
      memory.copy(r.buf + <usize>r.bufFill, p, <usize>n);
      r.bufFill += n;
      p += <usize>n;
      if (r.bufFill < r.length) break;
      bufUsed = true;
      const rc = completeFrame(r, r.buf);
      if (rc < 0) {
        consumed = <i32>(p - start);
        return rc;
      }
      continue;
    }
    if (state == S_DATA_PAD) {
      if (p >= end) break;
      r.padLen = <i32>load<u8>(p);
      p++;
      r.remaining--;
      r.fc++;
      // Padding as long as the payload or longer is a PROTOCOL_ERROR (§6.1).
      if (r.padLen > r.remaining) {
        consumed = <i32>(p - start);
        return connError(PROTOCOL_ERROR, R_BAD_PADDING, r.stream);
      }
      r.dataLeft = r.remaining - r.padLen;
      r.state = S_DATA;
      if (r.dataLeft == 0 && r.padLen == 0) endData(r, p, false);
      else if (r.dataLeft == 0) r.state = S_DATA_PADDING;
      continue;
    }
    if (state == S_DATA) {
      if (p >= end) break;
      const n = min<i32>(r.dataLeft, <i32>(end - p));
      r.fc += n;
      emit(FRAME_DATA, r.flags & ~FLAG_END_STREAM, r.stream, p, n, r.fc, r.padLen, r.length);
      r.fc = 0;
      p += <usize>n;
      r.dataLeft -= n;
      r.remaining -= n;
      if (r.dataLeft == 0) {
        if (r.remaining == 0) endData(r, p, true);
        else r.state = S_DATA_PADDING;
      }
      continue;
    }
    if (state == S_DATA_PADDING) {
      if (p >= end) break;
      const n = min<i32>(r.remaining, <i32>(end - p));
      p += <usize>n;
      r.remaining -= n;
      r.fc += n;
      if (r.remaining == 0) endData(r, p, false);
      continue;
    }
    // S_SKIP
    if (p >= end) break;
    const n = min<i32>(r.remaining, <i32>(end - p));
    p += <usize>n;
    r.remaining -= n;
    if (r.remaining == 0) r.state = S_HEADER;
  }
  consumed = <i32>(p - start);
  return nev;
}

export function readerSetMaxFrameSize(r: Reader, n: i32): void {
  r.maxFrameSize = n;
}
