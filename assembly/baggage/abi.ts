// The baggage codec's ABI, shared by assembly/baggage/ and host/baggage.ts (imported there as
// ../assembly/baggage/abi.js): modes, limits, errors, and the input and result layouts. Plain integer
// constants only, so it compiles under asc and tsc.

// Decode modes (baggage_decode's first argument).
export const BAGGAGE_MODE_ZTUNNEL = 0;
export const BAGGAGE_MODE_W3C = 1;

/**
 * Most input either mode takes: the bytes of all header lines plus one per line. ztunnel has no
 * limit of its own; this one bounds a hostile header's cost (the HTTP/2 header list limit is 64 KiB
 * too). The host checks it before copying, so an oversized header never grows Wasm memory.
 */
export const BAGGAGE_MAX_INPUT = 65536;
/** ztunnel mode: most comma-separated pieces processed over all lines (ztunnel has no limit). */
export const BAGGAGE_ZTUNNEL_MAX_MEMBERS = 1024;
/** W3C mode: list-members kept over all lines (the spec's minimum to propagate); later ones are dropped. */
export const BAGGAGE_W3C_MAX_MEMBERS = 64;
/** W3C mode: bytes kept, counted as the kept members' text plus one comma between members. */
export const BAGGAGE_W3C_MAX_BYTES = 8192;

// baggage_decode errors (returned negated).
export const BAGGAGE_E_INVALID = 1; // W3C: a list-member breaks the grammar
export const BAGGAGE_E_NON_ASCII = 2; // ztunnel: a byte that is not visible ASCII, space or tab
export const BAGGAGE_E_TOO_LARGE = 3; // over BAGGAGE_MAX_INPUT, or (ztunnel) BAGGAGE_ZTUNNEL_MAX_MEMBERS

// baggage_decode input: one u32 byte length per line (`lines` words), then the lines' bytes back to back.

// The metadata fields, in ztunnel's emission order. Encode input: one u32 length per slot, then the bytes
// (from BAGGAGE_ENC_TEXT).
export const BAGGAGE_SLOT_CLUSTER = 0;
export const BAGGAGE_SLOT_NAMESPACE = 1;
export const BAGGAGE_SLOT_WORKLOAD = 2;
export const BAGGAGE_SLOT_SERVICE = 3;
export const BAGGAGE_SLOT_REVISION = 4;
export const BAGGAGE_SLOT_REGION = 5;
export const BAGGAGE_SLOT_ZONE = 6;
export const BAGGAGE_SLOTS = 7;
/** Byte offset of the fields' text in baggage_encode's input. */
export const BAGGAGE_ENC_TEXT = BAGGAGE_SLOTS * 4;

// Workload types: the <type> of k8s.<type>.name.
export const BAGGAGE_TYPE_NONE = 0;
export const BAGGAGE_TYPE_DEPLOYMENT = 1;
export const BAGGAGE_TYPE_CRONJOB = 2;
export const BAGGAGE_TYPE_POD = 3;
export const BAGGAGE_TYPE_JOB = 4;

// Decode result (i32 words at baggage_result_ptr()): per slot, the record holding its value or -1;
// then the workload type, then 1 if W3C members were dropped over the limits; then the records.
export const BAGGAGE_RES_SLOT_RECORD = 0; // word BAGGAGE_RES_SLOT_RECORD + slot
export const BAGGAGE_RES_TYPE = 7;
export const BAGGAGE_RES_TRUNCATED = 8;
export const BAGGAGE_RES_RECORDS = 12;

// Records: REC_WORDS i32 words each. ztunnel mode: record k holds slot k's value (raw).
// W3C mode: one record per kept list-member, in order. Offsets are addresses in Wasm memory.
export const BAGGAGE_REC_WORDS = 7;
export const BAGGAGE_REC_KEY_OFF = 0;
export const BAGGAGE_REC_KEY_LEN = 1;
export const BAGGAGE_REC_VALUE_OFF = 2;
export const BAGGAGE_REC_VALUE_LEN = 3;
export const BAGGAGE_REC_PROPS_OFF = 4; // W3C properties: the raw text after the first ';', OWS-trimmed
export const BAGGAGE_REC_PROPS_LEN = 5; // -1: no properties
export const BAGGAGE_REC_FLAGS = 6;
/** The value was percent-decoded: its bytes are UTF-8 (else they are the header's ASCII bytes). */
export const BAGGAGE_REC_DECODED = 1;
