// SOCKS5 listener for outbound traffic (RFC 1928): no authentication, CONNECT only, with IPv4,
// IPv6 or a domain name. ztunnel offers it on 127.0.0.1:15080 (UNSTABLE_ENABLE_SOCKS5).

import net from "node:net";
import { logger } from "../log.js";
import { OutboundError, type OutboundErrorKind } from "../errors.js";

const log = logger("socks5");

export interface Destination {
  host: string; // an IP address or a hostname
  port: number;
}

/** Reply codes (RFC 1928 §6). */
export const SOCKS_OK = 0x00;
export const SOCKS_GENERAL_FAILURE = 0x01;
export const SOCKS_NOT_ALLOWED = 0x02;
export const SOCKS_HOST_UNREACHABLE = 0x04;
export const SOCKS_CONNECTION_REFUSED = 0x05;
export const SOCKS_COMMAND_NOT_SUPPORTED = 0x07;
export const SOCKS_ADDRESS_NOT_SUPPORTED = 0x08;

/** The reply for each reason an outbound tunnel fails. */
const REPLY_OF: Record<OutboundErrorKind, number> = {
  closed: SOCKS_GENERAL_FAILURE,
  "bad-destination": SOCKS_GENERAL_FAILURE,
  "connect-failed": SOCKS_GENERAL_FAILURE,
  "proxy-port": SOCKS_NOT_ALLOWED,
  "no-identity": SOCKS_NOT_ALLOWED,
  denied: SOCKS_NOT_ALLOWED,
  "no-endpoint": SOCKS_HOST_UNREACHABLE,
  "unknown-host": SOCKS_HOST_UNREACHABLE,
  "no-gateway": SOCKS_HOST_UNREACHABLE,
  "no-service-port": SOCKS_CONNECTION_REFUSED,
  refused: SOCKS_CONNECTION_REFUSED,
  unreachable: SOCKS_CONNECTION_REFUSED,
};

/** The SOCKS reply for a failed connect: by the OutboundError's kind, else a general failure. */
export function socksReplyOf(err: unknown): number {
  return err instanceof OutboundError ? REPLY_OF[err.kind] : SOCKS_GENERAL_FAILURE;
}

/**
 * Handles one client: after the handshake calls `connect(dest, socket)`, which resolves with a
 * SOCKS reply code; on SOCKS_OK, `start` runs once the success reply is written (the socket is
 * then the caller's) — or at once when the client has already gone, so the caller's pipe closes
 * the tunnel it opened (a client that resets mid-connect must not leave it open).
 */
export type SocksConnect = (dest: Destination, socket: net.Socket) => Promise<{ code: number; start?: () => void }>;

/** Parses the handshake and request from `buf`; returns what is missing or the result. */
function parse(
  buf: Buffer,
):
  | { need: true }
  | { error: number; stage: "greeting" | "request" }
  | { dest: Destination; used: number; greetingLen: number } {
  if (buf.length < 2) return { need: true };
  if (buf[0] !== 5) return { error: SOCKS_GENERAL_FAILURE, stage: "greeting" };
  const greetingLen = 2 + buf[1];
  if (buf.length < greetingLen) return { need: true };
  if (!buf.subarray(2, greetingLen).includes(0)) return { error: 0xff, stage: "greeting" };
  const r = buf.subarray(greetingLen);
  if (r.length < 5) return { need: true };
  if (r[0] !== 5) return { error: SOCKS_GENERAL_FAILURE, stage: "request" };
  if (r[1] !== 1) return { error: SOCKS_COMMAND_NOT_SUPPORTED, stage: "request" };
  let host: string, off: number;
  switch (r[3]) {
    case 1:
      if (r.length < 10) return { need: true };
      host = `${r[4]}.${r[5]}.${r[6]}.${r[7]}`;
      off = 8;
      break;
    case 3: {
      const n = r[4];
      if (r.length < 5 + n + 2) return { need: true };
      host = r.subarray(5, 5 + n).toString("latin1");
      off = 5 + n;
      break;
    }
    case 4: {
      if (r.length < 22) return { need: true };
      const parts: string[] = [];
      for (let i = 0; i < 8; i++) parts.push(r.readUInt16BE(4 + i * 2).toString(16));
      host = new URL(`http://[${parts.join(":")}]`).hostname.slice(1, -1); // canonical form
      off = 20;
      break;
    }
    default:
      return { error: SOCKS_ADDRESS_NOT_SUPPORTED, stage: "request" };
  }
  return { dest: { host, port: r.readUInt16BE(off) }, used: greetingLen + off + 2, greetingLen };
}

function reply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/** How long a client may take to send its greeting and request (a silent one would hold a socket for ever). */
export const SOCKS5_HANDSHAKE_TIMEOUT_MS = 10_000;

export function createSocks5Server(
  connect: SocksConnect,
  handshakeTimeoutMs = SOCKS5_HANDSHAKE_TIMEOUT_MS,
): net.Server {
  // allowHalfOpen: a client's FIN must not close our side (half-close goes through the tunnel).
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    // Owned from the first moment: a client may reset before it sends a byte.
    socket.on("error", (e) => log.debug("socks5 client socket error", { error: e }));
    socket.setTimeout(handshakeTimeoutMs, () => {
      log.debug("socks5 handshake timed out", { peer: socket.remoteAddress });
      socket.destroy();
    });
    let buf = Buffer.alloc(0);
    let greeted = false;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const p = parse(buf);
      if ("need" in p) {
        // Greeting + request are at most 519 bytes: more without a whole request is not SOCKS5. (Checked only
        // here: the tunnel's first bytes may arrive in the same chunk as the request.)
        if (buf.length > 600) return fail(SOCKS_GENERAL_FAILURE, "oversized request");
        // Answer the greeting as soon as it is whole (clients wait for it before the request).
        if (!greeted && buf.length >= 2 && buf.length >= 2 + buf[1]) {
          greeted = true;
          socket.write(Buffer.from([5, buf.subarray(2, 2 + buf[1]).includes(0) ? 0 : 0xff]));
        }
        return;
      }
      socket.off("data", onData);
      socket.setTimeout(0); // the request is whole: from here the tunnel (or the refusal) owns the socket
      if ("error" in p) {
        if (p.stage === "greeting") {
          socket.end(Buffer.from([5, 0xff]));
          return;
        }
        // The client sent its greeting and request together: the greeting's answer comes first.
        if (!greeted) socket.write(Buffer.from([5, 0]));
        return fail(p.error, "unsupported request");
      }
      if (!greeted) socket.write(Buffer.from([5, 0]));
      greeted = true;
      const rest = buf.subarray(p.used);
      socket.pause();
      connect(p.dest, socket)
        .then(
          ({ code, start }) => {
            if (socket.destroyed) return start?.();
            if (code !== SOCKS_OK) return fail(code, `connect to ${p.dest.host}:${p.dest.port} failed`);
            socket.write(reply(SOCKS_OK));
            if (rest.length > 0) socket.unshift(rest);
            start?.();
            socket.resume();
          },
          (err: unknown) => fail(SOCKS_GENERAL_FAILURE, String(err)),
        )
        .catch((err: unknown) => {
          log.warn("socks5 tunnel setup failed", { error: err as Error });
          socket.destroy();
        });
    };
    const fail = (code: number, why: string) => {
      log.debug("socks5 request refused", { code, why, peer: socket.remoteAddress });
      socket.off("data", onData);
      if (!socket.destroyed) socket.end(reply(code));
    };
    socket.on("data", onData);
  });
}
