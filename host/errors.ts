// The errors of hbone-wasm, in one family. HboneError is the base: a stable string `code`
// (HBONE_<AREA>_<WHAT>) that callers and log queries can match, whatever the message says (undici's
// UndiciError shape). Config, identity, CA, xDS and outbound errors extend it. H2Error is the HTTP/2
// engine's: its `code` is the numeric error code (RFC 9113 §7) the GOAWAY or RST_STREAM carries, and
// it is built with named constructors (connection / stream errors, as h2's library_go_away /
// library_reset); `reason` says which rule the peer broke.

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
  /** Which rule was broken (abi.R_*; R_NONE when `detail` says it). */
  readonly reason: number;
  /** The stream concerned; 0 for the connection. */
  readonly streamId: number;
  /** True when only the stream fails (RST_STREAM), false for the connection (GOAWAY). */
  readonly streamLevel: boolean;

  /** Prefer the named constructors below. */
  constructor(code: number, reason: number, streamId = 0, streamLevel = false, detail?: string) {
    super(`${errorCodeName(code)}: ${detail ?? reasonText(reason)}${streamId ? ` (stream ${streamId})` : ""}`);
    this.name = "H2Error";
    this.code = code;
    this.reason = reason;
    this.streamId = streamId;
    this.streamLevel = streamLevel;
  }

  /** A connection error (GOAWAY `code`) that `detail` explains; `streamId` names the stream that caused it, if any. */
  static connection(code: number, detail: string, streamId = 0): H2Error {
    return new H2Error(code, abi.R_NONE, streamId, false, detail);
  }

  /** A connection error for a broken rule (abi.R_*: the codec's, or the session's own), worded by reasonText. */
  static violation(code: number, reason: number, streamId = 0): H2Error {
    return new H2Error(code, reason, streamId, false);
  }

  /** A stream error (RST_STREAM `code` on `streamId`) that `detail` explains. */
  static stream(streamId: number, code: number, detail: string): H2Error {
    return new H2Error(code, abi.R_NONE, streamId, true, detail);
  }

  /** A stream error for a broken rule (the codec's EV_STREAM_ERROR events). */
  static streamViolation(streamId: number, code: number, reason: number): H2Error {
    return new H2Error(code, reason, streamId, true);
  }
}

/** The stable codes of the HboneError family. */
export type HboneErrorCode =
  | "HBONE_CONFIG_INVALID"
  | IdentityErrorCode
  | CaErrorCode
  | XdsErrorCode
  | `HBONE_OUTBOUND_${Uppercase<Snake<OutboundErrorKind>>}`;

type Snake<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${Snake<B>}` : S;

/** The base of every hbone-wasm error but H2Error: `code` is stable, the message is for people. */
export class HboneError extends Error {
  readonly code: HboneErrorCode;

  constructor(code: HboneErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HboneError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Config

export interface ConfigErrorLocation {
  file?: string;
  line?: number;
  column?: number;
  field?: string;
}

/** A config the proxy refuses, located: `file:line:column: field: reason` (HBONE_CONFIG_INVALID). */
export class ConfigError extends HboneError {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly field?: string;
  /** The reason alone, without the location. */
  readonly reason: string;

  constructor(reason: string, loc: ConfigErrorLocation = {}) {
    const where = loc.line !== undefined ? `${loc.file ?? "<config>"}:${loc.line}:${loc.column ?? 1}` : loc.file;
    const parts = [where, loc.field, reason].filter((p): p is string => !!p);
    super("HBONE_CONFIG_INVALID", parts.join(": "));
    this.name = "ConfigError";
    this.reason = reason;
    if (loc.file !== undefined) this.file = loc.file;
    if (loc.line !== undefined) this.line = loc.line;
    if (loc.column !== undefined) this.column = loc.column;
    if (loc.field !== undefined) this.field = loc.field;
  }
}

/** A bad flag or environment variable: the message names it and its value (HBONE_CONFIG_INVALID). */
export class RuntimeConfigError extends ConfigError {
  constructor(message: string) {
    super(message);
    this.name = "RuntimeConfigError";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Identity and certificates

export type IdentityErrorCode =
  /** Not a valid SPIFFE identity, trust domain or path. */
  | "HBONE_IDENTITY_INVALID"
  /** A certificate request was dropped: its identity left the node. */
  | "HBONE_IDENTITY_DROPPED"
  /** The certificate source (SecretManager, WorkloadCertificates) is closed. */
  | "HBONE_IDENTITY_CLOSED";

export class IdentityError extends HboneError {
  declare readonly code: IdentityErrorCode;

  constructor(message: string, code: IdentityErrorCode = "HBONE_IDENTITY_INVALID") {
    super(code, message);
    this.name = "IdentityError";
  }
}

/** A certificate request is dropped from the queue because its identity left the node. */
export class IdentityDroppedError extends IdentityError {
  constructor(message: string) {
    super(message, "HBONE_IDENTITY_DROPPED");
    this.name = "IdentityDroppedError";
  }
}

export type CaErrorCode =
  /** CA material (root, intermediate, chain, key, roots PEM) that cannot be used. */
  | "HBONE_CA_INVALID"
  /** Writing CA files would replace a different existing file. */
  | "HBONE_CA_EXISTS"
  /** A signing request the CA cannot serve (an empty validity). */
  | "HBONE_CA_BAD_REQUEST"
  /** A remote CA call (Istio CreateCertificate) failed, or its answer was refused. */
  | "HBONE_CA_REQUEST_FAILED";

export class CaError extends HboneError {
  declare readonly code: CaErrorCode;

  constructor(message: string, code: CaErrorCode = "HBONE_CA_INVALID", options?: ErrorOptions) {
    super(code, message, options);
    this.name = "CaError";
  }
}

/** A CreateCertificate call that failed, or whose answer was refused (HBONE_CA_REQUEST_FAILED). */
export class IstioCaError extends CaError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "HBONE_CA_REQUEST_FAILED", options);
    this.name = "IstioCaError";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// xDS

export type XdsErrorCode =
  /** A resource the model cannot hold. */
  | "HBONE_XDS_INVALID_RESOURCE"
  /** The control plane did not ACK every type in time. */
  | "HBONE_XDS_NOT_READY"
  /** The client closed before it was ready. */
  | "HBONE_XDS_CLOSED";

export class XdsError extends HboneError {
  declare readonly code: XdsErrorCode;

  constructor(message: string, code: XdsErrorCode) {
    super(code, message);
    this.name = "XdsError";
  }
}

/** A resource the model cannot hold. `message` is `field: reason` (HBONE_XDS_INVALID_RESOURCE). */
export class XdsConvertError extends XdsError {
  constructor(message: string) {
    super(message, "HBONE_XDS_INVALID_RESOURCE");
    this.name = "XdsConvertError";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Outbound

/** Why a destination could not be reached; host/proxy/socks5.ts maps each to its SOCKS5 reply. */
export type OutboundErrorKind =
  /** The proxy is closed. */
  | "closed"
  /** The destination is not host:port. */
  | "bad-destination"
  /** The destination is one of this proxy's own ports (ztunnel's SelfCall). */
  | "proxy-port"
  /** A service without the port asked for. */
  | "no-service-port"
  /** A service with no healthy endpoint. */
  | "no-endpoint"
  /** A hostname that is no service. */
  | "unknown-host"
  /** An endpoint on another network with no (reachable, identified) gateway. */
  | "no-gateway"
  /** Double HBONE to a service without subjectAltNames: the far end could not be verified. */
  | "no-identity"
  /** The HBONE CONNECT could not be sent (the session failed before an answer). */
  | "connect-failed"
  /** The destination's policy denied the tunnel (401). */
  | "denied"
  /** The far side answered the CONNECT with another status, or reset it right after its 200. */
  | "refused"
  /** The TCP, TLS or inner HBONE connection to the hop or target failed. */
  | "unreachable";

export class OutboundError extends HboneError {
  /** The HTTP status the CONNECT was answered with, when that was the failure. */
  readonly status?: number;

  constructor(
    readonly kind: OutboundErrorKind,
    message: string,
    opts: { status?: number; cause?: unknown } = {},
  ) {
    super(
      `HBONE_OUTBOUND_${kind.toUpperCase().replaceAll("-", "_")}` as HboneErrorCode,
      message,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = "OutboundError";
    if (opts.status !== undefined) this.status = opts.status;
  }
}

/** Runs `init` (t's start-up); on failure closes what it had set up (listeners, children, namespaces), rethrows. */
export async function initOrClose<T extends { close(): Promise<void> }>(t: T, init: () => Promise<void>): Promise<T> {
  try {
    await init();
  } catch (err) {
    await t.close();
    throw err;
  }
  return t;
}
