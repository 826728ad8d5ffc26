// Servers for HTTP/2 engine tests: our H2Session server on loopback TCP, CONNECT tunnels answered
// 200 and echoed, with every session and connection error recorded; and raw peers tracked for
// cleanup.

import net from "node:net";
import { H2Session, type H2Stream, type SessionOptions } from "../../host/h2/session.js";
import type { H2Error } from "../../host/errors.js";
import { RawPeer } from "./raw-peer.js";
import { listen } from "./net.js";

export interface OurServer {
  port: number;
  sessions: H2Session[];
  /** Connection errors our sessions detected (each closed its connection with GOAWAY). */
  errors: H2Error[];
  /** Streams handed to the application, in order. */
  streams: H2Stream[];
  close(): Promise<void>;
}

/** Our server: CONNECT answers 200 and echoes (with `hold`, the tunnel is never read). */
export async function ourServer(opts: SessionOptions = {}, hold = false): Promise<OurServer> {
  const sessions: H2Session[] = [];
  const errors: H2Error[] = [];
  const streams: H2Stream[] = [];
  const srv = net.createServer((sock) => {
    const s = H2Session.server(sock, opts);
    sessions.push(s);
    s.on("protocolError", (e: H2Error) => errors.push(e));
    s.on("error", () => {});
    s.on("connect", (stream: H2Stream, _h, respond) => {
      streams.push(stream);
      stream.on("error", () => {});
      respond(200);
      if (!hold) stream.pipe(stream);
    });
  });
  const port = await listen(srv);
  return {
    port,
    sessions,
    errors,
    streams,
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Tracks what a test opens, so afterEach can close it. */
export class Cleanups {
  private readonly fns: (() => unknown)[] = [];
  add(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async peer(port: number, settings: [number, number][] = []): Promise<RawPeer> {
    const p = await RawPeer.connect(port, settings);
    this.add(() => p.close());
    return p;
  }
  async run(): Promise<void> {
    for (const fn of this.fns.splice(0).reverse()) await fn();
  }
}

/** Waits (bounded) until `cond` holds; returns whether it did. */
export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
