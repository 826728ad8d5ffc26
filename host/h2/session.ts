// An HTTP/2 connection (RFC 9113) over any Node Duplex, client or server role, carrying
// CONNECT tunnels (§8.5). Framing and HPACK run in Wasm (FrameReader, HpackDecoder/Encoder);
// this file keeps the connection's state: streams, flow-control windows, settings, keepalive,
// GOAWAY, and the limits that protect it from hostile peers.
//
// The session never stops reading its socket: a write waiting for flow-control credit parks
// on its stream, so two sessions nested in each other (double HBONE) cannot deadlock.

import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import * as abi from "../../assembly/abi.js";
import { H2Error, errorCodeName } from "../errors.js";
import { FrameReader, type Codec, getCodec } from "../wasm/codec.js";
import { FrameWriter } from "./frames.js";
import { HpackDecoder, HpackEncoder, type HeaderList } from "./hpack.js";
import { DEFAULT_LIMITS, RateLimit, headerBlockLimit, type SessionLimits } from "./limits.js";
import { H2Stream, type PendingWrite } from "./stream.js";
import { header } from "./headers.js";

export { H2Stream } from "./stream.js";

/** Bytes the socket may buffer before stream writers wait for its 'drain' (see afterDrain). */
const SEND_BUFFER = 256 * 1024;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const DEFAULT_WINDOW = 65535;

export interface SessionOptions extends Partial<SessionLimits> {
  /** Our stream receive window (SETTINGS_INITIAL_WINDOW_SIZE). ztunnel: 4 MiB. */
  streamWindow?: number;
  /** Our connection receive window. ztunnel: 16 MiB. */
  connectionWindow?: number;
  /** Largest frame we accept (SETTINGS_MAX_FRAME_SIZE). ztunnel: 1 MiB. */
  maxFrameSize?: number;
  /** HPACK table size we allow the peer's encoder (SETTINGS_HEADER_TABLE_SIZE). */
  headerTableSize?: number;
  /** Client: most streams we open at once, whatever the peer allows. ztunnel: 100. */
  maxClientStreams?: number;
  /** PING every this many ms (0: never). ztunnel: 10 s. */
  keepaliveIntervalMs?: number;
  /** Close the connection when a PING is unanswered this long. ztunnel: 20 s. */
  keepaliveTimeoutMs?: number;
  /** Close the connection when our SETTINGS are not acknowledged this long. */
  settingsTimeoutMs?: number;
  codec?: Codec;
}

type Role = "client" | "server";
export type Headers = HeaderList | Record<string, string>;
export type Respond = (status: number, headers?: Headers) => void;

function toList(h: Headers | undefined): HeaderList {
  if (!h) return [];
  return Array.isArray(h) ? h : Object.entries(h);
}

/** Headers that must not appear in HTTP/2 (§8.2.2). */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/**
 * §8.2-8.3: lower-case names, pseudo-headers first, known and not empty, no connection-specific
 * fields; a request has :method, and :authority alone for CONNECT (§8.5) or :scheme and :path
 * otherwise (§8.3.1); content-length is one decimal number. A malformed message is a stream
 * error of type PROTOCOL_ERROR (§8.1.1), never a response.
 */
function malformed(list: HeaderList, request: boolean): string | null {
  let regular = false;
  let seen = 0; // PSEUDO bits (a request's every header is checked: bits, not a Set per request)
  let contentLength: string | undefined;
  for (const [n, v] of list) {
    if (n.length === 0) return "empty header name";
    if (n !== n.toLowerCase()) return `upper-case header name ${n}`;
    if (n.charCodeAt(0) === 58 /* ':' */) {
      if (regular) return `pseudo-header ${n} after regular headers`;
      const bit = PSEUDO.get(n) ?? 0;
      if (bit & seen) return `duplicate ${n}`;
      seen |= bit;
      if (!(bit & (request ? REQUEST_PSEUDO : STATUS))) return `unknown pseudo-header ${n}`;
      if (v.length === 0) return `empty ${n}`;
    } else {
      regular = true;
      if (CONNECTION_SPECIFIC.has(n)) return `connection-specific header ${n}`;
      if (n === "te" && v !== "trailers") return "te other than trailers";
      if (n === "content-length") {
        if (!/^[0-9]{1,15}$/.test(v) || (contentLength !== undefined && contentLength !== v))
          return "invalid content-length";
        contentLength = v;
      }
    }
  }
  if (!request) return null;
  if (!(seen & METHOD)) return "missing :method";
  const connect = list.some(([n, v]) => n === ":method" && v === "CONNECT");
  if (connect) {
    // Plain CONNECT (§8.5): :authority only (extended CONNECT, RFC 8441, is not enabled).
    if (!(seen & AUTHORITY)) return "CONNECT without :authority";
    if (seen & (SCHEME | PATH | PROTOCOL)) return "CONNECT with :scheme, :path or :protocol";
  } else if (!(seen & SCHEME) || !(seen & PATH) || seen & PROTOCOL) {
    return "request without :scheme or :path";
  }
  return null;
}

const METHOD = 1,
  SCHEME = 2,
  AUTHORITY = 4,
  PATH = 8,
  PROTOCOL = 16,
  STATUS = 32;
const REQUEST_PSEUDO = METHOD | SCHEME | AUTHORITY | PATH | PROTOCOL;
/** The pseudo-headers HTTP/2 defines (§8.3), as bits; any other is unknown. */
const PSEUDO = new Map([
  [":method", METHOD],
  [":scheme", SCHEME],
  [":authority", AUTHORITY],
  [":path", PATH],
  [":protocol", PROTOCOL],
  [":status", STATUS],
]);

/** Streams we reset, remembered so frames the peer sent before seeing the reset are ignored (§5.1). */
const RECENT_RESETS = 1024;

/** The session's Wasm parts, or the H2Error (INTERNAL_ERROR, R_OUT_OF_MEMORY) when the codec's budget is spent. */
function openCodec(
  maxFrameSize: number,
  maxHeaderBlock: number,
  tableSize: number,
  maxList: number,
  codec: Codec,
): [FrameReader, HpackDecoder, HpackEncoder] | H2Error {
  let reader: FrameReader | null = null,
    decoder: HpackDecoder | null = null;
  try {
    reader = new FrameReader(maxFrameSize, abi.READER_NO_PUSH, codec);
    // No non-DATA frame needs the max frame size: HEADERS and CONTINUATION are bounded by the block limit.
    reader.setMaxGather(maxHeaderBlock);
    decoder = new HpackDecoder(tableSize, codec);
    decoder.setMaxHeaderListSize(maxList);
    return [reader, decoder, new HpackEncoder(abi.DEFAULT_HEADER_TABLE_SIZE, codec)];
  } catch (err) {
    reader?.dispose();
    decoder?.dispose();
    if (err instanceof H2Error) return err;
    throw err;
  }
}

/** Events: see the overloads. */
export interface H2Session {
  /** Server: a CONNECT request. Call `respond(200, headers)` to open the tunnel, any other status refuses it. */
  on(event: "connect", listener: (stream: H2Stream, headers: HeaderList, respond: Respond) => void): this;
  on(event: "goaway", listener: (code: number, lastStreamId: number, debug: string) => void): this;
  /** A connection error we detected (the session closes with GOAWAY carrying its code). */
  on(event: "protocolError", listener: (err: H2Error) => void): this;
  on(event: "close" | "timeout", listener: () => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: "remoteSettings", listener: (settings: Map<number, number>) => void): this;
  on(event: "streamClosed", listener: (stream: H2Stream) => void): this;
}

export class H2Session extends EventEmitter {
  readonly role: Role;
  readonly socket: Duplex;
  /** Settings the peer sent (id -> value). */
  readonly remoteSettings = new Map<number, number>();
  /** Streams by id. */
  readonly streams = new Map<number, H2Stream>();

  private readonly opts: Required<Omit<SessionOptions, "codec">>;
  // Assigned unless the codec's memory budget was spent at construction (the session is then
  // destroyed at once and never touches them).
  private readonly reader!: FrameReader;
  private readonly decoder!: HpackDecoder;
  private readonly encoder!: HpackEncoder;
  private readonly writer: FrameWriter;
  private readonly maxHeaderBlock: number;

  // Peer settings in force.
  private peerMaxFrameSize = abi.DEFAULT_MAX_FRAME_SIZE;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxStreams = Infinity;
  // Connection-level flow control.
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private recvConsumed = 0; // connection bytes consumed but not yet credited
  private blocked = new Set<H2Stream>(); // streams with writes waiting for credit
  // Stream ids.
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private goawaySent = false;
  private goawayReceived = -1; // last stream id of a received GOAWAY
  private closing = false;
  private destroyed = false;
  private prefaceLeft: number; // server: preface bytes still to check
  private gotSettings = false;
  // Header block being received (HEADERS + CONTINUATION).
  private block: Uint8Array[] = [];
  private blockBytes = 0;
  private blockStream = 0;
  private blockFlags = 0;
  private blockContinuations = 0;
  // Client: connect() calls waiting for a free stream slot.
  private waiting: (() => void)[] = [];
  // Socket writes are corked for the rest of the event loop's turn (uncorked at setImmediate): one
  // TLS write per turn for every stream's frames, not one per tick and per socket read (with many
  // short tunnels, frames of several of them share a TLS record and a syscall). (Measured: coalescing
  // small frames into our own buffer instead cost more in copies and GC on bulk tunnels than it
  // saved on small ones; coalescing only turns of up to 16 KiB into one write cost more CPU per
  // short tunnel too, and so did a turn's frames copied into a pooled 128 KiB buffer written as
  // one: +4 % CPU per GiB at the outbound, side by side.)
  private corked = false;
  private drainWaiters: (() => void)[] = [];
  // Keepalive and settings timers.
  private pingTimer: NodeJS.Timeout | null = null;
  private pingDeadline: NodeJS.Timeout | null = null;
  private pingSentAt = 0;
  private pingWaiters: ((rtt: number) => void)[] = [];
  private settingsTimer: NodeJS.Timeout | null = null;
  // Flood counters.
  private readonly resets: RateLimit;
  private readonly settingsRate: RateLimit;
  private readonly pings: RateLimit;
  private readonly empties: RateLimit;
  private readonly localResets: RateLimit;
  private readonly recentlyReset = new Set<number>();
  private forgottenResets = 0; // highest id dropped from recentlyReset: at or below it we cannot tell, so ignore
  // Control bytes written while the socket was over its high-water mark (reset on 'drain').
  private controlQueued = 0;

  static client(socket: Duplex, opts: SessionOptions = {}): H2Session {
    return new H2Session("client", socket, opts);
  }

  static server(socket: Duplex, opts: SessionOptions = {}): H2Session {
    return new H2Session("server", socket, opts);
  }

  private constructor(role: Role, socket: Duplex, opts: SessionOptions) {
    super();
    this.role = role;
    this.socket = socket;
    const client = role === "client";
    this.opts = {
      ...DEFAULT_LIMITS,
      maxHeaderListSize: client ? 16 * 1024 : DEFAULT_LIMITS.maxHeaderListSize,
      streamWindow: 4 << 20,
      connectionWindow: 16 << 20,
      maxFrameSize: 1 << 20,
      headerTableSize: abi.DEFAULT_HEADER_TABLE_SIZE,
      maxClientStreams: 100,
      keepaliveIntervalMs: 10_000,
      keepaliveTimeoutMs: 20_000,
      settingsTimeoutMs: 10_000,
      ...Object.fromEntries(Object.entries(opts).filter(([k, v]) => v !== undefined && k !== "codec")),
    } as Required<Omit<SessionOptions, "codec">>;
    const o = this.opts;
    const codec = opts.codec ?? getCodec();
    this.writer = new FrameWriter(codec);
    this.maxHeaderBlock = headerBlockLimit(o.maxHeaderListSize);
    const parts = openCodec(o.maxFrameSize, this.maxHeaderBlock, o.headerTableSize, o.maxHeaderListSize, codec);
    this.recvWindow = o.connectionWindow;
    this.nextStreamId = client ? 1 : 2;
    this.prefaceLeft = client ? 0 : PREFACE.length;
    this.resets = new RateLimit(o.maxResetsPerWindow, o.floodWindowMs);
    this.settingsRate = new RateLimit(o.maxSettingsPerWindow, o.floodWindowMs);
    this.pings = new RateLimit(o.maxPingsPerWindow, o.floodWindowMs);
    this.empties = new RateLimit(o.maxEmptyFramesPerWindow, o.floodWindowMs);
    this.localResets = new RateLimit(o.maxLocalResetsPerWindow, o.floodWindowMs);

    // Small frames (WINDOW_UPDATE, PING ACK) must not wait for Nagle's algorithm.
    (socket as Partial<import("node:net").Socket>).setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.onSocketGone(null));
    socket.on("close", () => this.onSocketGone(null));
    socket.on("error", (err: Error) => this.onSocketGone(err));
    socket.on("drain", () => this.onDrain());

    if (parts instanceof H2Error) {
      // The codec's memory budget is spent: refuse this connection only (others keep theirs).
      this.destroyed = true;
      this.goawaySent = true;
      if (client) this.write(PREFACE);
      this.write(this.writer.goaway(0, parts.code, Buffer.from(parts.message, "latin1")));
      process.nextTick(() => {
        this.emit("protocolError", parts);
        this.emit("close");
        this.endSocket();
      });
      return;
    }
    [this.reader, this.decoder, this.encoder] = parts;

    // Preface (client), our SETTINGS, and the connection window beyond the default.
    const settings: [number, number][] = [
      [abi.SETTINGS_ENABLE_PUSH, 0],
      [abi.SETTINGS_INITIAL_WINDOW_SIZE, o.streamWindow],
      [abi.SETTINGS_MAX_FRAME_SIZE, o.maxFrameSize],
      [abi.SETTINGS_MAX_HEADER_LIST_SIZE, o.maxHeaderListSize],
    ];
    if (!client) settings.push([abi.SETTINGS_MAX_CONCURRENT_STREAMS, o.maxConcurrentStreams]);
    if (o.headerTableSize !== abi.DEFAULT_HEADER_TABLE_SIZE)
      settings.push([abi.SETTINGS_HEADER_TABLE_SIZE, o.headerTableSize]);
    if (client) this.write(PREFACE);
    this.write(this.writer.settings(settings));
    if (o.connectionWindow > DEFAULT_WINDOW)
      this.write(this.writer.windowUpdate(0, o.connectionWindow - DEFAULT_WINDOW));
    if (o.settingsTimeoutMs > 0) {
      this.settingsTimer = setTimeout(
        () => this.fail(H2Error.connection(abi.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")),
        o.settingsTimeoutMs,
      );
      this.settingsTimer.unref();
    }
    if (o.keepaliveIntervalMs > 0) {
      this.pingTimer = setInterval(() => this.keepalive(), o.keepaliveIntervalMs);
      this.pingTimer.unref();
    }
  }

  // ---- Public API ------------------------------------------------------------------------

  /** True while new streams may be opened. */
  get open(): boolean {
    return !this.destroyed && !this.closing && !this.goawaySent && this.goawayReceived < 0;
  }

  /** Streams currently open (not closed). */
  get activeStreams(): number {
    return this.streams.size;
  }

  /**
   * Client: opens a CONNECT stream to `authority` (e.g. "10.0.0.1:8080") with extra headers.
   * Resolves once the response headers arrive (check `stream.status`); rejects if the stream is
   * reset or the session goes away first.
   */
  async connect(authority: string, headers?: Headers): Promise<H2Stream> {
    if (this.role !== "client") throw new Error("connect() is for client sessions");
    while (this.streams.size >= Math.min(this.opts.maxClientStreams, this.peerMaxStreams)) {
      if (!this.open) break;
      await new Promise<void>((r) => this.waiting.push(r));
    }
    if (!this.open) throw H2Error.connection(abi.REFUSED_STREAM, "session is closing");
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new H2Stream(this, id, this.peerInitialWindow, this.opts.streamWindow);
    this.streams.set(id, stream);
    const list: HeaderList = [[":method", "CONNECT"], [":authority", authority], ...toList(headers)];
    const response = new Promise<H2Stream>((resolve, reject) => {
      stream.onResponse = (err) => (err ? reject(err) : resolve(stream));
    });
    this.write(this.encoder.encodeHeadersFrame(id, list, false, this.peerMaxFrameSize));
    return response;
  }

  /** Sends a PING and resolves with the round trip in ms. */
  ping(): Promise<number> {
    return new Promise((resolve) => {
      this.pingWaiters.push(resolve);
      if (this.pingWaiters.length === 1) this.sendPing();
    });
  }

  /**
   * Graceful close: GOAWAY(NO_ERROR) with the last stream we accepted; streams in flight
   * finish; the socket ends when the last one closes.
   */
  close(): void {
    if (this.destroyed || this.closing) return;
    this.closing = true;
    this.sendGoaway(abi.NO_ERROR, "");
    for (const w of this.waiting.splice(0)) w();
    this.maybeFinish();
  }

  /** Immediate close: GOAWAY with `code`, every stream destroyed. */
  destroy(err?: Error, code = err ? abi.INTERNAL_ERROR : abi.NO_ERROR): void {
    if (this.destroyed) return;
    this.sendGoaway(code, err?.message ?? "");
    this.teardown(err ?? null);
    this.endSocket();
  }

  // ---- Receiving ---------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.destroyed) return;
    try {
      if (this.prefaceLeft > 0) {
        const n = Math.min(this.prefaceLeft, chunk.length);
        const off = PREFACE.length - this.prefaceLeft;
        if (!chunk.subarray(0, n).equals(PREFACE.subarray(off, off + n))) {
          throw H2Error.connection(abi.PROTOCOL_ERROR, "invalid connection preface");
        }
        this.prefaceLeft -= n;
        chunk = chunk.subarray(n);
        if (chunk.length === 0) return;
      }
      this.reader.feed(chunk, this.onFrame);
    } catch (err) {
      this.fail(err);
    }
  }

  private readonly onFrame = (
    type: number,
    flags: number,
    id: number,
    payload: Uint8Array,
    a: number,
    b: number,
    c: number,
  ): void => {
    if (this.destroyed) return;
    if (!this.gotSettings && type !== abi.FRAME_SETTINGS) {
      throw H2Error.connection(abi.PROTOCOL_ERROR, "first frame is not SETTINGS");
    }
    switch (type) {
      case abi.FRAME_DATA:
        return this.onDataFrame(id, flags, payload, a);
      case abi.FRAME_HEADERS:
        return this.onHeadersFrame(id, flags, payload, b);
      case abi.FRAME_CONTINUATION:
        return this.onContinuation(flags, payload);
      case abi.FRAME_SETTINGS:
        return this.onSettings(flags, payload, a);
      case abi.FRAME_PING:
        return this.onPing(flags, payload);
      case abi.FRAME_WINDOW_UPDATE:
        return this.onWindowUpdate(id, a);
      case abi.FRAME_RST_STREAM:
        return this.onRstStream(id, a >>> 0);
      case abi.FRAME_GOAWAY:
        return this.onGoaway(a, b >>> 0, payload);
      case abi.EV_STREAM_ERROR:
        return this.resetStream(id, a);
      case abi.FRAME_PRIORITY:
        return; // deprecated (RFC 9113 §5.3.2): validated by the reader, otherwise ignored
    }
    void c;
  };

  private idle(id: number): boolean {
    // A stream id we have not seen yet: peer-initiated above the last one, or ours not yet used.
    const peerInitiated = (id & 1) === (this.role === "server" ? 1 : 0);
    return peerInitiated ? id > this.lastPeerStreamId : id >= this.nextStreamId;
  }

  private onDataFrame(id: number, flags: number, payload: Uint8Array, fc: number): void {
    if (payload.length === 0 && !(flags & abi.FLAG_END_STREAM) && fc === 0 && flags & abi.FLAG_FRAME_END) {
      if (this.empties.hit()) throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "flood of empty DATA frames");
    }
    // Connection window first: every DATA byte counts, whatever its stream (§6.9).
    this.recvWindow -= fc;
    if (this.recvWindow < 0) throw H2Error.connection(abi.FLOW_CONTROL_ERROR, "connection window exceeded");
    const s = this.streams.get(id);
    if (!s) {
      if (this.idle(id)) throw H2Error.connection(abi.PROTOCOL_ERROR, "DATA on an idle stream", id);
      this.consumeConnection(fc); // closed stream: discard, give the credit back
      // In flight when we reset it: ignore. Otherwise the peer closed it (or skipped its id): STREAM_CLOSED.
      if (!this.weReset(id) && flags & abi.FLAG_FRAME_END) this.resetStream(id, abi.STREAM_CLOSED);
      return;
    }
    if (s.remoteEnded || s.onResponse) {
      this.consumeConnection(fc);
      this.resetStream(id, abi.STREAM_CLOSED);
      return;
    }
    s.recvWindow -= fc;
    if (s.recvWindow < 0) {
      this.consumeConnection(fc);
      this.resetStream(id, abi.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.contentLength >= 0 && s.pushed + payload.length > s.contentLength) {
      this.consumeConnection(fc);
      this.resetStream(id, abi.PROTOCOL_ERROR); // more DATA than content-length (§8.1.1)
      return;
    }
    const padding = fc - payload.length;
    if (padding > 0) this.creditPadding(s, padding);
    if (payload.length > 0) {
      s.pushed += payload.length;
      s.push(payload);
    }
    if (flags & abi.FLAG_END_STREAM) this.onRemoteEnd(s);
    else if (payload.length > 0) this._credit(s);
  }

  private onHeadersFrame(id: number, flags: number, payload: Uint8Array, dep: number): void {
    void dep;
    if (payload.length > this.maxHeaderBlock) {
      throw H2Error.violation(abi.ENHANCE_YOUR_CALM, abi.R_HEADER_BLOCK_TOO_LARGE, id);
    }
    this.block = [payload];
    this.blockBytes = payload.length;
    this.blockStream = id;
    this.blockFlags = flags;
    this.blockContinuations = 0;
    if (flags & abi.FLAG_END_HEADERS) this.onHeaderBlock();
  }

  private onContinuation(flags: number, payload: Uint8Array): void {
    if (++this.blockContinuations > this.opts.maxContinuations) {
      throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "too many CONTINUATION frames", this.blockStream);
    }
    this.blockBytes += payload.length;
    // A compressed block can only be larger than its header list by a few bytes per field.
    if (this.blockBytes > this.maxHeaderBlock) {
      throw H2Error.violation(abi.ENHANCE_YOUR_CALM, abi.R_HEADER_BLOCK_TOO_LARGE, this.blockStream);
    }
    this.block.push(payload);
    if (flags & abi.FLAG_END_HEADERS) this.onHeaderBlock();
  }

  private onHeaderBlock(): void {
    const id = this.blockStream,
      flags = this.blockFlags;
    const block = this.block.length === 1 ? this.block[0] : Buffer.concat(this.block);
    this.block = [];
    let list: HeaderList | null = null;
    try {
      list = this.decoder.decode(block);
    } catch (err) {
      // An oversized list was decoded to keep HPACK in sync: only this stream fails.
      if (!(err instanceof H2Error) || err.reason !== abi.R_HPACK_LIST_TOO_LARGE) throw err;
    }
    const s = this.streams.get(id);
    if (s) return this.onStreamHeaders(s, list, flags);
    if (!this.idle(id)) {
      if (this.weReset(id)) return; // trailers in flight when we reset the stream: ignore
      // A stream the peer closed, or an id below one it already used (§5.1.1).
      throw H2Error.connection(abi.PROTOCOL_ERROR, "HEADERS on a closed stream: stream ids must increase", id);
    }
    if (this.role === "client") {
      throw H2Error.connection(abi.PROTOCOL_ERROR, "HEADERS on a stream the server may not open", id);
    }
    if ((id & 1) === 0) throw H2Error.connection(abi.PROTOCOL_ERROR, "even stream id from a client", id);
    this.lastPeerStreamId = id;
    this.onRequest(id, list, flags);
  }

  /** Server: a new request. */
  private onRequest(id: number, list: HeaderList | null, flags: number): void {
    if (this.goawaySent || this.closing) return this.resetStream(id, abi.REFUSED_STREAM);
    if (this.streams.size >= this.opts.maxConcurrentStreams) return this.resetStream(id, abi.REFUSED_STREAM);
    const s = new H2Stream(this, id, this.peerInitialWindow, this.opts.streamWindow);
    this.streams.set(id, s);
    if (list === null) {
      this.provokedReset();
      return this.respond(s, 431, []);
    }
    const bad = malformed(list, true);
    if (bad !== null) return this.resetStream(id, abi.PROTOCOL_ERROR);
    s.headers = list;
    const method = header(list, ":method");
    if (method !== "CONNECT") {
      if (flags & abi.FLAG_END_STREAM) this.onRemoteEnd(s);
      return this.respond(s, 400, []); // well-formed, but only CONNECT is served
    }
    const length = header(list, "content-length");
    if (length !== undefined) s.contentLength = Number(length);
    if (flags & abi.FLAG_END_STREAM) this.onRemoteEnd(s);
    if (s.streamClosed) return;
    const respond: Respond = (status, headers) => this.respond(s, status, toList(headers));
    if (this.listenerCount("connect") === 0) return respond(503);
    s.delivered = true;
    this.emit("connect", s, list, respond);
  }

  /** Response headers (client) or trailers (either side). */
  private onStreamHeaders(s: H2Stream, list: HeaderList | null, flags: number): void {
    if (s.remoteEnded) return this.resetStream(s.id, abi.STREAM_CLOSED);
    if (this.role === "client" && s.onResponse) {
      if (list === null) return this.resetStream(s.id, abi.PROTOCOL_ERROR);
      const bad = malformed(list, false);
      const status = Number(header(list, ":status"));
      if (bad !== null || !(status >= 100 && status <= 999)) return this.resetStream(s.id, abi.PROTOCOL_ERROR);
      if (status < 200) return; // informational: the final response follows
      s.status = status;
      s.headers = list;
      const done = s.onResponse;
      s.onResponse = null;
      s.delivered = true;
      done();
      if (flags & abi.FLAG_END_STREAM) this.onRemoteEnd(s);
      return;
    }
    // Trailers: must end the stream and carry no pseudo-headers (§8.1).
    if (!(flags & abi.FLAG_END_STREAM)) return this.resetStream(s.id, abi.PROTOCOL_ERROR);
    if (list !== null && list.some(([n]) => n.length === 0 || n[0] === ":"))
      return this.resetStream(s.id, abi.PROTOCOL_ERROR);
    this.onRemoteEnd(s);
  }

  private onRemoteEnd(s: H2Stream): void {
    if (s.remoteEnded) return;
    // The DATA must add up to content-length (§8.1.1).
    if (s.contentLength >= 0 && s.pushed !== s.contentLength) return this.resetStream(s.id, abi.PROTOCOL_ERROR);
    s.remoteEnded = true;
    s.push(null);
    this.maybeCloseStream(s);
  }

  private onSettings(flags: number, payload: Uint8Array, count: number): void {
    if (flags & abi.FLAG_ACK) {
      if (this.settingsTimer) clearTimeout(this.settingsTimer);
      this.settingsTimer = null;
      return;
    }
    if (this.gotSettings && this.settingsRate.hit()) {
      throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "SETTINGS flood");
    }
    this.gotSettings = true;
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    // Entries apply in order (§6.5), so for each id the last value wins; the reader caps a frame
    // at MAX_SETTINGS_ENTRIES. INITIAL_WINDOW_SIZE is applied to the streams once, with the
    // largest value of the frame checked first: a window that any intermediate value pushes
    // past 2^31-1 is the same FLOW_CONTROL_ERROR as applying them one by one (§6.9.2).
    const last = new Map<number, number>();
    let maxInitialWindow = -1;
    for (let i = 0; i < count; i++) {
      const id = dv.getUint16(i * 6),
        v = dv.getUint32(i * 6 + 2);
      last.set(id, v);
      if (id === abi.SETTINGS_INITIAL_WINDOW_SIZE) maxInitialWindow = Math.max(maxInitialWindow, v);
    }
    if (maxInitialWindow > this.peerInitialWindow) {
      let largest = -Infinity;
      for (const s of this.streams.values()) largest = Math.max(largest, s.sendWindow);
      if (largest + maxInitialWindow - this.peerInitialWindow > abi.MAX_WINDOW_SIZE) {
        throw H2Error.connection(abi.FLOW_CONTROL_ERROR, "stream window overflow from SETTINGS");
      }
    }
    for (const [id, v] of last) {
      this.remoteSettings.set(id, v);
      switch (id) {
        case abi.SETTINGS_HEADER_TABLE_SIZE:
          this.encoder.setMaxTableSize(Math.min(v, abi.DEFAULT_HEADER_TABLE_SIZE));
          break;
        case abi.SETTINGS_MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = v;
          this.wakeWaiters();
          break;
        case abi.SETTINGS_INITIAL_WINDOW_SIZE: {
          // Applies to every open stream, as a delta (§6.9.2).
          const delta = v - this.peerInitialWindow;
          this.peerInitialWindow = v;
          for (const s of this.streams.values()) s.sendWindow += delta;
          if (delta > 0) this.flushBlocked();
          break;
        }
        case abi.SETTINGS_MAX_FRAME_SIZE:
          this.peerMaxFrameSize = v;
          break;
      }
    }
    this.write(this.writer.settings([], true));
    this.emit("remoteSettings", this.remoteSettings);
  }

  private onPing(flags: number, payload: Uint8Array): void {
    if (flags & abi.FLAG_ACK) {
      if (this.pingDeadline) clearTimeout(this.pingDeadline);
      this.pingDeadline = null;
      const rtt = Date.now() - this.pingSentAt;
      for (const w of this.pingWaiters.splice(0)) w(rtt);
      return;
    }
    if (this.pings.hit()) throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "PING flood");
    this.write(this.writer.ping(payload, true));
  }

  private onWindowUpdate(id: number, inc: number): void {
    if (id === 0) {
      this.sendWindow += inc;
      if (this.sendWindow > abi.MAX_WINDOW_SIZE) {
        throw H2Error.connection(abi.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      this.flushBlocked();
      return;
    }
    const s = this.streams.get(id);
    if (!s) {
      if (this.idle(id)) throw H2Error.connection(abi.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream", id);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > abi.MAX_WINDOW_SIZE) return this.resetStream(id, abi.FLOW_CONTROL_ERROR);
    this.flushStream(s);
  }

  private onRstStream(id: number, code: number): void {
    // Rapid reset (CVE-2023-44487) is a client resetting streams it opened; a server resetting or refusing
    // ours is an answer, bounded by our own stream limit, and must not end a pooled connection.
    if (this.role === "server" && this.resets.hit()) {
      throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "RST_STREAM flood (rapid reset)");
    }
    const s = this.streams.get(id);
    if (!s) {
      if (this.idle(id)) throw H2Error.connection(abi.PROTOCOL_ERROR, "RST_STREAM on an idle stream", id);
      return;
    }
    s.rstCode = code;
    this.closeStream(s);
    if ((code === abi.NO_ERROR || code === abi.CANCEL) && !s.onResponse) {
      // "Stop", not failure (§8.1; an EOF for the tunnel): what was received stays readable to its end —
      // destroying the stream would drop bytes the peer did send, and the reader would take the cut for a
      // complete answer — and later writes are dropped (the peer asked for no more).
      if (!s.remoteEnded) {
        s.remoteEnded = true;
        s.push(null);
      }
      // Closed once what is buffered has been read (at once when nothing is).
      if (s.readableLength === 0) s.destroy();
      else s.once("end", () => s.destroy());
      return;
    }
    // A pending connect() fails whatever the code.
    this.failStream(s, H2Error.stream(id, code, `stream reset by peer: ${errorCodeName(code)}`));
  }

  private onGoaway(lastStreamId: number, code: number, debug: Uint8Array): void {
    this.goawayReceived = lastStreamId;
    this.emit("goaway", code, lastStreamId, Buffer.from(debug).toString("latin1"));
    // Streams we opened above lastStreamId were never processed: safe to retry elsewhere.
    for (const s of [...this.streams.values()]) {
      if ((s.id & 1) === (this.role === "client" ? 1 : 0) && s.id > lastStreamId) {
        // Tell the peer we dropped it too, in case it had started it after all.
        this.sendRst(s.id, abi.CANCEL);
        this.closeStream(s);
        this.failStream(s, H2Error.stream(s.id, abi.REFUSED_STREAM, "stream refused by GOAWAY"));
      }
    }
    for (const w of this.waiting.splice(0)) w();
    if (code !== abi.NO_ERROR) {
      this.teardown(H2Error.connection(code, `GOAWAY from peer: ${errorCodeName(code)}`));
      this.endSocket();
      return;
    }
    this.maybeFinish();
  }

  // ---- Sending ------------------------------------------------------------------------------

  private write(buf: Uint8Array, control = true): boolean {
    if (this.destroyed && !this.goawaySent) return false;
    if (control && this.socket.writableNeedDrain && !this.destroyed) {
      // A peer that sends but does not read would otherwise queue our answers without limit.
      this.controlQueued += buf.length;
      if (this.controlQueued > this.opts.maxQueuedControlBytes) {
        this.controlQueued = 0;
        this.fail(H2Error.connection(abi.ENHANCE_YOUR_CALM, "peer does not read: control frames queued"));
        return false;
      }
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.flushTurn);
    }
    return this.socket.write(buf);
  }

  private readonly flushTurn = () => this.flush();

  /** Uncorks: what this turn wrote goes to the socket now. */
  private flush(): void {
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
  }

  private onDrain(): void {
    this.controlQueued = 0;
    for (const w of this.drainWaiters.splice(0)) w();
  }

  /**
   * Calls `cb` once the socket has room again (backpressure reaches the stream writer). Room is our own bound,
   * not the socket's 16 KiB high-water mark: every DATA frame of a bulk stream is over that mark while the tick's
   * writes are corked, and waiting for 'drain' each time made each 64 KiB write a pause and a resume of its
   * reader. 'drain' still comes: the socket asked for it when its buffer passed the mark.
   */
  private afterDrain(cb: () => void): void {
    if (this.socket.writableNeedDrain && this.socket.writableLength >= SEND_BUFFER) this.drainWaiters.push(cb);
    else cb();
  }

  /** @internal H2Stream._write/_final: queue, then send what the windows allow. */
  _sendData(s: H2Stream, buf: Uint8Array, end: boolean, cb: (err?: Error | null) => void): void {
    if (s.streamClosed || s.localEnded) {
      // RST_STREAM(NO_ERROR/CANCEL) asked us to stop sending: not a failure of the stream.
      const code = s.rstCode ?? abi.NO_ERROR;
      cb(code !== abi.NO_ERROR && code !== abi.CANCEL ? H2Error.stream(s.id, code, "stream was reset") : null);
      return;
    }
    const w: PendingWrite = { buf, off: 0, end, cb, next: null };
    if (s.pending === null) {
      s.pending = w;
      this.flushStream(s);
      return;
    }
    let last = s.pending;
    while (last.next !== null) last = last.next;
    last.next = w;
  }

  /** Sends a stream's queued writes as far as both windows allow. */
  private flushStream(s: H2Stream): void {
    while (s.pending !== null && !s.streamClosed) {
      const w: PendingWrite = s.pending;
      let left = w.buf.length - w.off;
      while (left > 0) {
        const n = Math.min(left, s.sendWindow, this.sendWindow, this.peerMaxFrameSize);
        if (n <= 0) {
          this.blocked.add(s);
          return;
        }
        const last = n === left && w.end;
        this.write(this.writer.dataHeader(s.id, n, last), false);
        this.write(w.off === 0 && n === w.buf.length ? w.buf : w.buf.subarray(w.off, w.off + n), false);
        s.sendWindow -= n;
        this.sendWindow -= n;
        w.off += n;
        left -= n;
        if (last) s.localEnded = true;
      }
      if (w.end && !s.localEnded) {
        this.write(this.writer.dataHeader(s.id, 0, true), false);
        s.localEnded = true;
      }
      s.pending = w.next;
      this.afterDrain(() => w.cb());
      if (s.localEnded) this.maybeCloseStream(s);
    }
    this.blocked.delete(s);
  }

  private flushBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.blocked.delete(s);
      this.flushStream(s);
    }
  }

  private respond(s: H2Stream, status: number, headers: HeaderList): void {
    if (s.responded || s.streamClosed) return;
    s.responded = true;
    const end = status !== 200; // an error response closes the tunnel (HEADERS with END_STREAM)
    this.write(
      this.encoder.encodeHeadersFrame(s.id, [[":status", String(status)], ...headers], end, this.peerMaxFrameSize),
    );
    if (end) {
      s.localEnded = true;
      if (!s.remoteEnded) {
        // The request body will not be read: stop it politely (§8.1).
        this.sendRst(s.id, abi.NO_ERROR);
        s.rstCode = abi.NO_ERROR;
        this.closeStream(s);
        s.destroy();
        return;
      }
      this.maybeCloseStream(s);
    }
  }

  /** @internal Grants the peer credit for bytes the application has read (never before). */
  _credit(s: H2Stream): void {
    if (s.streamClosed) return;
    const consumed = s.pushed - s.readableLength;
    if (consumed > s.connCounted) {
      this.consumeConnection(consumed - s.connCounted);
      s.connCounted = consumed;
    }
    // Stream credit in batches of half a window: the peer always has room for half a window.
    const fresh = consumed - s.credited;
    if (s.remoteEnded || fresh < this.opts.streamWindow / 2) return;
    s.credited = consumed;
    s.recvWindow += fresh;
    this.write(this.writer.windowUpdate(s.id, fresh));
  }

  private creditPadding(s: H2Stream, n: number): void {
    // Padding is never read by the application: return it at once.
    s.recvWindow += n;
    this.consumeConnection(n);
    this.write(this.writer.windowUpdate(s.id, n));
  }

  private consumeConnection(n: number): void {
    this.recvConsumed += n;
    if (this.recvConsumed >= this.opts.connectionWindow / 4) {
      this.recvWindow += this.recvConsumed;
      this.write(this.writer.windowUpdate(0, this.recvConsumed));
      this.recvConsumed = 0;
    }
  }

  private sendPing(): void {
    this.pingSentAt = Date.now();
    const opaque = Buffer.alloc(8);
    opaque.writeDoubleBE(this.pingSentAt);
    this.write(this.writer.ping(opaque));
    this.flush();
    if (this.opts.keepaliveTimeoutMs > 0 && !this.pingDeadline) {
      this.pingDeadline = setTimeout(() => {
        this.emit("timeout");
        this.destroy(new Error("keepalive PING unanswered"), abi.NO_ERROR);
      }, this.opts.keepaliveTimeoutMs);
      this.pingDeadline.unref();
    }
  }

  private keepalive(): void {
    if (!this.destroyed && !this.pingDeadline) this.sendPing();
  }

  private sendGoaway(code: number, debug: string): void {
    if (this.goawaySent) return;
    this.goawaySent = true;
    this.write(this.writer.goaway(this.lastPeerStreamId, code, Buffer.from(debug.slice(0, 256), "latin1")));
    this.flush();
  }

  /** True if we reset this (closed) stream, or it is too old to tell. */
  private weReset(id: number): boolean {
    return id <= this.forgottenResets || this.recentlyReset.has(id);
  }

  /** Writes RST_STREAM and remembers the id for a while (frames already in flight are then ignored). */
  private sendRst(id: number, code: number): void {
    this.write(this.writer.rstStream(id, code));
    const recent = this.recentlyReset;
    recent.add(id);
    if (recent.size > RECENT_RESETS) {
      const oldest = recent.values().next().value as number;
      recent.delete(oldest);
      this.forgottenResets = Math.max(this.forgottenResets, oldest);
    }
  }

  /** A stream we reset or refuse because of the peer's frames counts against a budget (MadeYouReset). */
  private provokedReset(): void {
    if (this.localResets.hit()) {
      throw H2Error.connection(abi.ENHANCE_YOUR_CALM, "too many streams reset for invalid frames (MadeYouReset)");
    }
  }

  /** Sends RST_STREAM and forgets the stream (stream errors, refusals). */
  private resetStream(id: number, code: number): void {
    this.provokedReset();
    this.sendRst(id, code);
    const s = this.streams.get(id);
    if (!s) return;
    s.rstCode = code;
    this.closeStream(s);
    this.failStream(s, H2Error.stream(id, code, `stream reset: ${errorCodeName(code)}`));
  }

  /**
   * Ends a stream with an error where its owner will see it: a pending connect() rejects; a
   * stream the application holds emits 'error'; a stream nobody was given yet just closes
   * (an unheard 'error' event would crash the process on a peer's bytes).
   */
  private failStream(s: H2Stream, err: Error | null): void {
    if (s.onResponse) {
      const done = s.onResponse;
      s.onResponse = null;
      done(err ?? H2Error.stream(s.id, abi.CANCEL, "stream closed before its response"));
      s.destroy();
    } else if (s.delivered && err) {
      // The owner may attach 'error' later in this turn: in a promise reaction to connect() or after a
      // 'connect' listener returned. Node emits 'error' on process.nextTick, which runs before promise
      // reactions, so destroying now would make the error unheard (a process crash); destroy once this
      // turn's ticks and microtasks are done. The stream is already closed in the session.
      setImmediate(() => s.destroy(err));
    } else {
      s.destroy();
    }
  }

  // ---- Lifecycle ---------------------------------------------------------------------------

  /** @internal H2Stream._destroy: an application destroy() resets the stream. */
  _streamDestroyed(s: H2Stream, err: Error | null): void {
    if (s.streamClosed) return;
    // A reader that stopped early (e.g. a for-await loop left) is a cancel, not a failure.
    const benign = !err || (err as NodeJS.ErrnoException).code === "ERR_STREAM_PREMATURE_CLOSE";
    const code = err instanceof H2Error ? err.code : benign ? abi.CANCEL : abi.INTERNAL_ERROR;
    s.rstCode = code;
    if (!this.destroyed) this.sendRst(s.id, code);
    this.closeStream(s);
  }

  private maybeCloseStream(s: H2Stream): void {
    if (s.localEnded && s.remoteEnded && s.pending === null) this.closeStream(s);
  }

  private closeStream(s: H2Stream): void {
    if (s.streamClosed) return;
    s.streamClosed = true;
    this.streams.delete(s.id);
    this.blocked.delete(s);
    // Data the application never read still occupied the connection window.
    if (s.pushed > s.connCounted && !this.destroyed) this.consumeConnection(s.pushed - s.connCounted);
    s.connCounted = s.pushed;
    let w = s.pending;
    s.pending = null;
    for (; w !== null; w = w.next) {
      const e =
        s.rstCode === abi.NO_ERROR || s.rstCode === abi.CANCEL
          ? null
          : H2Error.stream(s.id, s.rstCode ?? abi.CANCEL, "stream closed before the write was sent");
      process.nextTick(w.cb, e);
    }
    this.emit("streamClosed", s);
    this.wakeWaiters();
    this.maybeFinish();
  }

  private wakeWaiters(): void {
    const room = Math.min(this.opts.maxClientStreams, this.peerMaxStreams) - this.streams.size;
    for (let i = 0; i < room && this.waiting.length > 0; i++) this.waiting.shift()!();
  }

  private maybeFinish(): void {
    if (this.destroyed || this.streams.size > 0) return;
    if (this.closing || this.goawayReceived >= 0) {
      this.teardown(null);
      this.endSocket();
    }
  }

  /** Connection error: GOAWAY with its code, then tear down (§5.4.1). */
  private fail(err: unknown): void {
    const e =
      err instanceof H2Error
        ? err
        : H2Error.connection(abi.INTERNAL_ERROR, err instanceof Error ? err.message : String(err));
    if (this.destroyed) return;
    this.sendGoaway(e.code, e.message);
    this.emit("protocolError", e);
    this.teardown(e);
    this.endSocket();
  }

  /** Flushes what we wrote (GOAWAY last), then closes the socket both ways. */
  private endSocket(): void {
    const sock = this.socket;
    if (sock.destroyed) return;
    this.flush();
    // A lingering close: destroyed once our FIN is out and the peer's has come. Closing while the peer's last
    // frames (a WINDOW_UPDATE, a PING) sit unread would make the kernel answer with RST and drop what we still
    // had queued for the peer: the tail of a tunnel that finished during a drain.
    sock.once("finish", () => {
      if (sock.readableEnded) sock.destroy();
      else sock.once("end", () => sock.destroy());
    });
    sock.end();
    // A peer that stops reading (or never closes) cannot keep the socket open.
    setTimeout(() => sock.destroy(), 1000).unref();
  }

  private onSocketGone(err: Error | null): void {
    if (this.destroyed) return;
    this.teardown(err ?? (this.streams.size > 0 ? new Error("connection closed") : null));
    this.socket.destroy();
  }

  private teardown(err: Error | null): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.pingDeadline) clearTimeout(this.pingDeadline);
    if (this.settingsTimer) clearTimeout(this.settingsTimer);
    for (const s of [...this.streams.values()]) {
      this.closeStream(s);
      this.failStream(s, err ?? (s.onResponse ? H2Error.stream(s.id, abi.CANCEL, "session closed") : null));
    }
    for (const w of this.waiting.splice(0)) w();
    for (const w of this.drainWaiters.splice(0)) w();
    this.reader.dispose();
    this.decoder.dispose();
    this.encoder.dispose();
    if (err && this.listenerCount("error") > 0) this.emit("error", err);
    this.emit("close");
  }
}
