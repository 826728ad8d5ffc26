// RFC 9113 conformance of our server engine, compared with node:http2 (nghttp2) on the same bytes.
// Each row sends one raw frame sequence to both servers (both answer CONNECT with 200 and echo,
// anything else with 400) and records the answer: RST_STREAM(code) on the row's stream,
// GOAWAY(code), or nothing. We must be at least as strict: where node answers an error, we
// answer the same error code (stream or connection level as the row expects), and we never
// accept what node rejects.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import http2 from "node:http2";
import * as abi from "../../assembly/abi.js";
import { errorCodeName } from "../../host/errors.js";
import type { HeaderList } from "../../host/h2/hpack.js";
import { RawPeer } from "../helpers/raw-peer.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { listen } from "../helpers/net.js";
import { ourServer, type OurServer } from "../helpers/h2-server.js";

type Outcome = { kind: "rst" | "goaway"; code: number } | { kind: "none" };

const show = (o: Outcome) =>
  o.kind === "none" ? "nothing" : `${o.kind === "rst" ? "RST_STREAM" : "GOAWAY"} ${errorCodeName(o.code)}`;

/** What a row may do on its connection. */
interface Ctx {
  p: RawPeer;
  /** SETTINGS_MAX_FRAME_SIZE the server advertised. */
  maxFrame: number;
  headers(stream: number, list: HeaderList, endStream?: boolean): void;
  /** Waits for the response HEADERS on a stream (the server answered). */
  response(stream: number): Promise<void>;
}

const CONNECT: HeaderList = [
  [":method", "CONNECT"],
  [":authority", "10.0.0.1:80"],
];
const GET: HeaderList = [
  [":method", "GET"],
  [":scheme", "https"],
  [":authority", "x"],
  [":path", "/"],
];

interface Row {
  name: string;
  /** The stream whose RST_STREAM counts (default 1). */
  stream?: number;
  /** What RFC 9113 requires, when node is lenient or answers at another level. */
  expect?: Outcome;
  run(c: Ctx): Promise<void> | void;
}

const rst = (code: number): Outcome => ({ kind: "rst", code });
const goaway = (code: number): Outcome => ({ kind: "goaway", code });

const ROWS: Row[] = [
  // §8.3.1 / §8.5: malformed requests are stream errors of type PROTOCOL_ERROR.
  { name: "CONNECT without :authority", run: (c) => c.headers(1, [[":method", "CONNECT"]]) },
  {
    name: "CONNECT with an empty :authority",
    run: (c) =>
      c.headers(1, [
        [":method", "CONNECT"],
        [":authority", ""],
      ]),
  },
  { name: "CONNECT with :path", run: (c) => c.headers(1, [...CONNECT, [":path", "/"]]) },
  { name: "request without :method", run: (c) => c.headers(1, GET.slice(1), true) },
  { name: "GET without :path", run: (c) => c.headers(1, GET.slice(0, 3), true) },
  { name: "GET with an empty :path", run: (c) => c.headers(1, [...GET.slice(0, 3), [":path", ""]], true) },
  {
    name: "GET without :scheme",
    run: (c) =>
      c.headers(
        1,
        GET.filter(([n]) => n !== ":scheme"),
        true,
      ),
  },
  { name: "empty :method", run: (c) => c.headers(1, [[":method", ""], ...GET.slice(1)], true) },
  { name: "unknown pseudo-header", run: (c) => c.headers(1, [...CONNECT, [":foo", "x"]]) },
  {
    name: "pseudo-header after a regular one",
    run: (c) =>
      c.headers(1, [
        [":method", "CONNECT"],
        ["x", "1"],
        [":authority", "a:1"],
      ]),
  },
  { name: "upper-case header name", run: (c) => c.headers(1, [...CONNECT, ["X-Up", "1"]]) },
  { name: "connection-specific header", run: (c) => c.headers(1, [...CONNECT, ["connection", "close"]]) },
  { name: "te other than trailers", run: (c) => c.headers(1, [...CONNECT, ["te", "gzip"]]) },
  {
    name: "pseudo-header in trailers",
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.headers(1, [[":authority", "a:1"]], true);
    },
  },
  {
    name: "second HEADERS without END_STREAM",
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.headers(1, [["x-trailer", "1"]], false);
    },
  },
  {
    name: "content-length larger than the DATA",
    expect: rst(abi.PROTOCOL_ERROR), // §8.1.1 (nghttp2 does not check it on CONNECT)
    run(c) {
      c.headers(1, [...CONNECT, ["content-length", "100"]]);
      c.p.data(1, 10, true);
    },
  },
  {
    name: "content-length smaller than the DATA",
    expect: rst(abi.PROTOCOL_ERROR),
    run(c) {
      c.headers(1, [...CONNECT, ["content-length", "5"]]);
      c.p.data(1, 10, true);
    },
  },
  // §5.1: half-closed (remote) and closed streams.
  {
    name: "DATA after END_STREAM (half-closed remote)",
    expect: rst(abi.STREAM_CLOSED),
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.p.data(1, 10, true);
      c.p.data(1, 10);
    },
  },
  {
    name: "HEADERS after END_STREAM (half-closed remote)",
    expect: rst(abi.STREAM_CLOSED),
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.p.data(1, 10, true);
      c.headers(1, [["x-trailer", "1"]], true);
    },
  },
  {
    name: "DATA on a stream the client reset (closed)",
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.p.send(frame(abi.FRAME_RST_STREAM, 0, 1, u32(abi.CANCEL)));
      c.p.data(1, 10);
    },
  },
  // §4.2: frame size.
  {
    name: "HEADERS over our SETTINGS_MAX_FRAME_SIZE",
    run(c) {
      // A valid block padded (PADDED flag) to one byte over the limit.
      const block = c.p.enc.encode(CONNECT);
      const pad = c.maxFrame + 1 - 1 - block.length;
      c.p.send(
        frame(
          abi.FRAME_HEADERS,
          abi.FLAG_END_HEADERS | abi.FLAG_PADDED,
          1,
          Buffer.concat([Buffer.from([Math.min(pad, 255)]), block, Buffer.alloc(pad)]),
        ),
      );
    },
  },
  {
    name: "PRIORITY of 4 bytes",
    expect: rst(abi.FRAME_SIZE_ERROR),
    run: (c) => c.p.send(frame(abi.FRAME_PRIORITY, 0, 1, u32(0))),
  },
  { name: "PING of 7 bytes", run: (c) => c.p.send(frame(abi.FRAME_PING, 0, 0, Buffer.alloc(7))) },
  // §6.9: flow control.
  {
    name: "stream window past 2^31-1 after the response",
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.p.windowUpdate(1, abi.MAX_WINDOW_SIZE);
    },
  },
  { name: "connection window past 2^31-1", run: (c) => c.p.windowUpdate(0, abi.MAX_WINDOW_SIZE) },
  {
    name: "WINDOW_UPDATE 0 on an open stream",
    expect: rst(abi.PROTOCOL_ERROR), // §6.9
    async run(c) {
      c.headers(1, CONNECT);
      await c.response(1);
      c.p.windowUpdate(1, 0);
    },
  },
  { name: "WINDOW_UPDATE 0 on the connection", run: (c) => c.p.windowUpdate(0, 0) },
  {
    name: "SETTINGS_INITIAL_WINDOW_SIZE 2^31",
    run: (c) => c.p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([[4, 2 ** 31]]))),
  },
  // §5.1.1: stream identifiers.
  {
    name: "stream ids that go backwards",
    stream: 3,
    expect: goaway(abi.PROTOCOL_ERROR), // §5.1.1 (nghttp2 ignores ids at or below the last it processed)
    async run(c) {
      c.headers(5, CONNECT);
      await c.response(5);
      c.headers(3, CONNECT);
    },
  },
  { name: "even stream id from a client", stream: 2, run: (c) => c.headers(2, CONNECT) },
  {
    name: "HEADERS on stream 0",
    stream: 0,
    run: (c) => c.p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 0, [0x82])),
  },
  { name: "DATA on an idle stream", run: (c) => c.p.data(1, 10) },
  { name: "RST_STREAM on an idle stream", run: (c) => c.p.send(frame(abi.FRAME_RST_STREAM, 0, 1, u32(0))) },
  { name: "WINDOW_UPDATE on an idle stream", run: (c) => c.p.windowUpdate(1, 10) },
  // §6: frames in the wrong place.
  {
    name: "CONTINUATION without HEADERS",
    run: (c) => c.p.send(frame(abi.FRAME_CONTINUATION, abi.FLAG_END_HEADERS, 1, [0x82])),
  },
  {
    name: "HEADERS interrupted by another frame",
    run: (c) =>
      c.p.send(frame(abi.FRAME_HEADERS, 0, 1, c.p.enc.encode(CONNECT)), frame(abi.FRAME_PING, 0, 0, Buffer.alloc(8))),
  },
  { name: "PING on a stream", run: (c) => c.p.send(frame(abi.FRAME_PING, 0, 1, Buffer.alloc(8))) },
  { name: "SETTINGS on a stream", run: (c) => c.p.send(frame(abi.FRAME_SETTINGS, 0, 1)) },
  { name: "SETTINGS_ENABLE_PUSH 2", run: (c) => c.p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([[2, 2]]))) },
  {
    name: "SETTINGS_MAX_FRAME_SIZE below 16384",
    run: (c) => c.p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([[5, 100]]))),
  },
  {
    name: "PUSH_PROMISE from a client",
    run: (c) => c.p.send(frame(abi.FRAME_PUSH_PROMISE, abi.FLAG_END_HEADERS, 1, u32(2))),
  },
  {
    name: "PRIORITY on itself",
    expect: rst(abi.PROTOCOL_ERROR),
    run: (c) => c.p.send(frame(abi.FRAME_PRIORITY, 0, 1, [0, 0, 0, 1, 16])),
  },
  {
    name: "HEADERS with padding past the payload",
    run: (c) => c.p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS | abi.FLAG_PADDED, 1, [10, 0x82])),
  },
  { name: "HPACK: index 0", run: (c) => c.p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, [0x80])) },
  {
    name: "HPACK: index past the table",
    run: (c) => c.p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, [0xff, 0x7f])),
  },
];

/** Runs a row on a fresh connection; returns the first error answer within the quiet period. */
async function outcome(port: number, row: Row): Promise<Outcome> {
  const p = await RawPeer.connect(port);
  try {
    const settings = p.frames.find((f) => f.type === abi.FRAME_SETTINGS && f.flags === 0);
    const maxFrame = settings?.settings?.find(([id]) => id === abi.SETTINGS_MAX_FRAME_SIZE)?.[1] ?? 16384;
    const ctx: Ctx = {
      p,
      maxFrame,
      headers: (stream, list, endStream = false) => p.headers(stream, list, endStream),
      response: async (stream) => {
        await p.waitFor(
          (f) => (f.type === abi.FRAME_HEADERS && f.streamId === stream) || f.type === abi.FRAME_GOAWAY,
          2000,
        );
      },
    };
    await row.run(ctx);
    const target = row.stream ?? 1;
    const f = await p.waitFor(
      (x) =>
        (x.type === abi.FRAME_GOAWAY && x.errorCode !== abi.NO_ERROR) ||
        (x.type === abi.FRAME_RST_STREAM && x.streamId === target && x.errorCode !== abi.NO_ERROR),
      400,
    );
    if (!f) return { kind: "none" };
    return { kind: f.type === abi.FRAME_GOAWAY ? "goaway" : "rst", code: f.errorCode! };
  } finally {
    p.close();
  }
}

let ours: OurServer;
let node: http2.Http2Server;
let nodePort = 0;
const nodeSessions: http2.ServerHttp2Session[] = [];

beforeAll(async () => {
  ours = await ourServer();
  node = http2.createServer();
  node.on("sessionError", () => {});
  node.on("session", (session) => nodeSessions.push(session));
  node.on("stream", (s, h) => {
    s.on("error", () => {});
    if (h[":method"] === "CONNECT") {
      s.respond({ ":status": 200 });
      s.pipe(s);
    } else {
      s.respond({ ":status": 400 }, { endStream: true });
    }
  });
  nodePort = await listen(node as unknown as net.Server);
});

afterAll(async () => {
  await ours.close();
  for (const session of nodeSessions) session.destroy();
  await new Promise((r) => node.close(r));
});

describe("RFC 9113 conformance: our server is at least as strict as node:http2", () => {
  const table: string[] = [];
  afterAll(() => console.log(`[h2 conformance]\n${table.join("\n")}`));
  for (const row of ROWS) {
    it(row.name, async () => {
      const [n, o] = [await outcome(nodePort, row), await outcome(ours.port, row)];
      table.push(`${row.name.padEnd(48)} node: ${show(n).padEnd(30)} ours: ${show(o)}`);
      if (row.expect) return expect(show(o)).toBe(show(row.expect)); // what RFC 9113 requires
      if (n.kind === "none") return; // node accepts it: we may too, or be stricter
      // Node tears a session down with INTERNAL_ERROR whatever the rule; we send the RFC's code.
      if (n.kind === "goaway" && n.code === abi.INTERNAL_ERROR) return expect(o.kind).toBe("goaway");
      expect(show(o)).toBe(show(n));
    });
  }
});
