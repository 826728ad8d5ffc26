// H2Session against itself and against node:http2 (an independent implementation), over
// real loopback TCP: CONNECT tunnels, bulk data both ways with windows far smaller than the
// data, 100 concurrent streams, half-close, resets both ways, GOAWAY.

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import http2 from "node:http2";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { H2Session, type H2Stream } from "../../host/h2/session.js";
import { keepRecord } from "../../host/h2/stream.js";
import { H2Error } from "../../host/errors.js";
import { listen, tcpPair, pattern, drain, pump } from "../helpers/net.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server session on a loopback port that echoes every CONNECT tunnel. */
async function echoServer(opts = {}): Promise<{ port: number; sessions: H2Session[] }> {
  const sessions: H2Session[] = [];
  const server = net.createServer((sock) => {
    const s = H2Session.server(sock, opts);
    sessions.push(s);
    s.on("connect", (stream: H2Stream, headers, respond) => {
      respond(200, [
        ["baggage", "k8s.cluster.name=server"],
        ["x-authority", headers[1][1]],
      ]);
      stream.pipe(stream);
    });
  });
  const port = await listen(server);
  cleanups.push(
    () => new Promise((r) => server.close(r)),
    () => sessions.forEach((s) => s.destroy()),
  );
  return { port, sessions };
}

async function client(port: number, opts = {}): Promise<H2Session> {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  const s = H2Session.client(sock, opts);
  cleanups.push(() => s.destroy());
  return s;
}

describe("H2Session with itself", () => {
  it("opens a CONNECT tunnel, reads status and headers, echoes 16 MiB both ways", async () => {
    const { port } = await echoServer();
    const c = await client(port);
    const stream = await c.connect("10.0.0.7:8080", [["baggage", "k8s.cluster.name=client"]]);
    expect(stream.status).toBe(200);
    expect(stream.header("baggage")).toBe("k8s.cluster.name=server");
    expect(stream.header("x-authority")).toBe("10.0.0.7:8080");
    const data = pattern(16 << 20, 7);
    const [, got] = await Promise.all([pump(stream, data), drain(stream, data)]);
    expect(got).toEqual({ bytes: data.length, equal: true });
  });

  it("answers 503 without a connect listener and ends the stream", async () => {
    const [a, b, close] = await tcpPair();
    cleanups.push(close);
    H2Session.server(b);
    const c = H2Session.client(a);
    cleanups.push(() => c.destroy());
    const stream = await c.connect("1.2.3.4:80");
    expect(stream.status).toBe(503);
    const got = await drain(stream);
    expect(got.bytes).toBe(0);
  });
});

describe("writes per event-loop turn", () => {
  it("sends the frames every stream wrote in one turn as one socket write, and all their bytes arrive", async () => {
    const { port } = await echoServer();
    const c = await client(port);
    const streams = await Promise.all(Array.from({ length: 8 }, (_, i) => c.connect(`10.0.0.${i + 1}:80`, [])));
    // Count what reaches the real socket's write path (one call per writev/write the socket makes).
    const sock = (c as unknown as { socket: net.Socket }).socket;
    let calls = 0;
    const writev = sock._writev!.bind(sock);
    const write = sock._write.bind(sock);
    sock._writev = (chunks, cb) => {
      calls++;
      writev(chunks, cb);
    };
    sock._write = (chunk, enc, cb) => {
      calls++;
      write(chunk, enc, cb);
    };
    await new Promise((r) => setImmediate(r));
    calls = 0;
    // Three writes on each of 8 streams from three callbacks of one turn (as reads of several sockets in one poll
    // would be), each callback its own tick.
    await new Promise<void>((resolve) => {
      for (let k = 0; k < 3; k++) {
        setImmediate(() => {
          for (const st of streams) st.write(Buffer.from(`chunk ${k} of ${st.id};`));
          if (k === 2) setImmediate(resolve);
        });
      }
    });
    expect(calls).toBe(1);
    const got = await Promise.all(
      streams.map(async (st) => {
        const want = [0, 1, 2].map((k) => `chunk ${k} of ${st.id};`).join("");
        let text = "";
        for await (const d of st) {
          text += String(d);
          if (text.length >= want.length) break;
        }
        return text === want;
      }),
    );
    expect(got).toEqual(streams.map(() => true));
  });
});

describe("a stream's record (RECORD_SLOT)", () => {
  it("is told once when its stream is destroyed, before 'close'; kept after destroy, at its 'close'", async () => {
    const { port } = await echoServer();
    const c = await client(port);
    const seen: string[] = [];
    const record = (name: string) => ({ streamClosed: () => seen.push(`${name} told`) });
    const a = await c.connect("10.0.0.7:8080");
    keepRecord(a, record("a"));
    a.on("close", () => seen.push("a close"));
    a.destroy();
    expect(seen).toEqual(["a told"]); // at destroy, synchronously
    await once(a, "close");
    // Kept on a stream destroyed already (its destroy ran before): told at its 'close', still to come.
    const b = await c.connect("10.0.0.7:8080");
    b.destroy();
    keepRecord(b, record("b"));
    expect(seen).toEqual(["a told", "a close"]);
    await once(b, "close");
    expect(seen).toEqual(["a told", "a close", "b told"]);
    // A stream that ends both ways (no reset) is destroyed by Node once both sides are done: told then.
    const d = await c.connect("10.0.0.7:8080");
    keepRecord(d, record("d"));
    d.resume();
    d.end("x");
    await once(d, "close");
    expect(seen).toEqual(["a told", "a close", "b told", "d told"]);
  });
});

/** node:http2 server whose CONNECT handler echoes; its own windows stay at node's defaults. */
async function nodeEchoServer(): Promise<{
  port: number;
  server: http2.Http2Server;
  streams: http2.ServerHttp2Stream[];
}> {
  const streams: http2.ServerHttp2Stream[] = [];
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    streams.push(stream);
    if (headers[":method"] !== "CONNECT") {
      stream.respond({ ":status": 405 }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200, baggage: "k8s.cluster.name=node" });
    stream.pipe(stream);
    stream.on("error", () => {});
  });
  server.on("sessionError", () => {});
  const port = await new Promise<number>((r) =>
    server.listen(0, "127.0.0.1", () => r((server.address() as net.AddressInfo).port)),
  );
  // node's server.close() waits for sessions, and a session that sent GOAWAY may stop reading: destroy them.
  const all: http2.ServerHttp2Session[] = [];
  server.on("session", (x) => all.push(x));
  cleanups.push(
    () => new Promise((r) => server.close(r)),
    () => all.forEach((x) => x.destroy()),
  );
  return { port, server, streams };
}

function nodeClient(port: number): http2.ClientHttp2Session {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on("error", () => {});
  cleanups.push(() => c.destroy());
  return c;
}

function nodeConnect(c: http2.ClientHttp2Session, authority: string, headers: Record<string, string> = {}) {
  const req = c.request({ ":method": "CONNECT", ":authority": authority, ...headers });
  req.on("error", () => {});
  return req;
}

describe("our client with a node:http2 server", () => {
  it("moves 64 MiB each way through one CONNECT stream, byte-exact, windows far smaller than the data", async () => {
    const { port } = await nodeEchoServer();
    const c = await client(port);
    const stream = await c.connect("10.0.0.1:80");
    expect(stream.status).toBe(200);
    expect(stream.header("baggage")).toBe("k8s.cluster.name=node");
    const data = pattern(64 << 20, 3);
    const [, got] = await Promise.all([pump(stream, data), drain(stream, data)]);
    expect(got).toEqual({ bytes: data.length, equal: true });
  });

  it("runs 100 concurrent streams on one connection", async () => {
    const { port } = await nodeEchoServer();
    const c = await client(port);
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const s = await c.connect(`10.0.0.${i}:80`);
        const data = pattern(64 * 1024 + i, i + 1);
        const [, got] = await Promise.all([pump(s, data, 8192), drain(s, data)]);
        return got.equal;
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(c.activeStreams).toBe(0);
  });

  it("half-closes: our end() reaches node as END_STREAM while node keeps sending", async () => {
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200 });
      const chunks: Buffer[] = [];
      stream.on("data", (d: Buffer) => chunks.push(d));
      stream.on("end", () => {
        // The request side ended; the response side is still open.
        stream.write(Buffer.concat(chunks));
        setTimeout(() => stream.end("-after-end"), 20);
      });
    });
    const port = await new Promise<number>((r) =>
      server.listen(0, "127.0.0.1", () => r((server.address() as net.AddressInfo).port)),
    );
    cleanups.push(() => new Promise((r) => server.close(r)));
    const c = await client(port);
    const s = await c.connect("10.0.0.1:80");
    s.end("hello");
    const got = await drain(s);
    expect(got.bytes).toBe("hello-after-end".length);
  });

  it("resets: our destroy() sends RST_STREAM CANCEL; node's RST reaches us as an H2Error", async () => {
    const { port, streams } = await nodeEchoServer();
    const c = await client(port);
    const s1 = await c.connect("10.0.0.1:80");
    const closed = new Promise<number>((r) => streams[0].on("close", () => r(streams[0].rstCode!)));
    s1.destroy();
    expect(await closed).toBe(http2.constants.NGHTTP2_CANCEL);
    const s2 = await c.connect("10.0.0.2:80");
    const err = new Promise<Error>((r) => s2.on("error", r));
    streams[1].close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    const e = await err;
    expect(e).toBeInstanceOf(H2Error);
    expect((e as H2Error).code).toBe(abi.ENHANCE_YOUR_CALM);
    expect(s2.rstCode).toBe(abi.ENHANCE_YOUR_CALM);
  });

  it("honours node's GOAWAY: the stream in flight finishes, new streams are refused", async () => {
    const { port, server } = await nodeEchoServer();
    const sessions: http2.ServerHttp2Session[] = [];
    server.on("session", (x) => sessions.push(x));
    const c = await client(port);
    const s = await c.connect("10.0.0.1:80");
    const goaway = once(c, "goaway");
    sessions[0].goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    sessions[0].close();
    const [code, last] = await goaway;
    expect([code, last]).toEqual([abi.NO_ERROR, 1]);
    await expect(c.connect("10.0.0.2:80")).rejects.toThrow(H2Error);
    const closed = once(c, "close");
    const data = pattern(1 << 20, 9);
    const [, got] = await Promise.all([pump(s, data), drain(s, data)]);
    expect(got.equal).toBe(true);
    await closed; // the session ends once its last stream is done
  });
});

describe("GOAWAY with streams beyond its last stream id", () => {
  it("fails only the streams the peer never processed, with a retryable REFUSED_STREAM", async () => {
    const { port, server } = await nodeEchoServer();
    const sessions: http2.ServerHttp2Session[] = [];
    server.on("session", (x) => sessions.push(x));
    const c = await client(port);
    const s1 = await c.connect("10.0.0.1:80");
    const s3 = await c.connect("10.0.0.3:80");
    const s3err = new Promise<Error>((r) => s3.on("error", r));
    sessions[0].goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    const e = await s3err;
    expect((e as H2Error).code).toBe(abi.REFUSED_STREAM);
    const data = pattern(256 * 1024, 4);
    const [, got] = await Promise.all([pump(s1, data), drain(s1, data)]);
    expect(got.equal).toBe(true);
  });
});

describe("node:http2 client with our server", () => {
  it("moves 64 MiB each way through one CONNECT stream, byte-exact", async () => {
    const { port } = await echoServer();
    const c = nodeClient(port);
    const req = nodeConnect(c, "10.0.0.1:80", { baggage: "k8s.cluster.name=node" });
    const [headers] = (await once(req, "response")) as [http2.IncomingHttpHeaders];
    expect(headers[":status"]).toBe(200);
    expect(headers.baggage).toBe("k8s.cluster.name=server");
    const data = pattern(64 << 20, 5);
    const [, got] = await Promise.all([pump(req, data), drain(req, data)]);
    expect(got).toEqual({ bytes: data.length, equal: true });
  });

  it("serves 100 concurrent streams on one connection", async () => {
    const { port, sessions } = await echoServer();
    const c = nodeClient(port);
    const ok = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const req = nodeConnect(c, `10.1.0.${i}:80`);
        await once(req, "response");
        const data = pattern(32 * 1024 + i, 100 + i);
        const [, got] = await Promise.all([pump(req, data, 4096), drain(req, data)]);
        return got.equal;
      }),
    );
    expect(ok.every(Boolean)).toBe(true);
    expect(sessions[0].activeStreams).toBe(0);
  });

  it("half-closes: node's END_STREAM ends our readable side while we keep writing", async () => {
    const [a, b, close] = await tcpPair();
    cleanups.push(close);
    const server = H2Session.server(b);
    cleanups.push(() => server.destroy());
    server.on("connect", (stream: H2Stream, _h, respond) => {
      respond(200);
      const chunks: Buffer[] = [];
      stream.on("data", (d: Buffer) => chunks.push(d));
      stream.on("end", () => {
        stream.write(Buffer.concat(chunks));
        setTimeout(() => stream.end("-after-end"), 20);
      });
    });
    const c = http2.connect("http://x", { createConnection: () => a });
    cleanups.push(() => c.destroy());
    const req = nodeConnect(c, "10.0.0.1:80");
    req.end("hello");
    const chunks: Buffer[] = [];
    for await (const d of req) chunks.push(d as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("hello-after-end");
  });

  it("resets: node's RST reaches our stream as CANCEL; our destroy(err) reaches node", async () => {
    const { port, sessions } = await echoServer();
    const c = nodeClient(port);
    const r1 = nodeConnect(c, "10.0.0.1:80");
    await once(r1, "response");
    const ours = await new Promise<H2Stream>((r) => {
      const s = [...sessions[0].streams.values()][0];
      r(s);
    });
    const closed = once(ours, "close");
    r1.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    expect(ours.rstCode).toBe(abi.CANCEL);
    const r2 = nodeConnect(c, "10.0.0.2:80");
    await once(r2, "response");
    const s2 = [...sessions[0].streams.values()][0];
    const nodeClosed = new Promise((r) => r2.on("close", r));
    s2.on("error", () => {});
    s2.destroy(H2Error.stream(s2.id, abi.CONNECT_ERROR, "upstream reset"));
    await nodeClosed;
    expect(r2.rstCode).toBe(abi.CONNECT_ERROR);
  });

  it("closes gracefully: GOAWAY names the last stream, the stream in flight finishes", async () => {
    const { port, sessions } = await echoServer();
    const c = nodeClient(port);
    const req = nodeConnect(c, "10.0.0.1:80");
    await once(req, "response");
    const goaway = once(c, "goaway");
    sessions[0].close();
    const [code, last] = await goaway;
    expect([code, last]).toEqual([0, 1]);
    const data = pattern(2 << 20, 11);
    const [, got] = await Promise.all([pump(req, data), drain(req, data)]);
    expect(got.equal).toBe(true);
    await once(c, "close");
  });
});
