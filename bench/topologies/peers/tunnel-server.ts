// The server side of the tunnel benchmarks, run as its own process so client and server do
// not share an event loop: `node tunnel-server.js hbone|node`. Over IPC it reports its port,
// then answers "cpu" with its CPU time. A CONNECT to "sink:…" discards what it receives and
// ends when the client does; "echo:…" sends everything back.
//
// The node:http2 side gets the same windows and frame size as ours (ztunnel's: 4 MiB stream,
// 16 MiB connection, 1 MiB frames): node's defaults would cap it about 4x lower.

import net from "node:net";
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { H2Session, type H2Stream } from "../../../host/h2/session.js";

export const WINDOWS = { stream: 4 << 20, connection: 16 << 20, frame: 1 << 20 };

function handle(authority: string, stream: Duplex): void {
  stream.on("error", () => {});
  if (authority.startsWith("echo")) {
    stream.pipe(stream);
  } else {
    stream.resume();
    stream.on("end", () => stream.end());
  }
}

function listenHbone(): net.Server {
  return net.createServer((sock) => {
    const s = H2Session.server(sock, { maxConcurrentStreams: 1000 });
    s.on("connect", (stream: H2Stream, headers, respond) => {
      respond(200);
      handle(headers.find(([n]) => n === ":authority")?.[1] ?? "", stream);
    });
    s.on("error", () => {});
  });
}

function listenNode(): http2.Http2Server {
  const server = http2.createServer({
    settings: { initialWindowSize: WINDOWS.stream, maxFrameSize: WINDOWS.frame, maxConcurrentStreams: 1000 },
    maxSessionMemory: 256,
  });
  server.on("session", (s) => s.setLocalWindowSize(WINDOWS.connection));
  server.on("stream", (stream, headers) => {
    stream.respond({ ":status": 200 });
    handle(String(headers[":authority"] ?? ""), stream);
  });
  server.on("sessionError", () => {});
  return server;
}

if (process.send) {
  const server = process.argv[2] === "node" ? listenNode() : listenHbone();
  server.listen(0, "127.0.0.1", () => {
    process.send!({ port: (server.address() as net.AddressInfo).port });
  });
  process.on("message", (m) => {
    if (m === "cpu") {
      const u = process.cpuUsage();
      process.send!({ cpu: (u.user + u.system) / 1e6 });
    } else if (m === "exit") {
      process.exit(0);
    }
  });
  // The benchmark process is gone (crash, Ctrl-C): never outlive it.
  process.on("disconnect", () => process.exit(0));
}
