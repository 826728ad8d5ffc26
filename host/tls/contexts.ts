// TLS for HBONE as ztunnel speaks it: TLS 1.3 only with the AES-GCM suites, ALPN h2, mandatory client
// certificates chained to the mesh roots, SPIFFE identities checked on both sides, no SNI, no resumption.
// The server admits connections through an Admission (handshake timeout, caps, shedding: admission.ts).

import type net from "node:net";
import type tls from "node:tls";
import { nodeTls } from "./node-tls.js";
import type { Duplex } from "node:stream";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { logger } from "../log.js";
import { peerIdentities, verifyClientTrustDomain, verifyServerIdentity } from "./verify.js";
import { Admission, defaultAdmissionLimits, effectiveLimits, type AdmissionLimits } from "./admission.js";

const log = logger("tls");

// ztunnel's suites; TLS 1.3 names only, so Node also disables every TLS 1.2 cipher.
const CIPHERS = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256";
const ALPN = ["h2"];
const DEFAULT_TIMEOUT_MS = 10_000; // ztunnel's connect timeout

/** HBONE's TLS parameters with a workload certificate: TLS 1.3 only, the mesh roots as trust anchors. */
export function contextOptions(cert: WorkloadCertificate): tls.SecureContextOptions {
  return {
    key: cert.keyPem,
    cert: cert.certChainPem,
    ca: cert.rootsPem,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ciphers: CIPHERS,
  };
}

/**
 * One client context per certificate: tls.connect given key/cert/ca options builds an SSL_CTX (key, chain and roots
 * parsed again) for every connection, which each pooled HBONE connection would keep for its whole life (tens of KB
 * of RSS per connection; an idle tunnel's share at 100 streams each). A renewed certificate is a new object: a new
 * context.
 */
const clientContexts = new WeakMap<WorkloadCertificate, { pems: string[]; ctx: tls.SecureContext }>();
function clientContext(cert: WorkloadCertificate): tls.SecureContext {
  const pems = [cert.keyPem, cert.certChainPem, cert.rootsPem];
  const known = clientContexts.get(cert);
  if (known && known.pems.every((p, i) => p === pems[i])) return known.ctx;
  const ctx = nodeTls.createSecureContext(contextOptions(cert));
  clientContexts.set(cert, { pems, ctx });
  return ctx;
}

/**
 * Node keeps a TLS socket's ALPN list (its own copy, either side) in its options for the socket's life: a slice of
 * Node's 8 KB buffer pool, which pins a whole pool slab per HBONE connection. Node reads it only to start the
 * handshake (TLSSocket._init), which is over.
 */
function releaseAlpnList(socket: tls.TLSSocket): void {
  const o = (socket as unknown as { _tlsOptions?: { ALPNProtocols?: unknown } })._tlsOptions;
  if (o) o.ALPNProtocols = undefined;
}

/** OpenSSL's short reason ("certificate has expired", "peer did not return a certificate") over its long message. */
function reasonOf(err: Error): string {
  return (err as Error & { reason?: string }).reason || err.message;
}

export type HboneServer = tls.Server & {
  setCertificate(cert: WorkloadCertificate): void;
  refused: number;
  readonly admission: Admission;
};

/** The TCP socket under a server-side TLSSocket (Node keeps it as `_parent`; the socket itself if absent). */
function rawOf(socket: tls.TLSSocket): net.Socket {
  return (socket as unknown as { _parent?: net.Socket | null })._parent ?? socket;
}

/** A TLS server for HBONE (:15008): TLS 1.3, ALPN h2, client certs required and chained to the roots, peers outside
 *  `trustDomain` refused (socket destroyed, log line with the reason and remote address, rate-limited). `onSecure`
 *  gets only accepted sockets with their verified peer identity. Keeps serving with the newest certificate: call
 *  server.setCertificate(cert) (uses setSecureContext) — existing connections are not dropped. `limits` (defaults:
 *  defaultAdmissionLimits) bound handshakes and connections; the descriptor limit clamps them. */
export function createHboneServer(
  opts: { certificate: WorkloadCertificate; trustDomain: string; limits?: Partial<AdmissionLimits> },
  onSecure: (socket: tls.TLSSocket, peer: Identity) => void,
): HboneServer {
  const limits = effectiveLimits({ ...defaultAdmissionLimits(), ...opts.limits });
  const server = nodeTls.createServer({
    ...contextOptions(opts.certificate),
    requestCert: true,
    // The chain is still verified against the roots, but judged in secureConnection: when Node rejects a client
    // itself it destroys the socket before saying why, losing the reason and the remote address.
    rejectUnauthorized: false,
    ALPNProtocols: ALPN,
    handshakeTimeout: limits.handshakeTimeoutMs,
  }) as HboneServer;
  server.refused = 0;
  const admission = new Admission(limits);
  Object.defineProperty(server, "admission", { value: admission });
  // Runs after tls.Server's own listener has wrapped the socket: shedding destroys the TCP socket under it.
  server.on("connection", (raw: net.Socket) => admission.admit(raw));
  // accept() failing (EMFILE: out of descriptors) must not take the process down; the listener keeps accepting.
  server.on("error", (err) => log.limited.error("HBONE listener error", { error: err }));

  // `kind` (an error code or a fixed name) gives each kind of refusal its own log budget.
  const refuse = (socket: tls.TLSSocket, reason: string, kind: string) => {
    server.refused++;
    admission.settled(rawOf(socket));
    const remote = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
    log.limited.warn("inbound HBONE TLS refused", { reason, remote, limitKey: kind });
    socket.destroy();
  };
  // Handshake failures inside OpenSSL: wrong TLS version, ALPN mismatch, not TLS at all, client gone, timed out.
  server.on("tlsClientError", (err, socket) => {
    if (admission.wasShed(rawOf(socket))) return socket.destroy(); // logged when shed
    refuse(socket, reasonOf(err), (err as Error & { code?: string }).code ?? "tls");
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    admission.settled(rawOf(socket));
    releaseAlpnList(socket);
    // A client offering no ALPN at all gets through OpenSSL's ALPN check.
    if (socket.alpnProtocol !== "h2") return refuse(socket, "client did not negotiate ALPN h2", "alpn");
    const cert = socket.getPeerCertificate();
    if (!socket.authorized && cert.raw) {
      // Node's verify code, e.g. CERT_HAS_EXPIRED or UNABLE_TO_GET_ISSUER_CERT_LOCALLY (typed wrongly as Error).
      const code = socket.authorizationError as unknown as string;
      return refuse(socket, `client certificate rejected: ${code}`, code);
    }
    // Also refuses a client that sent no certificate.
    const { identity, reason } = verifyClientTrustDomain(cert, opts.trustDomain);
    if (!identity) return refuse(socket, reason ?? "no client identity", "identity");
    onSecure(socket, identity);
  });
  server.setCertificate = (cert) => server.setSecureContext(contextOptions(cert));
  return server;
}

/** Opens an HBONE client TLS connection: TLS 1.3, ALPN h2 (fails if the server did not pick h2), no SNI, client cert,
 *  server verified against the roots and `expected` identities. `socket` lets the TLS run over an existing Duplex
 *  (double HBONE: inner TLS inside an H2Stream). Rejects with an Error whose message names the reason; logs it. */
export function connectHbone(opts: {
  host: string;
  port: number;
  certificate: WorkloadCertificate;
  expected: Identity[];
  socket?: Duplex;
  timeoutMs?: number;
}): Promise<{ socket: tls.TLSSocket; peer: Identity }> {
  const target = `${opts.host}:${opts.port}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    // No `servername`: Node then sends no SNI, whatever the host is.
    const socket = nodeTls.connect({
      host: opts.host,
      port: opts.port,
      socket: opts.socket,
      secureContext: clientContext(opts.certificate),
      ALPNProtocols: ALPN,
      rejectUnauthorized: true,
      // Node's hostname check fails SPIFFE-only certificates; the identity is checked on secureConnect instead.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => fail(new Error(`handshake timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      done();
      const reason = reasonOf(err);
      log.limited.warn("outbound HBONE TLS failed", { reason, target });
      socket.destroy();
      reject(new Error(`HBONE TLS to ${target}: ${reason}`));
    };
    const closed = () => fail(new Error("connection closed during the handshake"));
    const done = () => {
      clearTimeout(timer);
      socket.off("error", fail);
      socket.off("close", closed);
      socket.off("secureConnect", secure);
    };
    const secure = () => {
      // The chain is verified by now (rejectUnauthorized); the identity is ours to check.
      if (socket.alpnProtocol !== "h2") return fail(new Error("server did not negotiate ALPN h2"));
      const cert = socket.getPeerCertificate();
      const reason = verifyServerIdentity(cert, opts.expected);
      if (reason !== null) return fail(new Error(reason));
      const peer = peerIdentities(cert).find((id) => opts.expected.some((e) => e.equals(id)))!;
      releaseAlpnList(socket);
      done();
      resolve({ socket, peer });
    };
    socket.on("error", fail);
    socket.on("close", closed);
    socket.on("secureConnect", secure);
  });
}
