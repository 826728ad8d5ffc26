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
import type { H2Stream } from "../h2/stream.js";
import { H2Error } from "../errors.js";
import { hiddenReset } from "../sys/index.js";

/** Resolves when both directions are done (or torn down). */
export function pipeTunnel(app: Duplex, stream: H2Stream | Duplex): Promise<void> {
  return new Promise((resolve) => {
    let appDone = false,
      streamDone = false,
      finished = false;
    const finish = () => {
      if (finished || !appDone || !streamDone) return;
      finished = true;
      resolve();
    };
    // A side that died before the pipe started (a client reset during setup, a stream reset in
    // the same write as its 200) fires no more 'close': tear the other down now, or the tunnel
    // would stay open (and counted) for ever.
    if (app.destroyed || stream.destroyed) {
      if (!stream.destroyed) stream.destroy();
      else if (!app.destroyed && gentle((stream as H2Stream).rstCode)) app.end(() => app.destroy());
      else if (!app.destroyed) resetSocket(app);
      resolve();
      return;
    }
    pump(app, stream); // app FIN -> stream.end() -> END_STREAM
    pump(stream, app); // END_STREAM -> app.end() -> shutdown(WR)

    app.on("error", (e: Error) => {
      // The app's connection broke (a reset): CONNECT_ERROR, never a FIN that would read as complete.
      if (stream.destroyed) return;
      if ("rstCode" in stream)
        stream.destroy(H2Error.stream(0, abi.CONNECT_ERROR, `application connection: ${e.message}`));
      else resetSocket(stream); // plain TCP passthrough: pass the reset on as a reset
    });
    app.on("close", () => {
      appDone = true;
      if (!stream.writableEnded && !stream.destroyed) stream.end();
      // Nobody is left to read what the peer still sends: stop it (CANCEL reads as EOF there).
      if (!stream.readableEnded && !stream.destroyed) {
        if (stream.writableFinished) stream.destroy();
        else stream.once("finish", () => stream.destroy());
      }
      finish();
    });
    stream.on("error", () => {
      if (gentle((stream as H2Stream).rstCode)) {
        if (!app.writableEnded) app.end();
      } else {
        resetSocket(app);
      }
    });
    stream.on("close", () => {
      streamDone = true;
      const s = stream as H2Stream;
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
        else app.once("finish", () => app.destroy());
      }
      finish();
    });
  });
}

/**
 * One direction of a tunnel, by hand instead of `from.pipe(to)`: the same semantics (write until `to` is full,
 * pause `from` until 'drain'; `from`'s end ends `to`) with one small object per direction and no closures: the
 * listeners are shared by every tunnel and find their pump on the emitter (`from[READS]`, `to[WRITES]`), so an
 * idle tunnel holds two objects instead of pipe()'s fourteen closures. Teardown (errors, close) is pipeTunnel's.
 */
class Pump {
  waiting = false;
  corked = false;

  constructor(
    readonly from: Duplex,
    readonly to: Duplex,
  ) {}

  data(chunk: Buffer): void {
    // Hold on what `to` still buffers once the write ran, not on write()'s answer: write() compares before the
    // chunk is handed on, so a chunk as large as the high-water mark (a 64 KiB socket read, a 16 KiB TLS record)
    // answers false even when the kernel or the session took it at once. pipe() pauses the reader on that
    // false, and per chunk costs a pause, a resume (two epoll_ctl calls on a socket) and a turn of the event
    // loop. What stays buffered is bounded as before: one chunk over the high-water mark.
    const to = this.to;
    // Bulk writes to a socket in one turn of the event loop go out as one writev: the records of one TLS read
    // (four 16 KiB chunks of DATA) become one system call and one 64 KiB segment instead of four. A small chunk
    // (a request, an answer) is written at once: nothing is likely to join it.
    if (!this.corked && chunk.length >= COALESCE_FROM && to instanceof net.Socket) {
      this.corked = true;
      to.cork();
      setImmediate(uncorkPump, this);
    }
    to.write(chunk);
    // A destroyed `to` has nobody left to read (pipe() would have unpiped on its 'close').
    if (to.writableLength >= holdAt(to) && !to.destroyed && !this.waiting) this.hold();
  }

  uncork(): void {
    this.corked = false;
    this.to.uncork();
  }

  /** `to` is full already: wait for its 'drain' before reading `from`. */
  hold(): void {
    this.waiting = true;
    this.from.pause();
  }

  drain(): void {
    if (!this.waiting) return;
    this.waiting = false;
    this.from.resume();
  }

  end(): void {
    // A socket's end may hide a reset (see resetBehindEof): then `from` is destroyed with it, and the error
    // handlers of pipeTunnel reset the other side.
    const reset = resetBehindEof(this.from);
    if (reset) return void this.from.destroy(reset);
    if (!this.to.writableEnded && !this.to.destroyed) this.to.end();
  }
}

function uncorkPump(p: Pump): void {
  p.uncork();
}

/** Bytes a pump lets `to` buffer before it pauses its reader: the high-water mark, and room for one tick's
 *  coalesced writes to a socket (its 16 KiB mark would pause after the first of them). */
const COALESCE = 64 * 1024;
/** Chunks from this size on start a coalesced write (a full TLS record is 16 KiB). */
const COALESCE_FROM = 8 * 1024;
function holdAt(to: Duplex): number {
  return Math.max(to.writableHighWaterMark, COALESCE);
}

/** The pump reading this stream, and the one writing to it (a tunnel's side is both). */
const READS = Symbol("pump reading this stream");
const WRITES = Symbol("pump writing to this stream");
type Pumped = Duplex & { [READS]?: Pump; [WRITES]?: Pump };

function onPumpData(this: Pumped, chunk: Buffer): void {
  this[READS]?.data(chunk);
}
function onPumpEnd(this: Pumped): void {
  this[READS]?.end();
}
function onPumpDrain(this: Pumped): void {
  this[WRITES]?.drain();
}

function pump(from: Pumped, to: Pumped): void {
  const p = new Pump(from, to);
  from[READS] = p;
  to[WRITES] = p;
  from.on("data", onPumpData);
  if (from.readableEnded)
    process.nextTick(() => p.end()); // its 'end' has been and gone
  else from.on("end", onPumpEnd); // emitted once
  to.on("drain", onPumpDrain);
  // A socket paused while its tunnel was dialled stays paused when a 'data' listener is added.
  if (to.writableNeedDrain) p.hold();
  else from.resume();
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
