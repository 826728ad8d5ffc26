// hbone-wasm library API.
export { H2Error, errorCodeName } from "./errors.js";
export { parseFrames, FrameWriter, type Frame, type Priority } from "./h2/frames.js";
export { HpackDecoder, HpackEncoder, type HeaderList } from "./h2/hpack.js";
export { FrameReader, getCodec } from "./wasm/codec.js";
export * as h2constants from "../assembly/abi.js";
