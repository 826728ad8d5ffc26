// Bidirectional copy between an application socket and an HBONE stream, with ztunnel's close
// mapping (HBONE tunnels over HTTP/2 CONNECT): FIN <-> END_STREAM (half-close both ways);
// RST_STREAM NO_ERROR/CANCEL is EOF, other codes reset the app socket; a TCP error on the app
// socket (a reset) is RST_STREAM(CONNECT_ERROR) (RFC 9113 §8.5), so the far side resets its
// client too: a FIN there would pass a lost tail off as a complete answer. A reset that libuv
// reported as EOF (host/sys pendingSocketError says when) is a reset too. Bytes are counted by
// the stream and socket themselves.

import type { Duplex } from "node:stream";
import net from "node:net";
import * as abi from "../../assembly/abi.js";
import { PIPE_SLOT, type H2Stream } from "../h2/stream.js";
import { H2Error } from "../errors.js";
import { hiddenReset } from "../sys/index.js";
import { releaseDial } from "../net.js";
import { logger } from "../log.js";

const log = logger("proxy");

/** Resolves when both directions are done (or torn down). */
export function pipeTunnel(app: Duplex, stream: H2Stream | Duplex): Promise<void> {
  return new Promise((resolve) => startTunnel(app, stream, resolve));
}

/**
 * pipeTunnel with a callback instead of a Promise: `done` runs once both directions are done (or torn down). A
 * listener passes one `done` for all its tunnels, so an idle tunnel holds no Promise, closure or async frame.
 * The pipe owns both sides' errors from then on (and logs them at debug): the owner ownErrors gave a side is dropped.
 */
export function startTunnel(app: Duplex, stream: H2Stream | Duplex, done: (() => void) | null): void {
  // A side that died before the pipe started (a client reset during setup, a stream reset in
  // the same write as its 200) fires no more 'close': tear the other down now, or the tunnel
  // would stay open (and counted) for ever.
  if (app.destroyed || stream.destroyed) {
    if (!stream.destroyed) stream.destroy();
    else if (!app.destroyed && gentle((stream as H2Stream).rstCode)) app.end(() => app.destroy());
    else if (!app.destroyed) resetSocket(app);
    done?.();
    return;
  }
  const t = new Tunnel(app, stream, done);
  (app as Side)[PIPE_SLOT] = t;
  (stream as Side)[PIPE_SLOT] = t;
  // Both directions by hand instead of `from.pipe(to)`: the same semantics (write until `to` is full, pause `from`
  // until 'drain'; `from`'s end ends `to`): app FIN -> stream.end() -> END_STREAM, END_STREAM -> app.end() ->
  // shutdown(WR).
  for (const side of [app, stream]) {
    side.on("data", onTunnelData);
    if (side.readableEnded)
      process.nextTick(endOf, side); // its 'end' has been and gone
    else side.on("end", onTunnelEnd); // emitted once
    side.on("drain", onTunnelDrain);
    side.on("error", onTunnelError);
    side.on("close", onTunnelClose);
  }
  // A socket paused while its tunnel was dialled stays paused when a 'data' listener is added.
  if (stream.writableNeedDrain) t.hold(app);
  else app.resume();
  if (app.writableNeedDrain) t.hold(stream);
  else stream.resume();
  // Ours now: one 'error' (and 'close') listener on an idle tunnel's side, not an array of two.
  app.off("error", onUnpipedError);
  stream.off("error", onUnpipedError);
  if (app instanceof net.Socket) releaseDial(app);
  if (stream instanceof net.Socket) releaseDial(stream);
}

/**
 * Gives a tunnel's side (a client socket being tunnelled, a stream being set up or handed out) an error owner from
 * the moment it exists, until a pipe takes it over: a reset must never crash the process. One function for all.
 */
export function ownErrors(side: Duplex): void {
  side.on("error", onUnpipedError);
}

function onUnpipedError(e: Error): void {
  log.debug("tunnel connection ended with an error", { error: e });
}

// A Tunnel's state bits. HELD: that side is paused until the other one drains. DONE: that side closed.
const APP_HELD = 1;
const STREAM_HELD = 2;
const APP_DONE = 4;
const STREAM_DONE = 8;
const FINISHED = 16;

/**
 * One tunnel's state. Its listeners are shared by every tunnel and find it on the emitter (`side[PIPE_SLOT]`), so an
 * idle tunnel holds this one object instead of pipe()'s fourteen closures, a Promise and its reactions.
 */
class Tunnel {
  /** APP_HELD | STREAM_HELD | APP_DONE | STREAM_DONE | FINISHED (one field, not five: every idle tunnel has one). */
  bits = 0;

  constructor(
    readonly app: Duplex,
    readonly stream: Duplex,
    readonly done: (() => void) | null,
  ) {}

  /** The side `from` writes to. */
  peerOf(from: Duplex): Duplex {
    return from === this.app ? this.stream : this.app;
  }

  private heldBit(from: Duplex): number {
    return from === this.app ? APP_HELD : STREAM_HELD;
  }

  isHeld(from: Duplex): boolean {
    return (this.bits & this.heldBit(from)) !== 0;
  }

  /** `from`'s peer is full already: wait for its 'drain' before reading `from`. */
  hold(from: Duplex): void {
    this.bits |= this.heldBit(from);
    from.pause();
  }

  /** `to` has room again: resume the side that writes to it, if it waits. */
  drained(to: Duplex): void {
    const from = this.peerOf(to);
    if (!this.isHeld(from)) return;
    this.bits &= ~this.heldBit(from);
    from.resume();
  }

  finish(): void {
    if ((this.bits & (FINISHED | APP_DONE | STREAM_DONE)) !== (APP_DONE | STREAM_DONE)) return;
    this.bits |= FINISHED;
    this.done?.();
  }

  appError(e: Error): void {
    const stream = this.stream;
    // The app's connection broke (a reset): CONNECT_ERROR, never a FIN that would read as complete.
    if (stream.destroyed) return;
    if ("rstCode" in stream)
      stream.destroy(H2Error.stream(0, abi.CONNECT_ERROR, `application connection: ${e.message}`));
    else resetSocket(stream); // plain TCP passthrough: pass the reset on as a reset
  }

  appClosed(): void {
    const stream = this.stream;
    this.bits |= APP_DONE;
    if (!stream.writableEnded && !stream.destroyed) stream.end();
    // Nobody is left to read what the peer still sends: stop it (CANCEL reads as EOF there).
    if (!stream.readableEnded && !stream.destroyed) {
      if (stream.writableFinished) stream.destroy();
      else stream.once("finish", destroyThis);
    }
    this.finish();
  }

  streamError(): void {
    if (gentle((this.stream as H2Stream).rstCode)) {
      if (!this.app.writableEnded) this.app.end();
    } else {
      resetSocket(this.app);
    }
  }

  streamClosed(): void {
    const app = this.app;
    this.bits |= STREAM_DONE;
    const s = this.stream as H2Stream;
    if (!s.readableEnded && !app.writableEnded && !app.destroyed) {
      // Reset by the peer: NO_ERROR/CANCEL end the app's stream gently; closed with no code (the session went
      // away under it) is a cut, never a FIN.
      if (gentle(s.rstCode)) app.end();
      else resetSocket(app);
    }
    // Our FIN may be out already (END_STREAM, then a reset): the stream's close unpiped and so paused the app,
    // whose further bytes and FIN would never be read; a 'finish' listener added now would never run.
    if (app.writableEnded && !app.destroyed) {
      if (app.writableFinished) app.destroy();
      else app.once("finish", destroyThis);
    }
    this.finish();
  }
}

/** The tunnel a side belongs to. */
type Side = Duplex & { [PIPE_SLOT]?: Tunnel };

function onTunnelData(this: Side, chunk: Buffer): void {
  const t = this[PIPE_SLOT]!;
  const to = t.peerOf(this);
  // Bulk writes to a socket in one turn of the event loop go out as one writev: the records of one TLS read
  // (four 16 KiB chunks of DATA) become one system call and one 64 KiB segment instead of four. A small chunk
  // (a request, an answer) is written at once: nothing is likely to join it.
  // Corked already (this turn's first bulk chunk did it): the chunk joins that writev.
  if (to.writableCorked === 0 && chunk.length >= COALESCE_FROM && to instanceof net.Socket) {
    to.cork();
    setImmediate(uncork, to);
  }
  to.write(chunk);
  // Hold on what `to` still buffers once the write ran, not on write()'s answer: write() compares before the
  // chunk is handed on, so a chunk as large as the high-water mark (a 64 KiB socket read, a 16 KiB TLS record)
  // answers false even when the kernel or the session took it at once; pausing on that false cost a pause, a
  // resume (two epoll_ctl calls on a socket) and a turn of the event loop per chunk. The bound stays one chunk
  // over the mark. A destroyed `to` has nobody left to read (pipe() would have unpiped on its 'close').
  if (to.writableLength >= holdAt(to) && !to.destroyed && !t.isHeld(this)) t.hold(this);
}

function uncork(socket: net.Socket): void {
  socket.uncork();
}

/** Chunks from this size on start a coalesced write (a full TLS record is 16 KiB). */
const COALESCE_FROM = 8 * 1024;
/** Bytes a tunnel lets `to` buffer before it pauses the other side: the high-water mark, and room for one turn's
 *  coalesced writes to a socket (its 16 KiB mark would pause after the first of them). */
const COALESCE = 64 * 1024;
function holdAt(to: Duplex): number {
  return Math.max(to.writableHighWaterMark, COALESCE);
}

function onTunnelEnd(this: Side): void {
  endOf(this);
}

function endOf(from: Side): void {
  // A socket's end may hide a reset (see resetBehindEof): then `from` is destroyed with it, and the error
  // handlers reset the other side.
  const reset = resetBehindEof(from);
  if (reset) return void from.destroy(reset);
  const to = from[PIPE_SLOT]!.peerOf(from);
  if (!to.writableEnded && !to.destroyed) to.end();
}

/** `this` has room again: resume the side that writes to it. */
function onTunnelDrain(this: Side): void {
  this[PIPE_SLOT]!.drained(this);
}

function onTunnelError(this: Side, e: Error): void {
  const t = this[PIPE_SLOT]!;
  log.debug(this === t.app ? "tunnel application connection error" : "tunnel stream ended with an error", { error: e });
  if (this === t.app) t.appError(e);
  else t.streamError();
}

function onTunnelClose(this: Side): void {
  const t = this[PIPE_SLOT]!;
  if (this === t.app) t.appClosed();
  else t.streamClosed();
}

function destroyThis(this: Duplex): void {
  this.destroy();
}

/** RST_STREAM NO_ERROR/CANCEL ends the app's side with a FIN, not a reset; any other end (no code) is a reset. */
function gentle(code: number | null | undefined): boolean {
  return code === abi.NO_ERROR || code === abi.CANCEL;
}

/** An app socket whose EOF hid a reset (see host/sys hiddenReset): the error to destroy it with, else null. */
function resetBehindEof(from: Duplex): Error | null {
  return from instanceof net.Socket ? hiddenReset(from) : null;
}

/** Sends a TCP RST where the socket supports it, else destroys it. */
export function resetSocket(s: Duplex): void {
  const sock = s as Partial<net.Socket>;
  if (typeof sock.resetAndDestroy === "function" && !(s as net.Socket).destroyed) sock.resetAndDestroy();
  else s.destroy();
}
