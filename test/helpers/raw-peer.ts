// A hand-driven HTTP/2 peer for tests that must send what a well-behaved stack never would
// (floods, bad headers, window violations). It writes raw frames and records what comes back.

import net from "node:net";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { parseFrames, type Frame } from "../../host/h2/frames.js";
import { HpackDecoder, HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { frame, settingsPayload, u32 } from "./frames.js";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export class RawPeer {
  readonly frames: Frame[] = [];
  readonly enc = new HpackEncoder();
  readonly dec = new HpackDecoder();
  private buf = Buffer.alloc(0);
  closed = false;
  private waiters: (() => void)[] = [];

  constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      // Parse whole frames only; keep the rest.
      let off = 0;
      while (this.buf.length - off >= 9) {
        const len = this.buf.readUIntBE(off, 3);
        if (this.buf.length - off < 9 + len) break;
        this.frames.push(...parseFrames(this.buf.subarray(off, off + 9 + len), abi.MAX_ALLOWED_FRAME_SIZE));
        off += 9 + len;
      }
      this.buf = this.buf.subarray(off);
      this.wake();
    });
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    sock.on("error", () => {});
  }

  static async connect(port: number, settings: [number, number][] = []): Promise<RawPeer> {
    const sock = net.connect(port, "127.0.0.1");
    await once(sock, "connect");
    return RawPeer.over(sock, settings);
  }

  /** A peer on a socket already connected (e.g. an HBONE TLS socket): preface, SETTINGS, ACK. */
  static async over(sock: net.Socket, settings: [number, number][] = []): Promise<RawPeer> {
    const p = new RawPeer(sock);
    p.send(PREFACE, frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload(settings)));
    await p.waitFor((f) => f.type === abi.FRAME_SETTINGS && f.flags === 0);
    p.send(frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0));
    return p;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(...bufs: Uint8Array[]): void {
    if (!this.sock.destroyed) this.sock.write(Buffer.concat(bufs));
  }

  headers(stream: number, list: HeaderList, endStream = false): void {
    this.send(this.enc.encodeHeadersFrame(stream, list, endStream, 16384));
  }

  connectRequest(stream: number, authority = "10.0.0.1:80", extra: HeaderList = []): void {
    this.headers(stream, [[":method", "CONNECT"], [":authority", authority], ...extra]);
  }

  data(stream: number, bytes: number, endStream = false): void {
    this.send(frame(abi.FRAME_DATA, endStream ? 1 : 0, stream, Buffer.alloc(bytes, 0x61)));
  }

  windowUpdate(stream: number, inc: number): void {
    this.send(frame(abi.FRAME_WINDOW_UPDATE, 0, stream, u32(inc)));
  }

  /** Waits until a received frame matches (or the socket closes); returns it or undefined. */
  async waitFor(pred: (f: Frame) => boolean, ms = 5000): Promise<Frame | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.find(pred);
      if (f || this.closed || Date.now() > deadline) return f;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, Math.max(1, deadline - Date.now()));
      });
    }
  }

  goaway(): Promise<Frame | undefined> {
    return this.waitFor((f) => f.type === abi.FRAME_GOAWAY);
  }

  rst(stream: number): Promise<Frame | undefined> {
    return this.waitFor((f) => f.type === abi.FRAME_RST_STREAM && f.streamId === stream);
  }

  /** The decoded response headers of a stream (HEADERS with END_HEADERS only). */
  async response(stream: number): Promise<HeaderList | undefined> {
    const f = await this.waitFor((x) => x.type === abi.FRAME_HEADERS && x.streamId === stream);
    if (!f) return undefined;
    return this.decodeAll().get(f);
  }

  private decodedHeaders = new Map<Frame, HeaderList>();
  private decodedUpTo = 0;
  /** Decodes HEADERS frames in arrival order (HPACK state is per connection). */
  private decodeAll(): Map<Frame, HeaderList> {
    for (; this.decodedUpTo < this.frames.length; this.decodedUpTo++) {
      const f = this.frames[this.decodedUpTo];
      if (f.type === abi.FRAME_HEADERS) this.decodedHeaders.set(f, this.dec.decode(f.payload));
    }
    return this.decodedHeaders;
  }

  dataBytes(stream: number): number {
    return this.frames
      .filter((f) => f.type === abi.FRAME_DATA && f.streamId === stream)
      .reduce((n, f) => n + f.payload.length, 0);
  }

  close(): void {
    this.sock.destroy();
  }
}
