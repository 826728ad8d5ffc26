// The codec against a real, independent HTTP/2 stack (node:http2 = nghttp2) on a loopback
// socket: a minimal server made only of our frame reader, HPACK coder and frame writers
// answers node's client. Sessions proper arrive with host/h2/session.ts.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import http2 from "node:http2";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { FrameWriter } from "../../host/h2/frames.js";
import { HpackDecoder, HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { FrameReader } from "../../host/wasm/codec.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

interface Seen {
  requests: HeaderList[];
  bodies: Map<number, Buffer[]>;
  settings: [number, number][][];
}

function codecServer(seen: Seen): net.Server {
  return net.createServer((sock) => {
    const reader = new FrameReader(abi.DEFAULT_MAX_FRAME_SIZE, 1);
    const dec = new HpackDecoder();
    const enc = new HpackEncoder();
    const w = new FrameWriter();
    let preface = Buffer.alloc(0);
    let block: Uint8Array[] = [];
    sock.write(
      w.settings([
        [abi.SETTINGS_MAX_CONCURRENT_STREAMS, 100],
        [abi.SETTINGS_ENABLE_PUSH, 0],
      ]),
    );
    const reply = (stream: number, req: HeaderList) => {
      const body = Buffer.from(`you asked for ${req.find(([n]) => n === ":path" || n === ":authority")?.[1]}`);
      sock.write(
        enc.encodeHeadersFrame(
          stream,
          [
            [":status", "200"],
            ["x-reply", "ok"],
            ["baggage", "k8s.cluster.name=c1"],
          ],
          false,
          abi.DEFAULT_MAX_FRAME_SIZE,
        ),
      );
      sock.write(Buffer.concat([w.dataHeader(stream, body.length, true), body]));
    };
    sock.on("data", (chunk: Buffer) => {
      if (preface.length < 24) {
        preface = Buffer.concat([preface, chunk]);
        if (preface.length < 24) return;
        expect(preface.subarray(0, 24)).toEqual(PREFACE);
        chunk = preface.subarray(24);
      }
      reader.feed(chunk, (type, flags, streamId, payload, a) => {
        if (type === abi.FRAME_SETTINGS && !(flags & abi.FLAG_ACK)) {
          seen.settings.push(
            Array.from({ length: a }, (_, i) => [
              Buffer.from(payload).readUInt16BE(i * 6),
              Buffer.from(payload).readUInt32BE(i * 6 + 2),
            ]),
          );
          sock.write(w.settings([], true));
        } else if (type === abi.FRAME_HEADERS || type === abi.FRAME_CONTINUATION) {
          block.push(Buffer.from(payload));
          if (flags & abi.FLAG_END_HEADERS) {
            const req = dec.decode(Buffer.concat(block));
            block = [];
            seen.requests.push(req);
            seen.bodies.set(streamId, []);
            if (flags & abi.FLAG_END_STREAM || req[0][1] === "CONNECT") reply(streamId, req);
          }
        } else if (type === abi.FRAME_DATA) {
          seen.bodies.get(streamId)!.push(Buffer.from(payload));
          if (a > 0) sock.write(Buffer.concat([w.windowUpdate(0, a), w.windowUpdate(streamId, a)]));
          if (flags & abi.FLAG_END_STREAM) reply(streamId, seen.requests.at(-1)!);
        }
      });
    });
    sock.on("close", () => {
      reader.dispose();
      dec.dispose();
      enc.dispose();
    });
    sock.on("error", () => {});
  });
}

describe("codec with node:http2 as the peer", () => {
  const seen: Seen = { requests: [], bodies: new Map(), settings: [] };
  let server: net.Server;
  let client: http2.ClientHttp2Session;

  beforeAll(async () => {
    server = codecServer(seen).listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as net.AddressInfo;
    client = http2.connect(`http://127.0.0.1:${port}`);
    await once(client, "connect");
  });
  afterAll(async () => {
    client?.close();
    await new Promise((r) => server.close(r));
  });

  async function roundTrip(headers: http2.OutgoingHttpHeaders, body?: Buffer) {
    const req = client.request(headers, { endStream: !body });
    if (body) req.end(body);
    const [resHeaders] = (await once(req, "response")) as [http2.IncomingHttpHeaders];
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return { resHeaders, text: Buffer.concat(chunks).toString() };
  }

  it("reads node's SETTINGS and request HEADERS, and node reads our response", async () => {
    const r = await roundTrip({ ":path": "/hello", "x-custom": "value", cookie: "a=b" });
    expect(seen.settings.length).toBe(1);
    const req = seen.requests.at(-1)!;
    expect(req).toEqual(
      expect.arrayContaining([
        [":method", "GET"],
        [":path", "/hello"],
        ["x-custom", "value"],
        ["cookie", "a=b"],
      ]),
    );
    expect(r.resHeaders[":status"]).toBe(200);
    expect(r.resHeaders["x-reply"]).toBe("ok");
    expect(r.resHeaders.baggage).toBe("k8s.cluster.name=c1");
    expect(r.text).toBe("you asked for /hello");
  });

  it("decodes node's CONNECT request: only :method and :authority", async () => {
    const req = client.request({
      ":method": "CONNECT",
      ":authority": "10.0.0.1:8080",
      baggage: "k8s.namespace.name=ns",
    });
    const [res] = (await once(req, "response")) as [http2.IncomingHttpHeaders];
    expect(res[":status"]).toBe(200);
    req.close();
    expect(seen.requests.at(-1)).toEqual([
      [":method", "CONNECT"],
      [":authority", "10.0.0.1:8080"],
      ["baggage", "k8s.namespace.name=ns"],
    ]);
  });

  it("receives a 1 MiB body through DATA events, granting window as it goes", async () => {
    const body = Buffer.alloc(1 << 20);
    for (let i = 0; i < body.length; i++) body[i] = (i * 131) & 0xff;
    const before = seen.requests.length;
    const r = await roundTrip({ ":method": "POST", ":path": "/upload" }, body);
    expect(r.text).toBe("you asked for /upload");
    const streamId = [...seen.bodies.keys()][before];
    expect(Buffer.concat(seen.bodies.get(streamId)!).equals(body)).toBe(true);
  });

  it("keeps HPACK state in sync over many requests (dynamic table reuse both ways)", async () => {
    for (let i = 0; i < 50; i++) {
      const r = await roundTrip({ ":path": `/n/${i % 5}`, "x-repeat": "same-value-every-time" });
      expect(r.resHeaders["x-reply"]).toBe("ok");
    }
    expect(seen.requests.at(-1)).toEqual(expect.arrayContaining([["x-repeat", "same-value-every-time"]]));
  });
});
