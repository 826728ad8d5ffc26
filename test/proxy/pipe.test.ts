// The tunnel pump's contract (host/proxy/pipe.ts pipeTunnel), through the exported function only, with real
// sockets: the application is a real loopback TCP connection (half-open allowed, as the proxy's listeners
// are), the tunnel a CONNECT stream of our client H2Session to a peer over loopback TCP: our own server session
// (the inbound proxy's role: it half-closes and resets with any code) and node:http2 (nghttp2) for the cases
// an independent stack can play. FIN <-> END_STREAM each way with the other direction still open; the peer's
// RST_STREAM NO_ERROR / CANCEL read as EOF, other codes reset the app; the app's reset is
// RST_STREAM(CONNECT_ERROR), a reset Node reports as 'end' included; every byte counted both ways; a side dead before the pipe starts; a plain TCP
// passthrough passing a reset on as a reset.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import net from "node:net";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { H2Error } from "../../host/errors.js";
import { H2Session } from "../../host/h2/session.js";
import type { H2Stream } from "../../host/h2/stream.js";
import { pipeTunnel } from "../../host/proxy/pipe.js";
import { dialTcp } from "../../host/net.js";
import { ourServer, type OurServer } from "../helpers/h2-server.js";
import { drain, listen, pattern, pump, tcpPair } from "../helpers/net.js";

let ours: OurServer;
let node: http2.Http2Server;
let nodePort: number;
/** Streams node:http2 accepted, in order (a test takes the one its CONNECT made). */
const nodeStreams: http2.ServerHttp2Stream[] = [];
const sessions: H2Session[] = [];
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ours = await ourServer({}, true); // CONNECT answered 200, the stream left to the test
  node = http2.createServer();
  node.on("stream", (s) => {
    s.on("error", () => {});
    s.respond({ ":status": 200 });
    nodeStreams.push(s);
  });
  node.on("sessionError", () => {});
  nodePort = await listen(node as unknown as net.Server);
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  for (const c of closers) await c();
  await ours.close();
  await new Promise<void>((r) => node.close(() => r()));
});

interface Tunnel<R> {
  /** The application's own socket (what a client app holds). */
  app: net.Socket;
  /** The proxy's side of the app connection, piped into the stream. */
  appSide: net.Socket;
  stream: H2Stream;
  /** The peer's end of the CONNECT stream. */
  remote: R;
  piped: Promise<void>;
}

/** A CONNECT stream (200 answered) to our server session and an app connection; `pipe: false` leaves pipeTunnel
 *  to the test. */
function tunnel(o: { pipe?: boolean } = {}): Promise<Tunnel<H2Stream>> {
  return open(ours.port, ours.streams, o);
}

/** The same to node:http2. */
function nodeTunnel(o: { pipe?: boolean } = {}): Promise<Tunnel<http2.ServerHttp2Stream>> {
  return open(nodePort, nodeStreams, o);
}

async function open<R extends NodeJS.ReadWriteStream>(
  port: number,
  accepted: R[],
  o: { pipe?: boolean },
): Promise<Tunnel<R>> {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  const session = H2Session.client(sock);
  session.on("error", () => {});
  sessions.push(session);
  const n = accepted.length;
  const stream = await session.connect("10.0.0.1:8080");
  stream.on("error", () => {});
  expect(stream.status).toBe(200);
  const end = Date.now() + 3000;
  while (accepted.length === n && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  const remote = accepted[n]!;
  (remote as unknown as NodeJS.EventEmitter).on("error", () => {});
  // Half-open both ways, as the proxy's listeners and an app that half-closes are.
  const [app, appSide, close] = await tcpPair({ allowHalfOpen: true });
  closers.push(close);
  app.on("error", () => {});
  appSide.on("error", () => {}); // the pump's own listener is what the test checks; this one only keeps vitest quiet
  const piped = o.pipe === false ? Promise.resolve() : pipeTunnel(appSide, stream);
  return { app, appSide, stream, remote, piped };
}

/** How a socket ended: a clean FIN (`end`) or an error (its code, e.g. ECONNRESET). */
function outcome(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    s.once("end", () => resolve("end"));
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.resume();
  });
}

/** The peer resets its end of the stream with `code`. */
const reset = (remote: H2Stream, code: number) => remote.destroy(new H2Error(code, 0, 0, true, "test reset"));

/** Everything a readable delivers until its end, as one buffer (by events: an async iterator would destroy a
 *  duplex at the end, resetting the half that is still open). */
function readAll(r: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    r.on("data", (c: Buffer) => chunks.push(c));
    r.once("end", () => resolve(Buffer.concat(chunks)));
    r.once("error", reject);
  });
}

function within<T>(p: Promise<T>, ms = 10_000, what = "tunnel"): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>(
    (_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms)),
  );
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

describe("pipeTunnel: bytes and half-close", () => {
  it("moves every byte both ways and counts them on the stream (1 MiB up, 512 KiB down)", async () => {
    const t = await tunnel();
    const up = pattern(1 << 20, 1);
    const down = pattern(512 << 10, 2);
    const [, atRemote, , atApp] = await within(
      Promise.all([pump(t.app, up, 64 << 10), readAll(t.remote), pump(t.remote, down, 64 << 10), drain(t.app, down)]),
    );
    expect(atRemote.equals(up)).toBe(true);
    expect(atApp).toEqual({ bytes: down.length, equal: true });
    await within(t.piped);
    expect(t.stream.written).toBe(up.length);
    expect(t.stream.pushed).toBe(down.length);
    expect(t.appSide.bytesRead).toBe(up.length);
    expect(t.appSide.bytesWritten).toBe(down.length);
  });

  it("app FIN -> END_STREAM, and the peer's answer after it still reaches the app", async () => {
    const t = await tunnel();
    t.app.end("request");
    const got = await within(readAll(t.remote)); // ends only at END_STREAM
    expect(got.toString()).toBe("request");
    expect(t.stream.destroyed).toBe(false);
    t.remote.end("answer after the client's FIN");
    const back = await within(readAll(t.app));
    expect(back.toString()).toBe("answer after the client's FIN");
    await within(t.piped);
    expect(t.stream.rstCode === null || t.stream.rstCode === abi.NO_ERROR).toBe(true);
  });

  it("END_STREAM -> FIN to the app (shutdown), and the app's bytes after it still reach the peer", async () => {
    const t = await tunnel();
    const ended = outcome(t.app);
    t.remote.end("response, then END_STREAM");
    expect(await within(ended)).toBe("end");
    // The app's half is still open: it writes, then closes.
    const got = readAll(t.remote);
    t.app.end("more from the app");
    expect((await within(got)).toString()).toBe("more from the app");
    await within(t.piped);
  });
});

describe("pipeTunnel: resets", () => {
  it.each([
    ["NO_ERROR", abi.NO_ERROR],
    ["CANCEL", abi.CANCEL],
  ])("the peer's RST_STREAM(%s) reads as EOF: the app gets what came before it, then a FIN", async (_n, code) => {
    const t = await tunnel();
    const got = readAll(t.app);
    t.remote.write("last words");
    await new Promise((r) => setTimeout(r, 50));
    reset(t.remote, code);
    expect((await within(got)).toString()).toBe("last words");
    await within(t.piped);
    expect(t.stream.rstCode).toBe(code);
  });

  it.each([
    ["INTERNAL_ERROR", abi.INTERNAL_ERROR],
    ["CONNECT_ERROR", abi.CONNECT_ERROR],
    ["PROTOCOL_ERROR", abi.PROTOCOL_ERROR],
    ["REFUSED_STREAM", abi.REFUSED_STREAM],
    ["ENHANCE_YOUR_CALM", abi.ENHANCE_YOUR_CALM],
  ])("the peer's RST_STREAM(%s) resets the app's connection (TCP RST), never a FIN", async (_n, code) => {
    const t = await tunnel();
    const ended = outcome(t.app);
    t.remote.write("a tail that is not complete");
    await new Promise((r) => setTimeout(r, 50));
    reset(t.remote, code);
    expect(await within(ended)).toBe("ECONNRESET");
    await within(t.piped);
    expect(t.stream.rstCode).toBe(code);
  });

  it.each(["ours", "node:http2"])(
    "the app's reset is RST_STREAM(CONNECT_ERROR) at the peer (%s), never an END_STREAM",
    async (kind) => {
      const t = kind === "ours" ? await tunnel() : await nodeTunnel();
      let sawEnd = false;
      t.remote.on("end", () => (sawEnd = true));
      t.remote.resume();
      t.app.write("partial request");
      await new Promise((r) => setTimeout(r, 50));
      const closed = new Promise<void>((r) => t.remote.once("close", () => r()));
      t.app.resetAndDestroy();
      await within(closed);
      expect(t.remote.rstCode).toBe(abi.CONNECT_ERROR);
      expect(sawEnd).toBe(false);
      await within(t.piped);
    },
  );

  it.each(["ours", "node:http2"])(
    "an app reset that arrives with its last bytes (Node reports it as 'end') is still RST_STREAM(CONNECT_ERROR) (%s)",
    async (kind) => {
      const t = kind === "ours" ? await tunnel() : await nodeTunnel();
      let sawEnd = false;
      const got = [] as Buffer[];
      t.remote.on("end", () => (sawEnd = true));
      t.remote.on("data", (c: Buffer) => got.push(c));
      const closed = new Promise<void>((r) => t.remote.once("close", () => r()));
      t.app.write("the last bytes, then a reset");
      t.app.resetAndDestroy();
      await within(closed);
      expect(t.remote.rstCode).toBe(abi.CONNECT_ERROR);
      expect(sawEnd).toBe(false);
      await within(t.piped);
    },
  );

  it("node:http2 as the peer: its answer and END_STREAM after the app's FIN reach the app, no error code", async () => {
    const t = await nodeTunnel();
    const got = readAll(t.remote);
    t.app.end("bye");
    expect((await within(got)).toString()).toBe("bye");
    const back = readAll(t.app);
    t.remote.end("answer");
    expect((await within(back)).toString()).toBe("answer");
    await within(t.piped);
    expect(t.stream.rstCode === null || t.stream.rstCode === abi.NO_ERROR).toBe(true);
  });
});

describe("pipeTunnel: a side dead before the pipe starts", () => {
  it("a stream the peer reset with INTERNAL_ERROR before the pipe: the app is reset at once", async () => {
    const t = await tunnel({ pipe: false });
    reset(t.remote, abi.INTERNAL_ERROR);
    await within(new Promise<void>((r) => (t.stream.destroyed ? r() : t.stream.once("close", () => r()))));
    const ended = outcome(t.app);
    await within(pipeTunnel(t.appSide, t.stream));
    expect(await within(ended)).toBe("ECONNRESET");
  });

  it("a stream the peer cancelled before the pipe: the app gets a FIN", async () => {
    const t = await tunnel({ pipe: false });
    reset(t.remote, abi.CANCEL);
    await within(new Promise<void>((r) => (t.stream.destroyed ? r() : t.stream.once("close", () => r()))));
    const ended = outcome(t.app);
    await within(pipeTunnel(t.appSide, t.stream));
    expect(await within(ended)).toBe("end");
  });

  it("an app connection already gone: the stream is reset, the peer sees it closed", async () => {
    const t = await tunnel({ pipe: false });
    const closed = new Promise<void>((r) => t.remote.once("close", () => r()));
    t.appSide.destroy();
    await within(pipeTunnel(t.appSide, t.stream));
    await within(closed);
    expect(t.stream.destroyed).toBe(true);
    expect(t.remote.rstCode).toBe(abi.CANCEL);
  });
});

it("a dialled app socket keeps one 'close' and one 'error' listener once piped (the dial's are dropped), bytes flow", async () => {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  const port = await listen(server);
  closers.push(async () => {
    for (const s of accepted) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const t = await tunnel({ pipe: false });
  const sock = await new Promise<net.Socket>((resolve, reject) =>
    dialTcp({ host: "127.0.0.1", port, timeoutMs: 5000 }, resolve, reject),
  );
  expect([sock.listenerCount("close"), sock.listenerCount("error")]).toEqual([1, 1]); // the dial's
  const piped = pipeTunnel(sock, t.stream);
  expect([sock.listenerCount("close"), sock.listenerCount("error")]).toEqual([1, 1]); // the pipe's only
  const echoed = new Promise<Buffer>((r) => t.remote.once("data", r));
  t.remote.write("ping");
  expect((await within(echoed)).toString()).toBe("ping");
  t.remote.end();
  await within(piped);
  t.app.destroy(); // the pair tunnel() made for the app is not used here
  t.appSide.destroy();
});

it("plain TCP passthrough: bytes and FIN both ways, and the app's reset passed on as a reset", async () => {
  const [app, appSide, c1] = await tcpPair();
  const [upstream, far, c2] = await tcpPair();
  closers.push(c1, c2);
  for (const s of [app, appSide, upstream, far]) s.on("error", () => {});
  const piped = pipeTunnel(appSide, upstream);
  const got = readAll(far);
  app.write("through");
  await new Promise((r) => setTimeout(r, 50));
  const ended = outcome(far);
  app.resetAndDestroy();
  expect(await within(ended)).toBe("ECONNRESET");
  await within(piped);
  expect((await got.catch(() => Buffer.from("through"))).toString()).toBe("through");
});
