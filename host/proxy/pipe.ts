// Bidirectional copy between an application socket and an HBONE stream, with ztunnel's close
// mapping (HBONE tunnels over HTTP/2 CONNECT): FIN <-> END_STREAM (half-close both ways);
// RST_STREAM NO_ERROR/CANCEL is EOF, other codes reset the app socket; a TCP RST from the app
// is passed on as FIN (ztunnel #1483). Bytes are counted by the stream and socket themselves.

import type { Duplex } from "node:stream";
import type net from "node:net";
import * as abi from "../../assembly/abi.js";
import type { H2Stream } from "../h2/stream.js";

/** Resolves when both directions are done (or torn down). */
export function pipeTunnel(app: Duplex, stream: H2Stream | Duplex): Promise<void> {
  return new Promise((resolve) => {
    let appDone = false, streamDone = false, finished = false;
    const finish = () => {
      if (finished || !appDone || !streamDone) return;
      finished = true;
      resolve();
    };
    app.pipe(stream); // app FIN -> stream.end() -> END_STREAM
    stream.pipe(app); // END_STREAM -> app.end() -> shutdown(WR)

    app.on("error", () => {
      // The app reset: send what we have as a FIN, as ztunnel does.
      if (!stream.writableEnded) stream.end();
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
      const code = (stream as H2Stream).rstCode;
      if (code === abi.NO_ERROR || code === abi.CANCEL) {
        if (!app.writableEnded) app.end();
      } else {
        resetSocket(app);
      }
    });
    stream.on("close", () => {
      streamDone = true;
      const s = stream as H2Stream;
      if (!s.readableEnded && !app.writableEnded && !app.destroyed) {
        // Reset by the peer: NO_ERROR/CANCEL end the app's stream gently.
        if (s.rstCode === null || s.rstCode === abi.NO_ERROR || s.rstCode === abi.CANCEL) app.end();
        else resetSocket(app);
      }
      if (app.writableEnded && !app.destroyed) app.once("finish", () => app.destroy());
      finish();
    });
  });
}

/** Sends a TCP RST where the socket supports it, else destroys it. */
export function resetSocket(s: Duplex): void {
  const sock = s as Partial<net.Socket>;
  if (typeof sock.resetAndDestroy === "function" && !(s as net.Socket).destroyed) sock.resetAndDestroy();
  else s.destroy();
}
