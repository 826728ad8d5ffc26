// The error family: every area's errors carry a stable HBONE_* code and keep their messages; H2Error's
// named constructors say what the positional form said; the SOCKS5 reply follows the outbound error's kind.

import { describe, expect, it } from "vitest";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as abi from "../assembly/abi.js";
import {
  CaError,
  ConfigError,
  H2Error,
  HboneError,
  IdentityError,
  OutboundError,
  RuntimeConfigError,
  XdsConvertError,
  type OutboundErrorKind,
} from "../host/errors.js";
import { parseMeshConfig } from "../host/xds/local-format.js";
import { Identity } from "../host/identity/identity.js";
import { CertificateAuthority } from "../host/identity/ca.js";
import { resolveRuntime } from "../host/runtime-config.js";
import { ipFromBytes } from "../host/xds/convert.js";
import { socksReplyOf } from "../host/proxy/socks5.js";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
}

describe("H2Error", () => {
  it("connection errors: GOAWAY code, the detail or the rule broken, the stream that caused it", () => {
    const e = H2Error.connection(abi.PROTOCOL_ERROR, "DATA on an idle stream", 3);
    expect(e).toMatchObject({ code: abi.PROTOCOL_ERROR, reason: abi.R_NONE, streamId: 3, streamLevel: false });
    expect(e.message).toBe("PROTOCOL_ERROR: DATA on an idle stream (stream 3)");
    expect(H2Error.connection(abi.ENHANCE_YOUR_CALM, "PING flood").message).toBe("ENHANCE_YOUR_CALM: PING flood");
    const v = H2Error.violation(abi.ENHANCE_YOUR_CALM, abi.R_HEADER_BLOCK_TOO_LARGE, 5);
    expect(v).toMatchObject({ reason: abi.R_HEADER_BLOCK_TOO_LARGE, streamId: 5, streamLevel: false });
    expect(v.message).toBe("ENHANCE_YOUR_CALM: header block too large (stream 5)");
  });

  it("stream errors: RST_STREAM code on that stream", () => {
    const e = H2Error.stream(7, abi.CONNECT_ERROR, "upstream reset");
    expect(e).toMatchObject({ code: abi.CONNECT_ERROR, streamId: 7, streamLevel: true });
    expect(e.message).toBe("CONNECT_ERROR: upstream reset (stream 7)");
    const v = H2Error.streamViolation(9, abi.FRAME_SIZE_ERROR, abi.R_BAD_LENGTH);
    expect(v).toMatchObject({ code: abi.FRAME_SIZE_ERROR, reason: abi.R_BAD_LENGTH, streamId: 9, streamLevel: true });
    expect(v.message).toBe("FRAME_SIZE_ERROR: invalid frame length for its type (stream 9)");
  });
});

describe("HboneError codes", () => {
  it("a refused config: HBONE_CONFIG_INVALID, located as before", () => {
    const e = thrown(() => parseMeshConfig("workloads: 3\n", "mesh.yaml"));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e).toBeInstanceOf(HboneError);
    expect(e).toMatchObject({ code: "HBONE_CONFIG_INVALID", name: "ConfigError", file: "mesh.yaml", line: 1 });
    expect((e as Error).message).toMatch(/^mesh\.yaml:1:\d+: workloads: /);
  });

  it("a bad variable: RuntimeConfigError, HBONE_CONFIG_INVALID, naming it", () => {
    const e = thrown(() => resolveRuntime({}, { PROXY_MODE: "both" }));
    expect(e).toBeInstanceOf(RuntimeConfigError);
    expect(e).toMatchObject({ code: "HBONE_CONFIG_INVALID", message: "PROXY_MODE: shared or dedicated, not both" });
  });

  it("a bad identity: HBONE_IDENTITY_INVALID", () => {
    const e = thrown(() => Identity.parse("spiffe://cluster.local/ns/a"));
    expect(e).toBeInstanceOf(IdentityError);
    expect(e).toMatchObject({ code: "HBONE_IDENTITY_INVALID", name: "IdentityError" });
  });

  it("unusable CA files: HBONE_CA_INVALID, naming the file", async () => {
    const dir = join(tmpdir(), `hbone-no-ca-${process.pid}`);
    const e = await CertificateAuthority.load(dir).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(CaError);
    expect(e).toMatchObject({ code: "HBONE_CA_INVALID" });
    expect((e as Error).message).toContain(join(dir, ""));
  });

  it("an xDS resource the model cannot hold: HBONE_XDS_INVALID_RESOURCE, field: reason", () => {
    const e = thrown(() => ipFromBytes(new Uint8Array(3), "workload.addresses[0]"));
    expect(e).toBeInstanceOf(XdsConvertError);
    expect(e).toMatchObject({ code: "HBONE_XDS_INVALID_RESOURCE" });
    expect((e as Error).message).toMatch(/^workload\.addresses\[0\]: /);
  });
});

describe("OutboundError", () => {
  /** The SOCKS5 reply (RFC 1928 §6) each kind gets: the codes the proxy has always answered with. */
  const REPLY = {
    closed: 0x01,
    "bad-destination": 0x01,
    "connect-failed": 0x01,
    "proxy-port": 0x02,
    "no-identity": 0x02,
    denied: 0x02,
    "no-endpoint": 0x04,
    "unknown-host": 0x04,
    "no-gateway": 0x04,
    "no-service-port": 0x05,
    refused: 0x05,
    unreachable: 0x05,
  } satisfies Record<OutboundErrorKind, number>;

  it("carries its kind as a stable code, and SOCKS5 maps the kind to its reply", () => {
    for (const [kind, reply] of Object.entries(REPLY) as [OutboundErrorKind, number][]) {
      const e = new OutboundError(kind, "why");
      expect(e).toBeInstanceOf(HboneError);
      expect(e.code).toBe(`HBONE_OUTBOUND_${kind.toUpperCase().replaceAll("-", "_")}`);
      expect(socksReplyOf(e), kind).toBe(reply);
    }
    expect(socksReplyOf(new Error("anything else"))).toBe(0x01);
    const denied = new OutboundError("denied", "HBONE CONNECT a:1 answered 401", { status: 401 });
    expect(denied).toMatchObject({ status: 401, message: "HBONE CONNECT a:1 answered 401", name: "OutboundError" });
  });
});
