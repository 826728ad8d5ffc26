// hbone-wasm library API.
export { H2Error, errorCodeName } from "./errors.js";
export { parseFrames, FrameWriter, type Frame, type Priority } from "./h2/frames.js";
export { HpackDecoder, HpackEncoder, type HeaderList } from "./h2/hpack.js";
export { FrameReader, getCodec } from "./wasm/codec.js";
export { H2Session, H2Stream, type SessionOptions, type Respond, type Headers } from "./h2/session.js";
export { DEFAULT_LIMITS, type SessionLimits } from "./h2/limits.js";
export * as h2constants from "../assembly/abi.js";
