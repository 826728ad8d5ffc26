// Full duplex under load, a session nested inside a stream of another (double HBONE's shape),
// a slow reader that must not grow memory past its windows, and fuzzing a server session.

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import fc from "fast-check";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { H2Session, type H2Stream } from "../../host/h2/session.js";
import { getCodec } from "../../host/wasm/codec.js";
import { listen, pattern, drain, pump } from "../helpers/net.js";
import { PREFACE } from "../helpers/raw-peer.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { HpackEncoder } from "../../host/h2/hpack.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(onConnect: (stream: H2Stream, respond: (s: number) => void) => void | Promise<void>) {
  const sessions: H2Session[] = [];
  const srv = net.createServer((sock) => {
    const s = H2Session.server(sock);
    sessions.push(s);
    // A rejected handler is an unhandled rejection, which fails the run.
    s.on("connect", (stream: H2Stream, _h, respond) => void onConnect(stream, respond));
  });
  const port = await listen(srv);
  cleanups.push(
    () => new Promise((r) => srv.close(r)),
    () => sessions.forEach((s) => s.destroy()),
  );
  return { port, sessions };
}

async function dial(port: number): Promise<H2Session> {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  const c = H2Session.client(sock);
  cleanups.push(() => c.destroy());
  return c;
}

describe("sessions under load", () => {
  it("runs a session inside a stream of another: 20 streams x 8 MiB both ways at once", async () => {
    // Outer server: each CONNECT carries an inner HTTP/2 connection whose streams echo.
    const { port } = await serve((outerStream, respond) => {
      respond(200);
      const inner = H2Session.server(outerStream);
      inner.on("connect", (s: H2Stream, _h, r) => {
        r(200);
        s.pipe(s);
      });
    });
    const outer = await dial(port);
    const tunnel = await outer.connect("gateway.example:15008");
    expect(tunnel.status).toBe(200);
    const inner = H2Session.client(tunnel);
    cleanups.push(() => inner.destroy());
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const s = await inner.connect(`10.0.1.${i}:8080`);
        const data = pattern(8 << 20, 1000 + i);
        const [, got] = await Promise.all([pump(s, data, 128 * 1024), drain(s, data)]);
        return got;
      }),
    );
    for (const r of results) expect(r).toEqual({ bytes: 8 << 20, equal: true });
  });

  it("keeps a paused reader's buffer within its stream window while 1 GiB flows", async () => {
    const window = 4 << 20;
    let maxBuffered = 0;
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      void serve(async (stream, respond) => {
        respond(200);
        try {
          let nextPause = 64 << 20;
          for await (const chunk of stream) {
            received += (chunk as Buffer).length;
            if (received >= nextPause) {
              nextPause += 64 << 20;
              // Stop reading for a while: the sender must stall, not pile data up here.
              await new Promise((r) => setTimeout(r, 50));
              maxBuffered = Math.max(maxBuffered, stream.readableLength);
            }
          }
          resolve();
        } catch (e) {
          reject(e);
        }
      }).then(async ({ port }) => {
        const c = await dial(port);
        const s = await c.connect("10.0.0.1:80");
        const chunk = Buffer.alloc(1 << 20, 0x5a);
        for (let i = 0; i < 1024; i++) if (!s.write(chunk)) await once(s, "drain");
        s.end();
      }, reject);
    });
    await done;
    expect(received).toBe(1 << 30);
    expect(maxBuffered).toBeGreaterThan(window / 2); // the reader really stalled...
    expect(maxBuffered).toBeLessThanOrEqual(window); // ...and never held more than its window
  });
});

describe("fuzzing a server session", () => {
  it("survives random bytes and mutated valid streams: every connection ends in GOAWAY or close", async () => {
    let connects = 0;
    const { port, sessions } = await serve((stream, respond) => {
      connects++;
      respond(200);
      stream.on("error", () => {});
      stream.pipe(stream);
    });
    const enc = new HpackEncoder();
    const valid = Buffer.concat([
      PREFACE,
      frame(
        abi.FRAME_SETTINGS,
        0,
        0,
        settingsPayload([
          [4, 100000],
          [5, 16384],
        ]),
      ),
      enc.encodeHeadersFrame(
        1,
        [
          [":method", "CONNECT"],
          [":authority", "10.0.0.1:80"],
        ],
        false,
        16384,
      ),
      frame(abi.FRAME_DATA, 0, 1, Buffer.alloc(300, 1)),
      frame(abi.FRAME_WINDOW_UPDATE, 0, 1, u32(1000)),
      frame(abi.FRAME_PING, 0, 0, Buffer.alloc(8)),
      frame(
        abi.FRAME_DATA,
        abi.FLAG_PADDED | abi.FLAG_END_STREAM,
        1,
        Buffer.concat([Buffer.from([4]), Buffer.alloc(10, 2), Buffer.alloc(4)]),
      ),
      frame(abi.FRAME_RST_STREAM, 0, 1, u32(8)),
    ]);
    const inputs = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.concat([PREFACE, b])),
        fc
          .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })
          .map((muts) => {
            const b = Buffer.from(valid);
            for (const [at, v] of muts) if (at >= PREFACE.length) b[at] = v;
            return b;
          }),
      ),
      300,
    );
    const deadline = Date.now() + 8000;
    let runs = 0,
      goaways = 0;
    for (const input of inputs) {
      if (Date.now() > deadline) break;
      const sock = net.connect(port, "127.0.0.1");
      await once(sock, "connect");
      let got = Buffer.alloc(0);
      sock.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
      sock.on("error", () => {});
      const closed = once(sock, "close");
      sock.write(input);
      sock.end();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
      expect(sock.destroyed || sock.readableEnded).toBe(true);
      // A GOAWAY frame header anywhere in what came back (type 7 on stream 0).
      if (got.includes(Buffer.from([0x07, 0x00, 0x00, 0x00, 0x00, 0x00]))) goaways++;
      sock.destroy();
      runs++;
    }
    expect(runs).toBeGreaterThan(50);
    // Broken input is answered with GOAWAY; input that merely stops short ends with the socket.
    expect(goaways).toBeGreaterThan(runs / 10);
    expect(getCodec().ex.heap_check()).toBeGreaterThanOrEqual(0);
    // Every server session was torn down: nothing leaked open.
    await new Promise((r) => setTimeout(r, 50));
    expect(sessions.every((s) => !s.open)).toBe(true);
    void connects;
  });
});
