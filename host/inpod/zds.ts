// ZDS messages (istio.workload.zds, generated in gen/ from proto/): one protobuf message per SEQPACKET datagram.
// Decoding never throws: a datagram the proxy cannot use becomes a reason string for the Ack.

import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Version, WorkloadRequest, WorkloadResponse, ZdsHello } from "./gen/istio/workload/zds/zds.js";

// The generated messages are this module's API too (the test agent encodes requests with them).
export * from "./gen/istio/workload/zds/zds.js";

/** ztunnel reads every ZDS datagram into 1 KiB; larger ones are truncated, hence refused. */
export const ZDS_MAX_MESSAGE = 1024;

/** The proxy's first datagram. */
export function encodeHello(): Uint8Array {
  return ZdsHello.encode({ version: Version.V1 }).finish();
}

/** The answer to every request: empty `error` for success. */
export function encodeAck(error = ""): Uint8Array {
  return WorkloadResponse.encode({ payload: { $case: "ack", ack: { error } } }).finish();
}

export function encodeRequest(req: WorkloadRequest): Uint8Array {
  return WorkloadRequest.encode(req).finish();
}

export type DecodedRequest =
  { ok: true; request: NonNullable<WorkloadRequest["payload"]> } | { ok: false; error: string };

/** Decodes an agent → proxy datagram; a malformed or empty one is `{ok: false}` with the reason. */
export function decodeRequest(data: Uint8Array): DecodedRequest {
  let req: WorkloadRequest;
  try {
    req = WorkloadRequest.decode(new BinaryReader(data));
  } catch (err) {
    return { ok: false, error: `malformed WorkloadRequest: ${(err as Error).message}` };
  }
  if (!req.payload)
    return { ok: false, error: "WorkloadRequest without a known payload (add, del, keep, snapshot_sent)" };
  return { ok: true, request: req.payload };
}

export type DecodedResponse = { ok: true; error: string } | { ok: false; error: string };

/** Decodes a proxy → agent datagram (the test agent's side): the Ack's error string. */
export function decodeAck(data: Uint8Array): DecodedResponse {
  try {
    const res = WorkloadResponse.decode(new BinaryReader(data));
    if (res.payload?.$case !== "ack") return { ok: false, error: "WorkloadResponse without an ack" };
    return { ok: true, error: res.payload.ack.error };
  } catch (err) {
    return { ok: false, error: `malformed WorkloadResponse: ${(err as Error).message}` };
  }
}

/** Decodes the proxy's hello (the test agent's side); null when it is not a V1 hello. */
export function decodeHello(data: Uint8Array): ZdsHello | null {
  try {
    const h = ZdsHello.decode(new BinaryReader(data));
    return h.version === Version.V1 ? h : null;
  } catch {
    return null;
  }
}
