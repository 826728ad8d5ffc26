// Fuzz target: a whole H2Session (host/h2/session.ts) over a real loopback TCP connection, server or client role.
// The other end is a raw socket writing the input: random and mutated frame sequences (a CONNECT client's, or a
// server's answers to our client's CONNECTs), in random chunks and at random moments, then an end or a reset.
// The application side behaves as the proxy's would, at random: answers 200 and echoes, refuses, answers late,
// resets, writes and ends; client streams are written to and read. It attaches its 'error' listeners the moment
// it holds a stream; nobody listens on the session's socket but the session.
// Invariants beyond the harness's (no uncaught exception or unhandled 'error'/rejection in this process): the
// session closes once its socket is gone, with no stream left open.

import net from "node:net";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { H2Session, type H2Stream, type SessionOptions } from "../../host/h2/session.js";
import type { Codec } from "../../host/wasm/codec.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { PREFACE } from "../helpers/raw-peer.js";
import { Mismatch, type Target } from "./harness.js";
import { chunk, mutate, type Rng } from "./rng.js";

let server: net.Server | undefined;
let port = 0;
const accepted: net.Socket[] = [];
const acceptWaiters: ((s: net.Socket) => void)[] = [];

async function socketPair(): Promise<[net.Socket, net.Socket]> {
  if (!server) {
    server = net.createServer({ allowHalfOpen: true }, (s) => {
      const w = acceptWaiters.shift();
      if (w) w(s);
      else accepted.push(s);
    });
    server.on("error", () => {});
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as net.AddressInfo).port;
  }
  const dialed = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  const acc = accepted.shift() ?? (await new Promise<net.Socket>((r) => acceptWaiters.push(r)));
  if (dialed.connecting) await once(dialed, "connect");
  return [dialed, acc];
}

function headers(enc: HpackEncoder, stream: number, list: HeaderList, endStream: boolean, rng: Rng): Buffer {
  return Buffer.from(enc.encodeHeadersFrame(stream, list, endStream, rng.chance(0.2) ? 16 : 16384));
}

/** What a peer sends: the frames a CONNECT client (toServer) or a CONNECT server might, in random order. */
function frames(rng: Rng, toServer: boolean): Buffer {
  const enc = new HpackEncoder(4096);
  const out: Buffer[] = [];
  if (toServer && rng.chance(0.95)) out.push(PREFACE);
  if (rng.chance(0.95)) {
    out.push(
      frame(
        abi.FRAME_SETTINGS,
        0,
        0,
        settingsPayload(
          rng.chance(0.5)
            ? []
            : Array.from(
                { length: rng.range(1, 6) },
                () =>
                  [rng.range(1, 8), rng.pick([0, 1, 100, 16384, 65535, 1 << 20, 0x7fffffff, rng.u32()])] as [
                    number,
                    number,
                  ],
              ),
        ),
      ),
    );
  }
  const ids = toServer ? [1, 3, 5, 7, 9] : [1, 3, 5];
  try {
    for (let n = rng.range(1, 25); n > 0; n--) {
      const id = rng.chance(0.9) ? rng.pick(ids) : rng.pick([0, 2, 11, 0x7fffffff]);
      switch (rng.int(14)) {
        case 0:
        case 1:
          out.push(
            headers(
              enc,
              id,
              toServer
                ? [
                    [":method", rng.chance(0.9) ? "CONNECT" : "GET"],
                    [":authority", rng.pick(["10.0.0.1:80", "", "x:99999"])],
                    ...(rng.chance(0.2) ? [["baggage", "k8s.pod.name=p"] as [string, string]] : []),
                  ]
                : [[":status", rng.pick(["200", "200", "503", "100", "abc", "99"])]],
              rng.chance(0.1),
              rng,
            ),
          );
          break;
        case 2:
        case 3:
          out.push(frame(abi.FRAME_DATA, rng.chance(0.2) ? abi.FLAG_END_STREAM : 0, id, rng.bytes(rng.size(3000))));
          break;
        case 4:
          out.push(
            frame(
              abi.FRAME_RST_STREAM,
              0,
              id,
              u32(rng.pick([abi.NO_ERROR, abi.CANCEL, abi.INTERNAL_ERROR, rng.u32()])),
            ),
          );
          break;
        case 5:
          out.push(
            frame(
              abi.FRAME_WINDOW_UPDATE,
              0,
              rng.chance(0.5) ? 0 : id,
              u32(rng.pick([0, 1, 65535, 0x7fffffff, rng.u32()])),
            ),
          );
          break;
        case 6:
          out.push(frame(abi.FRAME_PING, rng.chance(0.3) ? abi.FLAG_ACK : 0, 0, rng.bytes(8)));
          break;
        case 7:
          out.push(
            frame(
              abi.FRAME_SETTINGS,
              rng.chance(0.3) ? abi.FLAG_ACK : 0,
              0,
              rng.chance(0.5) ? [] : settingsPayload([[rng.range(1, 8), rng.u32() >>> rng.int(32)]]),
            ),
          );
          break;
        case 8:
          out.push(
            frame(abi.FRAME_GOAWAY, 0, 0, Buffer.concat([u32(rng.pick([0, 1, 3, 0x7fffffff])), u32(rng.int(14))])),
          );
          break;
        case 9: // a header block split over CONTINUATION
          out.push(
            frame(abi.FRAME_HEADERS, 0, id, [0x82]),
            frame(abi.FRAME_CONTINUATION, abi.FLAG_END_HEADERS, id, [0x84]),
          );
          break;
        case 10:
          out.push(frame(abi.FRAME_PRIORITY, 0, id, [0, 0, 0, rng.int(8), 15]));
          break;
        case 11: // trailers
          out.push(headers(enc, id, [["x-trailer", "1"]], rng.chance(0.8), rng));
          break;
        case 12:
          out.push(
            frame(
              abi.FRAME_DATA,
              abi.FLAG_PADDED,
              id,
              Buffer.concat([Buffer.from([4]), rng.bytes(10), Buffer.alloc(4)]),
            ),
          );
          break;
        default:
          out.push(frame(rng.int(256), rng.int(256), id, rng.bytes(rng.size(100))));
      }
    }
  } finally {
    enc.dispose();
  }
  const bytes = Buffer.concat(out);
  if (rng.chance(0.3)) return mutate(rng, bytes);
  return bytes;
}

const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The application's side of a server stream, as the inbound might behave. */
function serveStream(stream: H2Stream, respond: (status: number) => void, rng: Rng): void {
  stream.on("error", () => {});
  switch (rng.int(7)) {
    case 0:
    case 1:
      respond(200);
      stream.pipe(stream);
      break;
    case 2:
      respond(rng.pick([400, 401, 503]));
      break;
    case 3:
      setTimeout(() => {
        respond(200);
        stream.write(Buffer.alloc(rng.size(70000), 1));
        stream.end();
      }, rng.int(5));
      break;
    case 4:
      stream.destroy(rng.chance(0.5) ? new Error("app failed") : undefined);
      break;
    case 5:
      setTimeout(() => respond(200), rng.int(5));
      stream.resume();
      break;
    default:
      break; // never answers: the session's close must still clean it up
  }
}

function useClientStream(s: H2Stream, rng: Rng): void {
  s.on("error", () => {});
  s.resume();
  if (rng.chance(0.7)) s.write(Buffer.alloc(rng.size(100000), 2));
  if (rng.chance(0.5)) s.end();
  else if (rng.chance(0.3)) s.destroy();
}

export const sessionTarget: Target = {
  name: "session",
  memoryBound: 256 << 20,
  generate(rng) {
    const toServer = rng.chance(0.6);
    return [Buffer.from([toServer ? 1 : 0]), ...chunk(rng, frames(rng, toServer))];
  },
  async execute(input, codec: Codec, rng) {
    const toServer = ((input[0]?.[0] ?? 1) & 1) === 1;
    const [dialed, acc] = await socketPair();
    // The session sits on one end, the attacker on the other.
    const [sessionSock, attacker] = toServer ? [acc, dialed] : [dialed, acc];
    attacker.on("error", () => {});
    attacker.resume();
    const opts: SessionOptions = rng.chance(0.5)
      ? { codec }
      : { codec, maxConcurrentStreams: 2, maxFrameSize: 16384, streamWindow: 100, connectionWindow: 70000 };
    const session = toServer ? H2Session.server(sessionSock, opts) : H2Session.client(sessionSock, opts);
    session.on("error", () => {});
    // Not events.once: it would reject on the session's 'error' event.
    const closed = new Promise<void>((r) => session.once("close", () => r()));
    if (toServer) {
      session.on("connect", (stream: H2Stream, _h, respond) => serveStream(stream, respond, rng));
    } else {
      // Known bug (regressions.test.ts, "client stream error before its owner can listen"): a stream whose
      // response and reset arrive in one read emits 'error' before connect()'s promise hands it out. Own every
      // client stream from its creation so the fuzzer keeps looking past it; set HBONE_FUZZ_LATE_LISTENER=1 to
      // listen only where an application can (after connect() resolves).
      if (process.env.HBONE_FUZZ_LATE_LISTENER !== "1") {
        const streams = session.streams,
          set = streams.set.bind(streams);
        streams.set = (id: number, st: H2Stream) =>
          set(
            id,
            st.on("error", () => {}),
          );
      }
      for (let k = rng.range(1, 3); k > 0; k--) {
        session.connect("10.0.0.1:80").then(
          (s) => useClientStream(s, rng),
          () => {},
        );
      }
    }
    for (const c of input.slice(1)) {
      if (attacker.destroyed) break;
      attacker.write(c);
      if (rng.chance(0.3)) await wait(rng.int(3));
      else if (rng.chance(0.3)) await new Promise((r) => setImmediate(r));
    }
    await wait(rng.int(10));
    if (rng.chance(0.5)) attacker.end();
    else attacker.resetAndDestroy();
    const done = await Promise.race([closed.then(() => true), wait(3000).then(() => false)]);
    attacker.destroy();
    if (!done) {
      session.destroy();
      throw new Mismatch(`session still open 3 s after its peer went (${session.activeStreams} streams)`);
    }
    if (session.activeStreams !== 0) throw new Mismatch(`${session.activeStreams} streams left after close`);
  },
  async close() {
    const s = server;
    server = undefined;
    for (const a of accepted.splice(0)) a.destroy();
    if (s) await new Promise((r) => s.close(r));
  },
};
