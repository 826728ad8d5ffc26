// The node-http2 topology: an HBONE-shaped pair of proxies on node:http2, written as a good Node
// developer would, to compare against ours with the same job and the same settings:
//
//   node node-http2-proxy.js outbound CA_DIR H2_HOST:H2_PORT DEST...
//       a plain TCP listener on 127.0.0.1 per DEST (ip:port, in order); each connection becomes a
//       CONNECT stream (:authority DEST) on a pooled TLS HTTP/2 session to H2_HOST:H2_PORT (at most
//       100 streams per session, one dial at a time, as ztunnel's pool), piped both ways after the 200
//   node node-http2-proxy.js outbound-via CA_DIR GW_HOST:GW_PORT H2_HOST:H2_PORT DEST...
//       the same, cross-network (double HBONE): each pooled session is an inner TLS HTTP/2 session
//       to H2_HOST:H2_PORT carried in a CONNECT stream of one outer TLS HTTP/2 session to the gateway
//   node node-http2-proxy.js gateway CA_DIR HOST
//       an east-west gateway: a TLS HTTP/2 server on HOST whose CONNECT to ip:port dials that address
//       (the destination's HBONE port) and pipes the stream to it, never looking at the inner bytes
//   node node-http2-proxy.js inbound CA_DIR HOST
//       a TLS HTTP/2 server on HOST (client certificates required): CONNECT to HOST:port dials the
//       application, answers 200 once it is connected (503 if it cannot be reached), pipes both ways
//
// Same TLS as HBONE (TLS 1.3, AES-GCM, mutual, SPIFFE SAN checked) and the same flow control as our
// sessions (ztunnel's): 4 MiB stream window, 16 MiB connection window (setLocalWindowSize), 1 MiB
// max frame; maxSessionMemory raised so big windows are not refused (node:http2 sets TCP_NODELAY
// itself). Prints "bench node-http2 ready {port | ports}".

import net from "node:net";
import http2 from "node:http2";
import tls from "node:tls";
import { once } from "node:events";
import type { Duplex } from "node:stream";
import { checkPeer, parseAuthority, spiffe, tlsOptions } from "./certs.js";

const WINDOWS = { stream: 4 << 20, connection: 16 << 20, frame: 1 << 20 };
const SESSION_MEMORY_MB = 256;
const MAX_STREAMS = 100;
const { NGHTTP2_CANCEL } = http2.constants;

/** Stream <-> socket, both ways, FIN <-> END_STREAM; an error on one side cancels or destroys the other. */
function join(sock: net.Socket, stream: http2.Http2Stream): void {
  sock.pipe(stream);
  stream.pipe(sock);
  sock.on("error", () => {
    if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
  });
  stream.on("error", () => sock.destroy());
  sock.on("close", () => {
    if (!stream.closed && !stream.writableEnded) stream.close(NGHTTP2_CANCEL);
  });
  stream.on("close", () => {
    if (!sock.destroyed && !sock.writableEnded) sock.destroy();
  });
}

/** A CONNECT stream's far end: dial host:port, answer 200 once connected (503 if not), then pipe both ways. */
function dialAndJoin(stream: http2.ServerHttp2Stream, host: string, port: number): void {
  const sock = net.connect({ host, port, noDelay: true, allowHalfOpen: true });
  let connected = false;
  sock.once("connect", () => {
    connected = true;
    if (stream.destroyed) return sock.destroy();
    stream.respond({ ":status": 200 });
    join(sock, stream);
  });
  sock.once("error", () => {
    if (!connected && !stream.destroyed) stream.respond({ ":status": 503 }, { endStream: true });
  });
}

async function listen(srv: net.Server, host: string): Promise<number> {
  srv.listen({ host, port: 0, backlog: 4096 });
  await once(srv, "listening");
  return (srv.address() as net.AddressInfo).port;
}

/** A TLS HTTP/2 client session to `hop` whose peer must be `id`; over `socket` (an outer stream) when given. */
async function h2Client(
  opts: tls.SecureContextOptions,
  hop: string,
  id: string,
  socket?: Duplex,
): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`https://${hop}`, {
    ...opts,
    checkServerIdentity: () => undefined,
    settings: { initialWindowSize: WINDOWS.stream, maxFrameSize: WINDOWS.frame, enablePush: false },
    maxSessionMemory: SESSION_MEMORY_MB,
    ...(socket
      ? {
          createConnection: () =>
            tls.connect({ ...opts, socket, ALPNProtocols: ["h2"], checkServerIdentity: () => undefined }),
        }
      : {}),
  });
  s.on("error", () => {});
  await once(s, "connect");
  const why = checkPeer((s.socket as tls.TLSSocket).getPeerCertificate(), id);
  if (why) {
    s.destroy();
    throw new Error(why);
  }
  s.setLocalWindowSize(WINDOWS.connection);
  return s;
}

/** A CONNECT stream to `authority` on `s`, once it answered 200. */
async function connectStream(s: http2.ClientHttp2Session, authority: string): Promise<http2.ClientHttp2Stream> {
  const req = s.request({ ":method": "CONNECT", ":authority": authority }, { endStream: false });
  req.on("error", () => {});
  const [h] = (await once(req, "response")) as [http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader];
  if (h[":status"] !== 200) {
    req.close(NGHTTP2_CANCEL);
    throw new Error(`CONNECT ${authority}: ${h[":status"]}`);
  }
  return req;
}

async function outbound(caDir: string, hop: string, dests: string[], via?: string): Promise<number[]> {
  const opts = await tlsOptions(caDir, "client");
  const server = spiffe("server");
  const active = new Map<http2.ClientHttp2Session, number>();
  let dialing: Promise<http2.ClientHttp2Session> | null = null;
  // Double HBONE: one outer session to the gateway, one CONNECT stream in it per inner session.
  let outer: Promise<http2.ClientHttp2Session> | null = null;

  const dial = async (): Promise<http2.ClientHttp2Session> => {
    let socket: Duplex | undefined;
    if (via) {
      outer ??= h2Client(opts, via, spiffe("eastwest")).then(
        (o) => {
          o.once("close", () => (outer = null));
          return o;
        },
        (e: unknown) => {
          outer = null;
          throw e;
        },
      );
      socket = await connectStream(await outer, hop);
    }
    const s = await h2Client(opts, hop, server, socket);
    active.set(s, 0);
    s.once("close", () => active.delete(s));
    s.once("goaway", () => active.delete(s));
    return s;
  };

  const checkout = async (): Promise<http2.ClientHttp2Session> => {
    for (let tries = 0; tries < 1000; tries++) {
      for (const [s, n] of active) {
        if (n < MAX_STREAMS && !s.closed && !s.destroyed) {
          active.set(s, n + 1);
          return s;
        }
      }
      if (dialing) {
        await dialing.catch(() => undefined);
        continue;
      }
      dialing = dial();
      try {
        await dialing;
      } finally {
        dialing = null;
      }
    }
    throw new Error("no session");
  };

  const ports: number[] = [];
  for (const dest of dests) {
    const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      sock.pause();
      sock.on("error", () => sock.destroy());
      void checkout().then(
        (s) => {
          let released = false;
          const release = () => {
            if (released) return;
            released = true;
            const n = active.get(s);
            if (n !== undefined) active.set(s, n - 1);
          };
          const req = s.request({ ":method": "CONNECT", ":authority": dest }, { endStream: false });
          req.once("close", release);
          req.on("error", () => sock.destroy());
          req.once("response", (h) => {
            if (h[":status"] !== 200) {
              req.close(NGHTTP2_CANCEL);
              sock.destroy();
              return;
            }
            join(sock, req);
            sock.resume();
          });
        },
        () => sock.destroy(),
      );
    });
    ports.push(await listen(srv, "127.0.0.1"));
  }
  return ports;
}

async function inbound(caDir: string, host: string): Promise<number> {
  const opts = await tlsOptions(caDir, "server");
  const trust = `URI:spiffe://cluster.local/`;
  const server = http2.createSecureServer({
    ...opts,
    requestCert: true,
    rejectUnauthorized: true,
    settings: { initialWindowSize: WINDOWS.stream, maxFrameSize: WINDOWS.frame, maxConcurrentStreams: 200 },
    maxSessionMemory: SESSION_MEMORY_MB,
  });
  server.on("session", (s) => {
    const cert = (s.socket as tls.TLSSocket).getPeerCertificate();
    if (!(cert.subjectaltname ?? "").includes(trust)) return s.destroy();
    s.setLocalWindowSize(WINDOWS.connection);
    s.on("error", () => {});
  });
  server.on("sessionError", () => {});
  server.on("tlsClientError", () => {});
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    const dst = headers[":method"] === "CONNECT" ? parseAuthority(String(headers[":authority"] ?? "")) : null;
    if (!dst || dst.host !== host) {
      stream.respond({ ":status": 400 }, { endStream: true });
      return;
    }
    dialAndJoin(stream, dst.host, dst.port);
  });
  return listen(server, host);
}

async function gateway(caDir: string, host: string): Promise<number> {
  const opts = await tlsOptions(caDir, "eastwest");
  const server = http2.createSecureServer({
    ...opts,
    requestCert: true,
    rejectUnauthorized: true,
    settings: { initialWindowSize: WINDOWS.stream, maxFrameSize: WINDOWS.frame, maxConcurrentStreams: 200 },
    maxSessionMemory: SESSION_MEMORY_MB,
  });
  server.on("session", (s) => {
    s.setLocalWindowSize(WINDOWS.connection);
    s.on("error", () => {});
  });
  server.on("sessionError", () => {});
  server.on("tlsClientError", () => {});
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    const dst = headers[":method"] === "CONNECT" ? parseAuthority(String(headers[":authority"] ?? "")) : null;
    if (!dst) {
      stream.respond({ ":status": 400 }, { endStream: true });
      return;
    }
    dialAndJoin(stream, dst.host, dst.port); // the destination's HBONE port: the inner bytes pass untouched
  });
  return listen(server, host);
}

const [role, caDir, ...rest] = process.argv.slice(2);
if (role === "outbound" && rest.length >= 2) {
  const ports = await outbound(caDir, rest[0], rest.slice(1));
  console.log(`bench node-http2 ready ${JSON.stringify({ ports })}`);
} else if (role === "outbound-via" && rest.length >= 3) {
  const ports = await outbound(caDir, rest[1], rest.slice(2), rest[0]);
  console.log(`bench node-http2 ready ${JSON.stringify({ ports })}`);
} else if (role === "gateway" && rest.length === 1) {
  const port = await gateway(caDir, rest[0]);
  console.log(`bench node-http2 ready ${JSON.stringify({ port })}`);
} else if (role === "inbound" && rest.length === 1) {
  const port = await inbound(caDir, rest[0]);
  console.log(`bench node-http2 ready ${JSON.stringify({ port })}`);
} else {
  throw new Error(
    "usage: node-http2-proxy.js outbound CA_DIR HOST:PORT DEST... | outbound-via CA_DIR GW:PORT HOST:PORT DEST... |" +
      " gateway CA_DIR HOST | inbound CA_DIR HOST",
  );
}
process.on("SIGTERM", () => process.exit(0));
