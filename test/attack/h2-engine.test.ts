// Attacks on the HTTP/2 engine of a real `hbone proxy` process over real mTLS (issue 12, items
// Wasm heap, HPACK amplification, SETTINGS, send queue / MadeYouReset). For each: the process
// survives, a fresh legitimate tunnel still works, and Wasm memory (the proxy's
// hbone_wasm_memory_bytes gauge) and RSS stay under the bounds stated below.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { once } from "node:events";
import type tls from "node:tls";
import * as abi from "../../assembly/abi.js";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { CertificateAuthority, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { connectHbone } from "../../host/tls/contexts.js";
import { RawPeer } from "../helpers/raw-peer.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { drain, pattern } from "../helpers/net.js";
import { rssBytes, cpuSeconds } from "../../bench/topologies/procs.js";
import { CLI, proxyArgs, spawnHbone, type HboneProcess } from "../helpers/attack.js";

const MiB = 1 << 20;
const ECHO_ID = new Identity("cluster.local", "default", "echo");

let fx: MeshFixture;
let proxy: HboneProcess;
let ready: { inbound: string; metrics: number };
let client: Mesh;
let cert: WorkloadCertificate;
let inboundHost = "";
let inboundPort = 0;
const sockets: tls.TLSSocket[] = [];

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  proxy = await spawnHbone("proxy", proxyArgs(fx, "default/echo/echo"), [], { env: { HBONE_LOG_LEVEL: "error" } });
  ready = proxy.ready as typeof ready;
  [inboundHost, inboundPort] = [ready.inbound.split(":")[0], Number(ready.inbound.split(":")[1])];
  client = await fx.proxy({ workload: "default/sleep/sleep", inboundPort: false, hbonePort: inboundPort });
  cert = await (await CertificateAuthority.load(fx.caDir)).issue(new Identity("cluster.local", "default", "sleep"));
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  proxy?.proc.kill("SIGKILL");
  await fx?.close();
});

/** An mTLS connection to the spawned proxy's inbound (destroyed after the file). */
async function mtlsSocket(): Promise<tls.TLSSocket> {
  const { socket } = await connectHbone({
    host: inboundHost,
    port: inboundPort,
    certificate: cert,
    expected: [ECHO_ID],
  });
  sockets.push(socket);
  return socket;
}

/** A raw HTTP/2 peer over mTLS to the spawned proxy's inbound. */
async function rawPeer(): Promise<RawPeer> {
  return RawPeer.over(await mtlsSocket());
}

async function wasmMemory(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ready.metrics}/metrics`)).text();
  const m = /^hbone_wasm_memory_bytes (\d+)/m.exec(text);
  expect(m).not.toBeNull();
  return Number(m![1]);
}

/** The process is alive and a fresh legitimate tunnel moves bytes intact. */
async function stillServes(): Promise<void> {
  expect(proxy.proc.exitCode).toBeNull();
  const data = pattern(200_000, 5);
  const t = await client.connect("echo.default.svc.cluster.local:9000");
  t.end(data);
  const r = await drain(t, data);
  expect(r.equal).toBe(true);
}

const CONNECT_TO_ECHO = () =>
  [
    [":method", "CONNECT"],
    [":authority", `127.0.0.3:${fx.echoPort}`],
  ] as [string, string][];

describe("hbone proxy under HTTP/2 engine attacks", () => {
  it("Wasm heap: oversized and partial non-DATA frames on 50 connections; memory stays under +16 MiB", async () => {
    await stillServes();
    const before = await wasmMemory();
    const rss0 = rssBytes(proxy.pid);
    const big = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(MiB)).subarray(0, 9);
    const partial = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(80 * 1024)).subarray(0, 9);
    const calm: RawPeer[] = [],
      holding: RawPeer[] = [];
    for (let i = 0; i < 25; i++) {
      const p = await rawPeer();
      p.send(big, Buffer.alloc(64 * 1024)); // declares 1 MiB: refused before anything is gathered
      calm.push(p);
      const q = await rawPeer();
      q.send(partial, Buffer.alloc(40 * 1024)); // half of an 80 KiB frame, then silence
      holding.push(q);
    }
    for (const p of calm) expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    const during = await wasmMemory();
    // Before the fix: 25 x 1 MiB gathered + 25 x 128 KiB, kept for the sessions' lives.
    expect(during - before).toBeLessThan(16 * MiB);
    await stillServes();
    for (const q of holding) q.close();
    console.log(
      `[attack h2] heap: wasm ${(before / MiB).toFixed(1)} -> ${(during / MiB).toFixed(1)} MiB; ` +
        `rss ${(rss0 / MiB).toFixed(0)} -> ${(rssBytes(proxy.pid) / MiB).toFixed(0)} MiB`,
    );
  });

  it("HPACK amplification: 20 blocks of 60,000 references to a 4 KiB entry are refused (ENHANCE_YOUR_CALM)", async () => {
    const cpu0 = cpuSeconds(proxy.pid);
    const entry = Buffer.concat([Buffer.from([0x40, 1, 0x78, 0x7f, 0xa1, 0x1e]), Buffer.alloc(4000, 0x61)]); // x: 4000 x "a"
    for (let i = 0; i < 20; i++) {
      const p = await rawPeer();
      const block = Buffer.concat([p.enc.encode(CONNECT_TO_ECHO()), entry, Buffer.alloc(60_000, 0xbe)]);
      p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, block));
      expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
      p.close();
    }
    const cpu = cpuSeconds(proxy.pid) - cpu0;
    // Each block would expand to 240 MiB of header list; decoding stops at 4 x 64 KiB. Includes 20 TLS handshakes.
    expect(cpu).toBeLessThan(3);
    console.log(
      `[attack h2] hpack: 20 amplification blocks cost the proxy ${(cpu * 1000).toFixed(0)} ms CPU (with handshakes)`,
    );
    await stillServes();
  });

  it("SETTINGS: 32-entry frames with 50 open streams are applied; 33 entries or a 1 MiB frame are refused", async () => {
    const p = await rawPeer();
    for (let i = 0; i < 50; i++) p.headers(2 * i + 1, CONNECT_TO_ECHO());
    await p.waitFor(() => p.frames.filter((f) => f.type === abi.FRAME_HEADERS).length >= 50);
    const cpu0 = cpuSeconds(proxy.pid);
    const entries: [number, number][] = Array.from({ length: 32 }, (_, i) => [
      abi.SETTINGS_INITIAL_WINDOW_SIZE,
      65535 + (i % 2),
    ]);
    for (let i = 0; i < 90; i++) p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload(entries)));
    await p.waitFor(
      () => p.frames.filter((f) => f.type === abi.FRAME_SETTINGS && f.flags === abi.FLAG_ACK).length >= 91,
    );
    expect(p.frames.some((f) => f.type === abi.FRAME_GOAWAY)).toBe(false);
    console.log(
      `[attack h2] settings: 90 x 32 entries with 50 streams: ${((cpuSeconds(proxy.pid) - cpu0) * 1000).toFixed(0)} ms CPU`,
    );
    p.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([...entries, [abi.SETTINGS_ENABLE_PUSH, 0]])));
    expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    const q = await rawPeer();
    q.send(frame(abi.FRAME_SETTINGS, 0, 0, Buffer.alloc(174_762 * 6)));
    expect((await q.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    await stillServes();
  });

  // Two floods from a peer that never reads: malformed CONNECTs (each a RST_STREAM we are provoked into: the
  // MadeYouReset budget, 400 per 10 s, trips) and well-formed GETs (each answered 400, which no budget counts:
  // the 1 MiB bound on control frames queued for a non-reading peer trips).
  for (const [what, block, n] of [
    ["malformed CONNECTs", [0x02, 0x07, ...Buffer.from("CONNECT")], 200_000],
    ["GETs answered 400", [0x82, 0x87, 0x84, 0x01, 0x01, 0x78], 1_600_000],
  ] as const) {
    it(`send queue: a peer that never reads, sending ${n} ${what}, is cut off; RSS stays under +150 MiB`, async () => {
      const rss0 = rssBytes(proxy.pid);
      const socket = await mtlsSocket();
      socket.on("error", () => {});
      socket.pause(); // never reads
      const closed = once(socket, "close");
      const req = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS | abi.FLAG_END_STREAM, 0, [...block]);
      const reqs = Buffer.alloc(n * req.length);
      for (let i = 0; i < n; i++) {
        req.copy(reqs, i * req.length);
        reqs.writeUInt32BE(2 * i + 1, i * req.length + 5);
      }
      socket.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
          frame(abi.FRAME_SETTINGS, 0, 0),
          frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0),
        ]),
      );
      for (let off = 0; off < reqs.length && !socket.destroyed; off += MiB) {
        if (!socket.write(reqs.subarray(off, off + MiB))) {
          await Promise.race([once(socket, "drain"), closed, new Promise((r) => setTimeout(r, 3000))]);
        }
      }
      // A paused socket does not see the close: look after a while.
      await new Promise((r) => setTimeout(r, 3000));
      const grown = rssBytes(proxy.pid) - rss0;
      socket.resume();
      await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error("not closed")), 10_000))]);
      expect(grown).toBeLessThan(150 * MiB); // before the fix: +305 MiB for 3M requests, and growing
      console.log(`[attack h2] queue (${what}): non-reading peer closed; rss +${(grown / MiB).toFixed(0)} MiB`);
      await stillServes();
    });
  }

  it("MadeYouReset: WINDOW_UPDATE 0 on 401 answered tunnels trips ENHANCE_YOUR_CALM", async () => {
    const p = await rawPeer();
    let calm: number | undefined;
    for (let i = 0; i < 450 && calm === undefined; i++) {
      const id = 2 * i + 1;
      p.headers(id, CONNECT_TO_ECHO());
      await p.waitFor((f) => (f.type === abi.FRAME_HEADERS && f.streamId === id) || f.type === abi.FRAME_GOAWAY);
      p.send(frame(abi.FRAME_WINDOW_UPDATE, 0, id, u32(0)));
      calm = p.frames.find((f) => f.type === abi.FRAME_GOAWAY)?.errorCode;
    }
    expect(calm ?? (await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    expect(p.frames.filter((f) => f.type === abi.FRAME_RST_STREAM && f.errorCode === abi.PROTOCOL_ERROR).length).toBe(
      400,
    );
    await stillServes();
  });
});
