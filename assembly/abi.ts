// The ABI shared by the Wasm codec and its TypeScript host: one source of truth for every
// offset, record layout, flag and option that crosses the door (the baggage and LB rooms keep
// theirs in assembly/baggage/abi.ts and assembly/lb/layout.ts; host/wasm/exports.ts types the
// exports). Plain integer constants only, so this file compiles under both asc and tsc
// (the host imports it as ../../assembly/abi.js).

/** Bumped whenever an export's meaning or the event layout changes. */
export const ABI_VERSION = 2;

// Frame types (RFC 9113 §6).
export const FRAME_DATA = 0x0;
export const FRAME_HEADERS = 0x1;
export const FRAME_PRIORITY = 0x2;
export const FRAME_RST_STREAM = 0x3;
export const FRAME_SETTINGS = 0x4;
export const FRAME_PUSH_PROMISE = 0x5;
export const FRAME_PING = 0x6;
export const FRAME_GOAWAY = 0x7;
export const FRAME_WINDOW_UPDATE = 0x8;
export const FRAME_CONTINUATION = 0x9;

// Frame flags.
export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const FLAG_PADDED = 0x8;
export const FLAG_PRIORITY = 0x20;
/** Not on the wire: set on the event that completes a DATA frame (a frame may arrive as several pieces). */
export const FLAG_FRAME_END = 0x100;
/** The wire flags within an event's EV_FLAGS (FLAG_FRAME_END sits above them). */
export const FLAG_WIRE_MASK = 0xff;
/** A stream identifier's 31 bits; bit 31 of a PRIORITY dependency word is the exclusive flag (§6.3). */
export const STREAM_ID_MASK = 0x7fffffff;

// Error codes (RFC 9113 §7).
export const NO_ERROR = 0x0;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const FLOW_CONTROL_ERROR = 0x3;
export const SETTINGS_TIMEOUT = 0x4;
export const STREAM_CLOSED = 0x5;
export const FRAME_SIZE_ERROR = 0x6;
export const REFUSED_STREAM = 0x7;
export const CANCEL = 0x8;
export const COMPRESSION_ERROR = 0x9;
export const CONNECT_ERROR = 0xa;
export const ENHANCE_YOUR_CALM = 0xb;
export const INADEQUATE_SECURITY = 0xc;
export const HTTP_1_1_REQUIRED = 0xd;

// SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441).
export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;
export const SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8;

export const DEFAULT_MAX_FRAME_SIZE = 16384;
export const MAX_ALLOWED_FRAME_SIZE = 16777215;
export const MAX_WINDOW_SIZE = 2147483647;
export const FRAME_HEADER_SIZE = 9;
// Payload lengths of the fixed-size frames (RFC 9113 §6).
export const PRIORITY_LENGTH = 5;
export const RST_STREAM_LENGTH = 4;
export const SETTINGS_ENTRY_LENGTH = 6; // per entry: u16 id, u32 value
export const PING_LENGTH = 8;
export const GOAWAY_MIN_LENGTH = 8; // last stream id, error code; then the debug data
export const WINDOW_UPDATE_LENGTH = 4;
/** Entries one SETTINGS frame may carry (7 ids are defined; nghttp2 allows 32): beyond, ENHANCE_YOUR_CALM. */
export const MAX_SETTINGS_ENTRIES = 32;

// write_settings input: SETTINGS_PAIR_WORDS u32 words per entry (id, then value).
export const SETTINGS_PAIR_WORDS = 2;

// reader_new options (a bit set).
/** PUSH_PROMISE is a protocol error (we never enable push). */
export const READER_NO_PUSH = 0x1;
/** The first frame may be a CONTINUATION (parsing a slice of a connection). */
export const READER_MID_STREAM = 0x2;

// Event records written by reader_parse: EVENT_WORDS i32 words each.
export const EVENT_WORDS = 8;
export const EV_TYPE = 0; // frame type, or EV_STREAM_ERROR
export const EV_FLAGS = 1; // wire flags (| FLAG_FRAME_END for DATA)
export const EV_STREAM = 2; // stream identifier
export const EV_OFF = 3; // payload (DATA data, header block fragment, raw payload) address in Wasm memory
export const EV_LEN = 4; // payload length
export const EV_A = 5; // DATA: flow-controlled bytes; HEADERS/PUSH_PROMISE: pad length; RST_STREAM: code;
//                        SETTINGS: entry count; GOAWAY: last stream id; WINDOW_UPDATE: increment
export const EV_B = 6; // HEADERS/PRIORITY: dependency (bit 31 = exclusive); PUSH_PROMISE: promised id; GOAWAY: code
export const EV_C = 7; // HEADERS/PRIORITY: weight 1..256 (0 = none); otherwise the frame's length field
/** Event kind for a stream error (RFC 9113 §5.4.2): EV_STREAM is the stream, EV_A the error code, EV_B the reason. */
export const EV_STREAM_ERROR = 0x100;

// Why a connection or stream error happened (read with last_error_reason()).
export const R_NONE = 0;
export const R_FRAME_TOO_LARGE = 1;
export const R_STREAM_ID_ZERO = 2;
export const R_STREAM_ID_NONZERO = 3;
export const R_BAD_LENGTH = 4;
export const R_BAD_PADDING = 5;
export const R_ZERO_INCREMENT = 6;
export const R_SETTINGS_ACK_PAYLOAD = 7;
export const R_BAD_SETTING_VALUE = 8;
export const R_UNEXPECTED_CONTINUATION = 9;
export const R_EXPECTED_CONTINUATION = 10;
export const R_BAD_PROMISED_STREAM = 11;
export const R_SELF_DEPENDENCY = 12;
export const R_HEADER_BLOCK_TOO_LARGE = 13;
export const R_OUT_OF_MEMORY = 14; // the allocator's budget (heap_set_limit) is spent
export const R_TOO_MANY_SETTINGS = 15; // more SETTINGS entries in one frame than MAX_SETTINGS_ENTRIES
export const R_GATHER_TOO_LARGE = 16; // a non-DATA frame larger than the reader's gather limit
export const R_HPACK_TRUNCATED = 20;
export const R_HPACK_BAD_HUFFMAN = 21;
export const R_HPACK_BAD_INDEX = 22;
export const R_HPACK_INTEGER_OVERFLOW = 23;
export const R_HPACK_BAD_SIZE_UPDATE = 24;
export const R_HPACK_LIST_TOO_LARGE = 25;
export const R_HPACK_MISSING_SIZE_UPDATE = 26;
export const R_HPACK_AMPLIFICATION = 27; // the list expanded past LIST_WORK_FACTOR x its limit

// HPACK decode output: HDR_WORDS i32 words per header field at hpack_records_ptr(); the
// offsets are relative to hpack_bytes_ptr().
export const HDR_WORDS = 5;
export const HDR_NAME_OFF = 0;
export const HDR_NAME_LEN = 1;
export const HDR_VALUE_OFF = 2;
export const HDR_VALUE_LEN = 3;
export const HDR_FLAGS = 4; // HDR_STATIC_INDEX_MASK: static table index of the name (0 = none); the bits below
export const HDR_STATIC_INDEX_MASK = 0xff;
export const HDR_NEVER_INDEXED = 0x100;
/** The value is the static entry's own (the host has it interned): no bytes were copied. */
export const HDR_STATIC_VALUE = 0x200;

// HPACK encode input (hpack_encode, write_headers), per field: ENC_WORDS u32 words (name length,
// value length, flags), then the name bytes, then the value bytes.
export const ENC_WORDS = 3;
export const ENC_NAME_LEN = 0;
export const ENC_VALUE_LEN = 1;
export const ENC_FLAGS = 2;
export const ENC_SENSITIVE = 0x1; // send as never-indexed
export const ENC_NO_INDEX = 0x2; // send without indexing
/** decode returns this (negated) when the header list exceeds its limit; the table stays in sync. */
export const HPACK_LIST_TOO_LARGE = 0x1000;
/** The dynamic table size both ends start with (RFC 7541 §4.2, SETTINGS_HEADER_TABLE_SIZE's initial value). */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;
