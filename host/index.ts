// hbone-wasm library API.

// The node proxy, embeddable: open tunnels (mesh.connect) and accept them in-process (mesh.accept).
export { startProxy, Mesh, NodeProxy, type ProxyOptions, type ForwardListener, type Addresses } from "./app.js";
export type { TunnelInfo, Acceptor } from "./proxy/inbound.js";
export { OutboundError } from "./proxy/outbound.js";
export { socks5Connect } from "./socks5-client.js";
// Node apps over the mesh: mesh.agent(), mesh.httpsAgent(), mesh.dispatcher(), mesh.accept(port, server).
export { asSocket, type TunnelSocket } from "./http/socket.js";
export type { MeshDispatcherOptions } from "./http/agent.js";
// Every environment variable, port, path and default the proxy reads (deploy/ is checked against it).
export {
  resolveRuntime,
  ENV,
  PORTS,
  PATHS,
  DEFAULTS,
  CAPABILITIES,
  NODE_FLAGS,
  type RuntimeConfig,
} from "./runtime-config.js";

// Live config and certificates from istiod.
export { XdsClient, type XdsClientOptions } from "./xds/client.js";
export { IstioCaClient, type IstioCaClientOptions } from "./identity/istio-ca.js";

// Config model (ztunnel's local format).
export { parseMeshConfig, ConfigError } from "./xds/local-format.js";
export type { MeshConfig, Workload, Service } from "./model/index.js";

// Identities and certificates.
export { Identity } from "./identity/identity.js";
export { createPluginCa, CertificateAuthority, type WorkloadCertificate } from "./identity/ca.js";
export { createHboneServer, connectHbone } from "./tls/contexts.js";

// The HTTP/2 engine and the Wasm codec.
export { H2Session, H2Stream, type SessionOptions, type Respond, type Headers } from "./h2/session.js";
export { DEFAULT_LIMITS, type SessionLimits } from "./h2/limits.js";
export { H2Error, errorCodeName } from "./errors.js";
// The error family: every error but H2Error is an HboneError with a stable string `code` (HBONE_*).
export {
  HboneError,
  RuntimeConfigError,
  IdentityError,
  IdentityDroppedError,
  CaError,
  IstioCaError,
  XdsError,
  XdsConvertError,
  type HboneErrorCode,
  type OutboundErrorKind,
} from "./errors.js";
export { parseFrames, FrameWriter, type Frame, type Priority } from "./h2/frames.js";
export { HpackDecoder, HpackEncoder, type HeaderList } from "./h2/hpack.js";
export { FrameReader, getCodec } from "./wasm/codec.js";
export * as h2constants from "../assembly/abi.js";
export { setLevel as setLogLevel, setSink as setLogSink } from "./log.js";
