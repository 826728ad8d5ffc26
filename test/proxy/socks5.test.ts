// The SOCKS5 listener (host/proxy/socks5.ts, RFC 1928) over real loopback sockets, driven byte by byte by a raw
// client: the greeting answered as soon as it is whole, CONNECT to IPv4 / IPv6 / a name, every byte after the
// request kept (same write or later, any chunking), bad versions, no acceptable method, other commands and
// address types, a silent or truncated client timed out, each reply code of the connect callback, and a
// client that resets while its tunnel is being set up.

import { afterAll, afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import {
  createSocks5Server,
  SOCKS_CONNECTION_REFUSED,
  SOCKS_GENERAL_FAILURE,
  SOCKS_HOST_UNREACHABLE,
  SOCKS_NOT_ALLOWED,
  SOCKS_OK,
  type Destination,
  type SocksConnect,
} from "../../host/proxy/socks5.js";
import { listen, pattern } from "../helpers/net.js";

const servers: net.Server[] = [];
const clients: net.Socket[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});
afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
});

interface Harness {
  port: number;
  calls: Destination[];
}

/** A server whose tunnels echo (the socket piped to itself once `start` runs), answering `code`. */
async function server(o: { code?: number; handshakeMs?: number; connect?: SocksConnect } = {}): Promise<Harness> {
  const calls: Destination[] = [];
  const connect: SocksConnect =
    o.connect ??
    (async (dest, socket) => {
      calls.push(dest);
      return { code: o.code ?? SOCKS_OK, start: () => socket.pipe(socket) };
    });
  const srv = createSocks5Server(async (d, s) => {
    if (o.connect) calls.push(d);
    return connect(d, s);
  }, o.handshakeMs);
  servers.push(srv);
  return { port: await listen(srv), calls };
}

/** A raw client that collects everything the server sends and notes when it closes. */
async function client(port: number): Promise<{
  sock: net.Socket;
  got: () => Buffer;
  closed: Promise<void>;
  waitFor: (n: number, ms?: number) => Promise<Buffer>;
}> {
  const sock = net.connect(port, "127.0.0.1");
  clients.push(sock);
  sock.on("error", () => {});
  await once(sock, "connect");
  let buf = Buffer.alloc(0);
  sock.on("data", (d: Buffer) => (buf = Buffer.concat([buf, d])));
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  const waitFor = async (n: number, ms = 3000) => {
    const end = Date.now() + ms;
    while (buf.length < n && Date.now() < end && !sock.destroyed) await new Promise((r) => setTimeout(r, 5));
    return buf;
  };
  return { sock, got: () => buf, closed, waitFor };
}

const GREETING = Buffer.from([5, 1, 0]);
const port2 = (p: number) => Buffer.from([p >> 8, p & 0xff]);
const ipv4Request = (ip: number[], port: number) => Buffer.from([5, 1, 0, 1, ...ip, ...port2(port)]);
const nameRequest = (name: string, port: number) =>
  Buffer.from([5, 1, 0, 3, name.length, ...Buffer.from(name, "latin1"), ...port2(port)]);
const ipv6Request = (words: number[], port: number) => {
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return Buffer.from([5, 1, 0, 4, ...b, ...port2(port)]);
};
const reply = (code: number) => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
const ACCEPT = Buffer.from([5, 0]);

describe("SOCKS5 requests", () => {
  it.each([
    ["IPv4", ipv4Request([10, 0, 0, 1], 8080), { host: "10.0.0.1", port: 8080 }],
    ["IPv6 (canonical text)", ipv6Request([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 443), { host: "2001:db8::1", port: 443 }],
    ["IPv4-mapped IPv6", ipv6Request([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001], 80), { host: "::ffff:a00:1", port: 80 }],
    ["a name", nameRequest("echo.default.svc.cluster.local", 80), { host: "echo.default.svc.cluster.local", port: 80 }],
    ["port 65535", ipv4Request([127, 0, 0, 1], 65535), { host: "127.0.0.1", port: 65535 }],
  ])(
    "CONNECT to %s: the destination, the greeting and success replies, then bytes both ways",
    async (_n, req, dest) => {
      const h = await server();
      const c = await client(h.port);
      c.sock.write(GREETING);
      expect((await c.waitFor(2)).equals(ACCEPT)).toBe(true);
      expect(h.calls).toEqual([]); // the greeting alone opens nothing
      c.sock.write(req);
      expect((await c.waitFor(12)).equals(Buffer.concat([ACCEPT, reply(SOCKS_OK)]))).toBe(true);
      expect(h.calls).toEqual([dest]);
      const data = pattern(64 << 10, 3);
      c.sock.write(data);
      const got = await c.waitFor(12 + data.length, 5000);
      expect(got.subarray(12).equals(data)).toBe(true);
    },
  );

  it("keeps the bytes a client sends with its request in one write (greeting + request + 4 KiB)", async () => {
    const h = await server();
    const c = await client(h.port);
    const data = pattern(4096, 9);
    c.sock.write(Buffer.concat([GREETING, ipv4Request([10, 0, 0, 2], 80), data]));
    const got = await c.waitFor(12 + data.length);
    expect(got.subarray(0, 12).equals(Buffer.concat([ACCEPT, reply(SOCKS_OK)]))).toBe(true);
    expect(got.subarray(12).equals(data)).toBe(true);
    expect(h.calls).toEqual([{ host: "10.0.0.2", port: 80 }]);
  });

  it("parses a greeting and request that arrive one byte at a time (each prefix is 'need more')", async () => {
    const h = await server();
    const c = await client(h.port);
    const all = Buffer.concat([Buffer.from([5, 3, 2, 1, 0]), nameRequest("a.b", 9), Buffer.from("hi")]);
    for (const b of all) {
      c.sock.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
    const got = await c.waitFor(14);
    expect(got.equals(Buffer.concat([ACCEPT, reply(SOCKS_OK), Buffer.from("hi")]))).toBe(true);
    expect(h.calls).toEqual([{ host: "a.b", port: 9 }]);
  });
});

describe("SOCKS5 refusals", () => {
  it.each([
    ["a SOCKS4 greeting", Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])],
    ["no acceptable method (only username/password)", Buffer.from([5, 1, 2])],
    ["no method at all", Buffer.from([5, 0])],
  ])("%s: [5, 0xff] and the connection closed, nothing dialled", async (_n, greeting) => {
    const h = await server();
    const c = await client(h.port);
    c.sock.write(greeting);
    await c.closed;
    expect(c.got().equals(Buffer.from([5, 0xff]))).toBe(true);
    expect(h.calls).toEqual([]);
  });

  it.each([
    ["a request with version 4", Buffer.from([4, 1, 0, 1, 10, 0, 0, 1, 0, 80]), SOCKS_GENERAL_FAILURE],
    ["BIND", Buffer.from([5, 2, 0, 1, 10, 0, 0, 1, 0, 80]), 0x07],
    ["UDP ASSOCIATE", Buffer.from([5, 3, 0, 1, 10, 0, 0, 1, 0, 80]), 0x07],
    ["address type 5", Buffer.from([5, 1, 0, 5, 10, 0, 0, 1, 0, 80]), 0x08],
  ])("%s: the greeting accepted, then its reply code and the connection closed", async (_n, req, code) => {
    const h = await server();
    const c = await client(h.port);
    c.sock.write(Buffer.concat([GREETING, req]));
    await c.closed;
    expect(c.got().equals(Buffer.concat([ACCEPT, reply(code)]))).toBe(true);
    expect(h.calls).toEqual([]);
  });

  it.each([
    ["nothing", Buffer.alloc(0)],
    ["half a greeting", Buffer.from([5])],
    ["a greeting", GREETING],
    ["a truncated IPv4 request", Buffer.concat([GREETING, Buffer.from([5, 1, 0, 1, 10, 0])])],
    ["a truncated IPv6 request", Buffer.concat([GREETING, ipv6Request([1, 2, 3, 4, 5, 6, 7, 8], 80).subarray(0, 15)])],
    ["a name shorter than its length byte", Buffer.concat([GREETING, Buffer.from([5, 1, 0, 3, 20, 0x61, 0x62])])],
  ])("a client that sends %s and stops is closed after the handshake timeout", async (_n, bytes) => {
    const h = await server({ handshakeMs: 150 });
    const c = await client(h.port);
    if (bytes.length) c.sock.write(bytes);
    const t0 = Date.now();
    await c.closed;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(h.calls).toEqual([]);
  });

  it.each([
    ["connection refused", SOCKS_CONNECTION_REFUSED],
    ["host unreachable", SOCKS_HOST_UNREACHABLE],
    ["not allowed", SOCKS_NOT_ALLOWED],
    ["general failure", SOCKS_GENERAL_FAILURE],
  ])("the connect callback's %s is the reply code, and the connection closes", async (_n, code) => {
    const h = await server({ code });
    const c = await client(h.port);
    c.sock.write(Buffer.concat([GREETING, ipv4Request([10, 0, 0, 3], 80)]));
    await c.closed;
    expect(c.got().equals(Buffer.concat([ACCEPT, reply(code)]))).toBe(true);
  });

  it("a connect callback that rejects is a general failure", async () => {
    const h = await server({ connect: async () => Promise.reject(new Error("boom")) });
    const c = await client(h.port);
    c.sock.write(Buffer.concat([GREETING, ipv4Request([10, 0, 0, 4], 80)]));
    await c.closed;
    expect(c.got().equals(Buffer.concat([ACCEPT, reply(SOCKS_GENERAL_FAILURE)]))).toBe(true);
  });

  it("a client that resets while its tunnel is set up: start still runs, so the caller closes what it opened", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = false;
    let socket: net.Socket | undefined;
    const h = await server({
      connect: async (_d, s) => {
        socket = s;
        await gate;
        return { code: SOCKS_OK, start: () => (started = true) };
      },
    });
    const c = await client(h.port);
    c.sock.write(Buffer.concat([GREETING, ipv4Request([10, 0, 0, 5], 80)]));
    const end = Date.now() + 3000;
    while (!socket && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    const gone = new Promise<void>((r) => socket!.once("close", () => r()));
    c.sock.resetAndDestroy();
    await gone;
    release();
    await new Promise((r) => setTimeout(r, 20));
    expect(started).toBe(true);
    expect(h.calls).toEqual([{ host: "10.0.0.5", port: 80 }]);
  });
});
