// What a hostile or broken peer gets from our server session: each rule with the right
// HTTP/2 error code, stream-level (RST_STREAM) or connection-level (GOAWAY), and the limits
// that protect the server (concurrency, header size, CONTINUATION, rapid reset, floods).

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import * as abi from "../../assembly/abi.js";
import { H2Session, type H2Stream, type SessionOptions } from "../../host/h2/session.js";
import { H2Error } from "../../host/errors.js";
import { RawPeer, PREFACE } from "../helpers/raw-peer.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { listen } from "../helpers/net.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Our server session on loopback; CONNECT tunnels answer 200 and echo (or, with hold, never read). */
async function server(opts: SessionOptions = {}, hold = false) {
  const sessions: H2Session[] = [];
  const errors: H2Error[] = [];
  const srv = net.createServer((sock) => {
    const s = H2Session.server(sock, opts);
    sessions.push(s);
    s.on("protocolError", (e: H2Error) => errors.push(e));
    s.on("connect", (stream: H2Stream, _h, respond) => {
      respond(200);
      stream.on("error", () => {});
      if (!hold) stream.pipe(stream);
    });
  });
  const port = await listen(srv);
  cleanups.push(
    () => new Promise((r) => srv.close(r)),
    () => sessions.forEach((s) => s.destroy()),
  );
  return { port, sessions, errors };
}

async function peer(port: number, settings: [number, number][] = []): Promise<RawPeer> {
  const p = await RawPeer.connect(port, settings);
  cleanups.push(() => p.close());
  return p;
}

describe("CONNECT requests (RFC 9113 §8.5)", () => {
  it("refuses CONNECT with :path or :scheme, or without :authority, with RST_STREAM PROTOCOL_ERROR", async () => {
    const { port } = await server();
    const p = await peer(port);
    p.headers(1, [
      [":method", "CONNECT"],
      [":authority", "10.0.0.1:80"],
      [":path", "/"],
    ]);
    p.headers(3, [
      [":method", "CONNECT"],
      [":scheme", "https"],
      [":authority", "10.0.0.1:80"],
    ]);
    p.headers(5, [[":method", "CONNECT"]]);
    for (const id of [1, 3, 5]) expect((await p.rst(id))?.errorCode).toBe(abi.PROTOCOL_ERROR);
    p.connectRequest(7);
    expect(await p.response(7)).toEqual([[":status", "200"]]);
  });

  it("resets malformed requests: upper-case names, connection headers, pseudo after regular", async () => {
    const { port } = await server();
    const p = await peer(port);
    p.connectRequest(1, "10.0.0.1:80", [["X-Upper", "1"]]);
    p.connectRequest(3, "10.0.0.1:80", [["connection", "keep-alive"]]);
    p.headers(5, [
      [":method", "CONNECT"],
      ["x-a", "1"],
      [":authority", "10.0.0.1:80"],
    ]);
    for (const id of [1, 3, 5]) expect((await p.rst(id))?.errorCode).toBe(abi.PROTOCOL_ERROR);
  });

  it("answers a non-CONNECT request with 400 and END_STREAM", async () => {
    const { port } = await server();
    const p = await peer(port);
    p.headers(
      1,
      [
        [":method", "GET"],
        [":scheme", "http"],
        [":path", "/"],
        [":authority", "x"],
      ],
      true,
    );
    expect(await p.response(1)).toEqual([[":status", "400"]]);
    const f = p.frames.find((x) => x.type === abi.FRAME_HEADERS && x.streamId === 1)!;
    expect(f.flags & abi.FLAG_END_STREAM).toBe(abi.FLAG_END_STREAM);
  });
});

describe("connection errors", () => {
  it("rejects a bad preface with GOAWAY PROTOCOL_ERROR", async () => {
    const { port } = await server();
    const sock = net.connect(port, "127.0.0.1");
    const p = new RawPeer(sock);
    cleanups.push(() => p.close());
    p.send(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect((await p.goaway())?.errorCode).toBe(abi.PROTOCOL_ERROR);
  });

  it("requires SETTINGS as the first frame", async () => {
    const { port } = await server();
    const sock = net.connect(port, "127.0.0.1");
    const p = new RawPeer(sock);
    cleanups.push(() => p.close());
    p.send(PREFACE, frame(abi.FRAME_PING, 0, 0, Buffer.alloc(8)));
    expect((await p.goaway())?.errorCode).toBe(abi.PROTOCOL_ERROR);
  });

  it("closes on a malformed frame with its code and says why", async () => {
    const { port, errors } = await server();
    const p = await peer(port);
    p.send(frame(abi.FRAME_PING, 0, 0, Buffer.alloc(7)));
    const g = await p.goaway();
    expect(g?.errorCode).toBe(abi.FRAME_SIZE_ERROR);
    expect(Buffer.from(g!.debugData!).toString()).toMatch(/invalid frame length/);
    expect(errors[0]?.code).toBe(abi.FRAME_SIZE_ERROR);
  });

  it("DATA on an idle stream is a PROTOCOL_ERROR", async () => {
    const { port } = await server();
    const p = await peer(port);
    p.data(9, 10);
    expect((await p.goaway())?.errorCode).toBe(abi.PROTOCOL_ERROR);
  });

  it("a connection WINDOW_UPDATE past 2^31-1 is a FLOW_CONTROL_ERROR", async () => {
    const { port } = await server();
    const p = await peer(port);
    p.windowUpdate(0, 2 ** 31 - 1);
    expect((await p.goaway())?.errorCode).toBe(abi.FLOW_CONTROL_ERROR);
  });
});

describe("flow control", () => {
  it("resets a stream that overruns its window; closes a connection that overruns its window", async () => {
    const { port } = await server({ streamWindow: 65535, connectionWindow: 65535 * 4 }, true);
    const p = await peer(port);
    p.connectRequest(1);
    await p.response(1);
    p.data(1, 16384);
    p.data(1, 16384);
    p.data(1, 16384);
    p.data(1, 16384); // 65536 > 65535
    expect((await p.rst(1))?.errorCode).toBe(abi.FLOW_CONTROL_ERROR);
    const p2 = await peer(port);
    for (let id = 1; id <= 11; id += 2) {
      p2.connectRequest(id);
      await p2.response(id);
    }
    // Each stream may take 65535, the connection only 4 x 65535: the fifth stream's data overruns it.
    for (let id = 1; id <= 11; id += 2) for (let k = 0; k < 3; k++) p2.data(id, 16000);
    expect((await p2.goaway())?.errorCode).toBe(abi.FLOW_CONTROL_ERROR);
  });

  it("applies a SETTINGS_INITIAL_WINDOW_SIZE change to open streams (§6.9.2)", async () => {
    const { port } = await server();
    const p = await peer(port, [[abi.SETTINGS_INITIAL_WINDOW_SIZE, 1000]]);
    p.connectRequest(1);
    await p.response(1);
    p.data(1, 5000); // echoed back, but only 1000 bytes fit our window
    await p.waitFor(() => p.dataBytes(1) >= 1000);
    await new Promise((r) => setTimeout(r, 100));
    expect(p.dataBytes(1)).toBe(1000);
    p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([[abi.SETTINGS_INITIAL_WINDOW_SIZE, 3000]])));
    await p.waitFor(() => p.dataBytes(1) >= 3000);
    await new Promise((r) => setTimeout(r, 100));
    expect(p.dataBytes(1)).toBe(3000);
    p.windowUpdate(1, 2000);
    await p.waitFor(() => p.dataBytes(1) >= 5000);
    expect(p.dataBytes(1)).toBe(5000);
  });
});

describe("limits against hostile peers", () => {
  it("refuses streams beyond max concurrent streams with REFUSED_STREAM", async () => {
    const { port } = await server({ maxConcurrentStreams: 5 });
    const p = await peer(port);
    const settings = p.frames.find((f) => f.type === abi.FRAME_SETTINGS && f.flags === 0)!;
    expect(settings.settings).toContainEqual([abi.SETTINGS_MAX_CONCURRENT_STREAMS, 5]);
    for (let id = 1; id <= 11; id += 2) p.connectRequest(id);
    expect((await p.rst(11))?.errorCode).toBe(abi.REFUSED_STREAM);
    for (let id = 1; id <= 9; id += 2) expect(await p.response(id)).toEqual([[":status", "200"]]);
  });

  it("answers 431 to an oversized header list and stays in sync", async () => {
    const { port } = await server({ maxHeaderListSize: 1024 });
    const p = await peer(port);
    p.connectRequest(1, "10.0.0.1:80", [
      ["x-big", "v".repeat(2000)],
      ["x-small", "s"],
    ]);
    expect(await p.response(1)).toEqual([[":status", "431"]]);
    p.connectRequest(3, "10.0.0.1:80", [["x-small", "s"]]); // refers to entries the big block added
    expect(await p.response(3)).toEqual([[":status", "200"]]);
  });

  it("closes with ENHANCE_YOUR_CALM after too many CONTINUATION frames", async () => {
    const { port } = await server({ maxContinuations: 4 });
    const p = await peer(port);
    p.send(frame(abi.FRAME_HEADERS, 0, 1, [0x82]));
    for (let i = 0; i < 6; i++) p.send(frame(abi.FRAME_CONTINUATION, 0, 1, [0x84]));
    expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
  });

  it("closes with ENHANCE_YOUR_CALM on rapid reset (CVE-2023-44487)", async () => {
    const { port } = await server({ maxResetsPerWindow: 50 });
    const p = await peer(port);
    for (let id = 1; id < 2 * 60; id += 2) {
      p.connectRequest(id);
      p.send(frame(abi.FRAME_RST_STREAM, 0, id, u32(abi.CANCEL)));
    }
    expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
  });

  it("closes with ENHANCE_YOUR_CALM on SETTINGS and PING floods", async () => {
    const { port } = await server({ maxSettingsPerWindow: 20, maxPingsPerWindow: 20 });
    const a = await peer(port);
    for (let i = 0; i < 30; i++) a.send(frame(abi.FRAME_SETTINGS, 0, 0));
    expect((await a.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    const b = await peer(port);
    for (let i = 0; i < 30; i++) b.send(frame(abi.FRAME_PING, 0, 0, Buffer.alloc(8)));
    expect((await b.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    expect(b.frames.filter((f) => f.type === abi.FRAME_PING && f.flags === abi.FLAG_ACK).length).toBe(20);
  });
});

describe("keepalive", () => {
  it("answers PING and measures a round trip", async () => {
    const { port } = await server();
    const sock = net.connect(port, "127.0.0.1");
    const c = H2Session.client(sock);
    cleanups.push(() => c.destroy());
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
  });

  it("closes a connection whose PINGs go unanswered", async () => {
    // A peer that completes SETTINGS, then never answers.
    const srv = net.createServer((sock) => {
      sock.on("data", () => {});
      sock.write(Buffer.concat([frame(abi.FRAME_SETTINGS, 0, 0), frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0)]));
    });
    const port = await listen(srv);
    cleanups.push(() => new Promise((r) => srv.close(r)));
    const sock = net.connect(port, "127.0.0.1");
    const c = H2Session.client(sock, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 200 });
    const t0 = Date.now();
    const timedOut = new Promise<void>((r) => c.on("timeout", () => r()));
    const closed = new Promise<void>((r) => c.on("close", () => r()));
    await timedOut;
    await closed;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(c.open).toBe(false);
  });
});
