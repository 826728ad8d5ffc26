// RFC 9113 §8.1: an endpoint may send RST_STREAM(NO_ERROR) after a complete message (END_STREAM)
// (and a tunnel reads NO_ERROR or CANCEL as its EOF)
// to say "stop sending"; the receiver MUST NOT discard what it received. Data received before the
// reset stays readable to its end, read after the reset arrived, from a raw peer and from node:http2.

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import http2 from "node:http2";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { H2Session, type H2Stream } from "../../host/h2/session.js";
import { frame, u32 } from "../helpers/frames.js";
import { drain, listen, pattern } from "../helpers/net.js";
import { Cleanups, ourServer, until } from "../helpers/h2-server.js";

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const BODY = pattern(512 * 1024, 12);

/** DATA frames of 16 KiB carrying `body`, the last with END_STREAM. */
function dataFrames(stream: number, body: Buffer, endStream = true): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < body.length; off += 16384) {
    const end = endStream && off + 16384 >= body.length;
    out.push(frame(abi.FRAME_DATA, end ? abi.FLAG_END_STREAM : 0, stream, body.subarray(off, off + 16384)));
  }
  return out;
}

/** Our client session over a fresh socket to `port`; resolves the CONNECT stream. */
async function clientStream(port: number): Promise<{ session: H2Session; stream: H2Stream; closed: Promise<unknown> }> {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  const session = H2Session.client(sock);
  session.on("error", () => {});
  cleanups.add(() => session.destroy());
  const closed = once(session, "streamClosed");
  const stream = await session.connect("10.0.0.1:80");
  return { session, stream, closed };
}

describe("RST_STREAM(NO_ERROR) after END_STREAM keeps the received data", () => {
  it.each([
    ["NO_ERROR", abi.NO_ERROR, true],
    ["CANCEL", abi.CANCEL, true],
    ["NO_ERROR", abi.NO_ERROR, false],
    ["CANCEL", abi.CANCEL, false],
  ])(
    "client: a raw server sends 512 KiB, RST_STREAM(%s = %i) in one write (END_STREAM before it: %s)",
    async (_n, code, endStream) => {
      const srv = net.createServer((sock) => {
        sock.on("error", () => {});
        let got = Buffer.alloc(0);
        let answered = false;
        sock.on("data", (d: Buffer) => {
          got = Buffer.concat([got, d]);
          // After the 24-byte preface, wait for the request's HEADERS on stream 1.
          for (let off = 24; off + 9 <= got.length && !answered; off += 9 + got.readUIntBE(off, 3)) {
            if (got[off + 3] !== abi.FRAME_HEADERS) continue;
            answered = true;
            sock.write(
              Buffer.concat([
                frame(abi.FRAME_SETTINGS, 0, 0),
                frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0),
                frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, [0x88]), // :status 200
                ...dataFrames(1, BODY, endStream),
                frame(abi.FRAME_RST_STREAM, 0, 1, u32(code)),
              ]),
            );
          }
        });
      });
      const port = await listen(srv);
      cleanups.add(() => new Promise((r) => srv.close(r)));
      const { stream, closed } = await clientStream(port);
      await closed; // the reset arrived before the application read anything
      // A "stop" (NO_ERROR, or CANCEL as a tunnel's EOF) loses nothing that came before it: destroying the stream
      // here dropped the unread tail, and the pipe then passed the cut off as a clean FIN (the soak's truncated echoes).
      expect(stream.rstCode).toBe(code);
      // Writes after the peer said "stop sending" are dropped, not an error (and end the write side).
      await new Promise<void>((resolve, reject) => stream.once("error", reject).end("late", () => resolve()));
      const r = await drain(stream, BODY);
      expect(r.bytes).toBe(BODY.length);
      expect(r.equal).toBe(true);
    },
  );

  it("client: node:http2 answers 512 KiB, ends, then closes the stream with NO_ERROR", async () => {
    const srv = http2.createServer();
    srv.on("stream", (s) => {
      s.on("error", () => {});
      s.respond({ ":status": 200 });
      s.end(BODY, () => s.close(http2.constants.NGHTTP2_NO_ERROR));
    });
    const port = await listen(srv as unknown as net.Server);
    cleanups.add(() => new Promise((r) => srv.close(r)));
    const { stream, closed } = await clientStream(port);
    await closed;
    expect(stream.rstCode).toBe(abi.NO_ERROR);
    stream.end();
    const r = await drain(stream, BODY);
    expect(r.bytes).toBe(BODY.length);
    expect(r.equal).toBe(true);
  });

  it("server: a client sends 512 KiB, END_STREAM and RST_STREAM(NO_ERROR); the tunnel reads all of it", async () => {
    const s = await ourServer({}, true);
    cleanups.add(() => s.close());
    const p = await cleanups.peer(s.port);
    p.connectRequest(1);
    expect(await p.response(1)).toEqual([[":status", "200"]]);
    p.send(...dataFrames(1, BODY), frame(abi.FRAME_RST_STREAM, 0, 1, u32(abi.NO_ERROR)));
    expect(await until(() => s.streams[0]?.rstCode === abi.NO_ERROR)).toBe(true);
    s.streams[0].end();
    const r = await drain(s.streams[0], BODY);
    expect(r.bytes).toBe(BODY.length);
    expect(r.equal).toBe(true);
  });

  it("a reset with an error code still fails the stream (the data is not a complete message)", async () => {
    const s = await ourServer({}, true);
    cleanups.add(() => s.close());
    const p = await cleanups.peer(s.port);
    p.connectRequest(1);
    expect(await p.response(1)).toEqual([[":status", "200"]]);
    p.send(...dataFrames(1, BODY.subarray(0, 65536)), frame(abi.FRAME_RST_STREAM, 0, 1, u32(abi.INTERNAL_ERROR)));
    expect(await until(() => s.streams[0]?.destroyed === true)).toBe(true);
    expect(s.streams[0].rstCode).toBe(abi.INTERNAL_ERROR);
  });
});
