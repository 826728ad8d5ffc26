// host/sys: every native call of the proxy (koffi → libc), small and typed. See each module's header.

export { SysError, isSysError, hintFor, errnoName } from "./errors.js";
export { nativeAvailable } from "./libc.js";
export { netnsPath, openNetns, inNetns, assertNetns, netnsId, isHomeNetns } from "./netns.js";
export {
  PROXY_MARK,
  createListenSocket,
  createListenSocketIn,
  adoptServer,
  createDialSocket,
  dialFrom,
  setMark,
  getMark,
  getReusePort,
  setTransparent,
  fdOf,
  originalDestination,
  pendingSocketError,
  hiddenReset,
  localAddress,
  type ListenSocketOptions,
  type DialSocketOptions,
  type FfiSocket,
  type OriginalDestination,
} from "./socket.js";
export { SeqpacketSocket, SeqpacketServer, watchReadable, type Datagram, type Readiness } from "./seqpacket.js";
export type { SockAddr } from "./sockaddr.js";
export { missingCapabilities, effectiveCapabilities, INPOD_CAPABILITIES, type Capability } from "./caps.js";
