// One HTTP/2 stream as a Node Duplex: writes become DATA frames, end() becomes END_STREAM,
// destroy(err) becomes RST_STREAM; reading grants the peer flow-control credit.

import { Duplex } from "node:stream";
import type { HeaderList } from "./hpack.js";
import type { H2Session } from "./session.js";

/** A write waiting for flow-control credit; the stream's queue is a list of these (none: no array kept). */
export interface PendingWrite {
  buf: Uint8Array;
  off: number;
  end: boolean;
  cb: (err?: Error | null) => void;
  next: PendingWrite | null;
}

const EMPTY = new Uint8Array(0);

// H2Stream's state bits.
const LOCAL_ENDED = 1;
const REMOTE_ENDED = 2;
const STREAM_CLOSED = 4;
const RESPONDED = 8;
const DELIVERED = 16;
const CREDIT_QUEUED = 32;

/**
 * Slots the proxy keeps a tunnel's state in (host/proxy: its pipe, its record), declared here so every stream
 * holds them in-object instead of growing a property array when they are set.
 */
export const PIPE_SLOT = Symbol("tunnel pipe");
export const RECORD_SLOT = Symbol("tunnel record");

/** A tunnel's record (host/proxy), told once when its stream is destroyed: no 'close' listener of its own. */
export interface StreamRecord {
  streamClosed(): void;
}

/**
 * Keeps `rec` in the stream's RECORD_SLOT; the stream tells it when it is destroyed (before its 'close', which Node
 * emits a tick later). A stream destroyed already tells it at its 'close', still to come.
 */
export function keepRecord(s: H2Stream, rec: StreamRecord): void {
  s[RECORD_SLOT] = rec;
  if (s.destroyed) s.once("close", closeRecord);
}

function closeRecord(this: H2Stream): void {
  this[RECORD_SLOT]?.streamClosed();
}

export class H2Stream extends Duplex {
  readonly id: number;
  readonly session: H2Session;
  /** Client side: the response status (0 until the response arrives). */
  status = 0;
  /** Client side: the response headers; server side: the request headers. */
  headers: HeaderList = [];
  /** The RST_STREAM code that closed the stream (sent or received), or null. */
  rstCode: number | null = null;

  // Flow control and state, owned by the session.
  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** Bytes received from the peer (handed to the readable side). */
  pushed = 0;
  /** Bytes the application wrote to the peer. */
  written = 0;
  /** @internal bytes credited back to the peer (stream window) */ credited = 0;
  /** @internal bytes counted as consumed for the connection window */ connCounted = 0;
  /** @internal the first queued write (Writable hands over one at a time), or null */ pending: PendingWrite | null =
    null;
  /** @internal client: waiting for the response */ onResponse: ((err?: Error) => void) | null = null;
  /** @internal server: the request's content-length, or -1 (DATA must add up to it, RFC 9113 §8.1.1) */ contentLength =
    -1;
  /** @internal */ [PIPE_SLOT]: unknown = undefined;
  /** @internal */ [RECORD_SLOT]: StreamRecord | undefined = undefined;
  // The stream's yes/no state in one number (an idle tunnel keeps its stream: one field instead of six).
  private bits = 0;
  /**
   * EventEmitter's listener count, made here: Node's stream constructors leave it out, so the first on() (the pipe's,
   * long after V8 sized H2Stream's objects) would add it to a 40 B property array every tunnel keeps.
   */
  private _eventsCount = 0;

  private hasBit(bit: number): boolean {
    return (this.bits & bit) !== 0;
  }
  private setBit(bit: number, v: boolean): void {
    this.bits = v ? this.bits | bit : this.bits & ~bit;
  }

  /** @internal END_STREAM sent */
  get localEnded(): boolean {
    return this.hasBit(LOCAL_ENDED);
  }
  set localEnded(v: boolean) {
    this.setBit(LOCAL_ENDED, v);
  }
  /** @internal END_STREAM received */
  get remoteEnded(): boolean {
    return this.hasBit(REMOTE_ENDED);
  }
  set remoteEnded(v: boolean) {
    this.setBit(REMOTE_ENDED, v);
  }
  /** @internal removed from the session */
  get streamClosed(): boolean {
    return this.hasBit(STREAM_CLOSED);
  }
  set streamClosed(v: boolean) {
    this.setBit(STREAM_CLOSED, v);
  }
  /** @internal server: the response HEADERS went out */
  get responded(): boolean {
    return this.hasBit(RESPONDED);
  }
  set responded(v: boolean) {
    this.setBit(RESPONDED, v);
  }
  /** @internal the application holds this stream (it may listen for 'error') */
  get delivered(): boolean {
    return this.hasBit(DELIVERED);
  }
  set delivered(v: boolean) {
    this.setBit(DELIVERED, v);
  }

  constructor(session: H2Session, id: number, sendWindow: number, recvWindow: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.session = session;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The first value of a header (response headers on a client, request headers on a server). */
  header(name: string): string | undefined {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  override _read(): void {
    // Readable.read() calls _read before it takes the bytes out of the buffer: credit the
    // peer once they are gone, or a reader that drains everything at once would stall.
    if (this.hasBit(CREDIT_QUEUED)) return;
    this.setBit(CREDIT_QUEUED, true);
    process.nextTick(creditLater, this);
  }

  /** @internal */
  _creditNow(): void {
    this.setBit(CREDIT_QUEUED, false);
    this.session._credit(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written += chunk.length;
    this.session._sendData(this, chunk, false, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    // Writes that queued up while the last one waited (corked, or the socket was full) go out as one
    // DATA frame: a TLS socket over this stream (double HBONE's inner TLS) writes one 16 KiB record at
    // a time, and a frame, a push and an app write per record cost more than this one copy.
    if (chunks.length === 1) return this._write(chunks[0].chunk, "binary", cb);
    let n = 0;
    for (const c of chunks) n += c.chunk.length;
    const buf = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of chunks) {
      buf.set(c.chunk, off);
      off += c.chunk.length;
    }
    this.written += n;
    this.session._sendData(this, buf, false, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.session._sendData(this, EMPTY, true, cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.session._streamDestroyed(this, err);
    cb(err);
    this[RECORD_SLOT]?.streamClosed();
  }
}

/** A read's credit, granted once the bytes are out of the buffer (see _read). */
function creditLater(s: H2Stream): void {
  s._creditNow();
}
