// Errors of hbone-wasm. H2Error carries the numeric HTTP/2 error code (RFC 9113 §7) that
// closes the connection or stream; `reason` says which rule the peer broke.

import * as abi from "../assembly/abi.js";

const CODE_NAMES: Record<number, string> = {
  [abi.NO_ERROR]: "NO_ERROR",
  [abi.PROTOCOL_ERROR]: "PROTOCOL_ERROR",
  [abi.INTERNAL_ERROR]: "INTERNAL_ERROR",
  [abi.FLOW_CONTROL_ERROR]: "FLOW_CONTROL_ERROR",
  [abi.SETTINGS_TIMEOUT]: "SETTINGS_TIMEOUT",
  [abi.STREAM_CLOSED]: "STREAM_CLOSED",
  [abi.FRAME_SIZE_ERROR]: "FRAME_SIZE_ERROR",
  [abi.REFUSED_STREAM]: "REFUSED_STREAM",
  [abi.CANCEL]: "CANCEL",
  [abi.COMPRESSION_ERROR]: "COMPRESSION_ERROR",
  [abi.CONNECT_ERROR]: "CONNECT_ERROR",
  [abi.ENHANCE_YOUR_CALM]: "ENHANCE_YOUR_CALM",
  [abi.INADEQUATE_SECURITY]: "INADEQUATE_SECURITY",
  [abi.HTTP_1_1_REQUIRED]: "HTTP_1_1_REQUIRED",
};

const REASONS: Record<number, string> = {
  [abi.R_FRAME_TOO_LARGE]: "frame larger than SETTINGS_MAX_FRAME_SIZE",
  [abi.R_STREAM_ID_ZERO]: "frame type requires a stream identifier",
  [abi.R_STREAM_ID_NONZERO]: "frame type must be on stream 0",
  [abi.R_BAD_LENGTH]: "invalid frame length for its type",
  [abi.R_BAD_PADDING]: "padding exceeds the frame payload",
  [abi.R_ZERO_INCREMENT]: "WINDOW_UPDATE with a zero increment",
  [abi.R_SETTINGS_ACK_PAYLOAD]: "SETTINGS ACK with a payload",
  [abi.R_BAD_SETTING_VALUE]: "SETTINGS value out of range",
  [abi.R_UNEXPECTED_CONTINUATION]: "CONTINUATION without a preceding HEADERS",
  [abi.R_EXPECTED_CONTINUATION]: "header block interrupted before END_HEADERS",
  [abi.R_BAD_PROMISED_STREAM]: "invalid or unexpected PUSH_PROMISE",
  [abi.R_SELF_DEPENDENCY]: "stream depends on itself",
  [abi.R_HEADER_BLOCK_TOO_LARGE]: "header block too large",
  [abi.R_OUT_OF_MEMORY]: "codec memory budget exhausted",
  [abi.R_TOO_MANY_SETTINGS]: "too many entries in one SETTINGS frame",
  [abi.R_GATHER_TOO_LARGE]: "frame larger than its type needs",
  [abi.R_HPACK_TRUNCATED]: "HPACK: truncated header block",
  [abi.R_HPACK_BAD_HUFFMAN]: "HPACK: invalid Huffman code or padding",
  [abi.R_HPACK_BAD_INDEX]: "HPACK: index out of range",
  [abi.R_HPACK_INTEGER_OVERFLOW]: "HPACK: integer overflow",
  [abi.R_HPACK_BAD_SIZE_UPDATE]: "HPACK: invalid dynamic table size update",
  [abi.R_HPACK_LIST_TOO_LARGE]: "HPACK: header list larger than the limit",
  [abi.R_HPACK_MISSING_SIZE_UPDATE]: "HPACK: expected a dynamic table size update",
  [abi.R_HPACK_AMPLIFICATION]: "HPACK: header list expands far beyond the limit",
};

export function errorCodeName(code: number): string {
  return CODE_NAMES[code] ?? `0x${code.toString(16)}`;
}

export function reasonText(reason: number): string {
  return REASONS[reason] ?? "protocol violation";
}

export class H2Error extends Error {
  /** The HTTP/2 error code (RFC 9113 §7). */
  readonly code: number;
  /** Which rule was broken (abi.R_*). */
  readonly reason: number;
  /** The stream concerned; 0 for the connection. */
  readonly streamId: number;
  /** True when only the stream fails (RST_STREAM), false for the connection (GOAWAY). */
  readonly streamLevel: boolean;

  constructor(code: number, reason: number, streamId = 0, streamLevel = false, detail?: string) {
    super(`${errorCodeName(code)}: ${detail ?? reasonText(reason)}${streamId ? ` (stream ${streamId})` : ""}`);
    this.name = "H2Error";
    this.code = code;
    this.reason = reason;
    this.streamId = streamId;
    this.streamLevel = streamLevel;
  }
}
