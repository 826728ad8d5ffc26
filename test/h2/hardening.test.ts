// What a hostile peer can make our engine spend, and the bounds that hold (issue 12): the Wasm
// heap (gathered frames, per-session buffers, the allocator's budget), HPACK amplification,
// SETTINGS floods, an outbound queue for a peer that never reads, and resets we are provoked
// into sending (MadeYouReset, CVE-2025-8671). Each against our server session on loopback.

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import * as abi from "../../assembly/abi.js";
import { getCodec } from "../../host/wasm/codec.js";
import { RawPeer, PREFACE } from "../helpers/raw-peer.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";
import { Cleanups, ourServer, until, type OurServer } from "../helpers/h2-server.js";

const codec = getCodec();
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function server(...args: Parameters<typeof ourServer>): Promise<OurServer> {
  const s = await ourServer(...args);
  cleanups.add(() => s.close());
  return s;
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1) and the pattern bits of its first byte. */
function hpackInt(first: number, prefixBits: number, v: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out.push(v);
  return out;
}

/** A literal field with incremental indexing and a new name (§6.2.1). */
function literalIndexed(name: string, value: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x40, ...hpackInt(0, 7, name.length)]),
    Buffer.from(name, "latin1"),
    Buffer.from(hpackInt(0, 7, value.length)),
    Buffer.from(value, "latin1"),
  ]);
}

/** A literal without indexing whose name is a static entry (§6.2.2). */
function literalStatic(index: number, value: string): Buffer {
  return Buffer.concat([
    Buffer.from([...hpackInt(0, 4, index), ...hpackInt(0, 7, value.length)]),
    Buffer.from(value, "latin1"),
  ]);
}

const CONNECT_BLOCK = Buffer.concat([literalStatic(2, "CONNECT"), literalStatic(1, "10.0.0.1:80")]);

/** A legitimate tunnel on a fresh connection still works: CONNECT answered 200, bytes echoed. */
async function freshTunnelWorks(port: number): Promise<void> {
  const p = await cleanups.peer(port);
  p.connectRequest(1);
  expect(await p.response(1)).toEqual([[":status", "200"]]);
  p.data(1, 1000, true);
  await p.waitFor((f) => f.type === abi.FRAME_DATA && f.streamId === 1 && (f.flags & abi.FLAG_END_STREAM) !== 0);
  expect(p.dataBytes(1)).toBe(1000);
}

/**
 * A bare connection that has sent the preface and SETTINGS, and scans what comes back for GOAWAY
 * without the codec: the heap figures below are then the server's alone.
 */
class Bare {
  private got = Buffer.alloc(0);
  constructor(readonly sock: net.Socket) {
    sock.on("data", (d: Buffer) => (this.got = Buffer.concat([this.got, d])));
    sock.on("error", () => {});
  }
  send(...b: Buffer[]): void {
    this.sock.write(Buffer.concat(b));
  }
  /** The GOAWAY error code received, waiting up to 5 s. */
  async goaway(): Promise<number | undefined> {
    for (let t = 0; t < 500; t++) {
      for (let off = 0; off + 9 <= this.got.length; off += 9 + this.got.readUIntBE(off, 3)) {
        if (this.got[off + 3] === abi.FRAME_GOAWAY && off + 17 <= this.got.length)
          return this.got.readUInt32BE(off + 13);
      }
      if (this.sock.destroyed) return undefined;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }
}

async function peers(port: number, n: number): Promise<Bare[]> {
  const out: Bare[] = [];
  for (let i = 0; i < n; i++) {
    const sock = net.connect(port, "127.0.0.1");
    cleanups.add(() => sock.destroy());
    await once(sock, "connect");
    const b = new Bare(sock);
    b.send(PREFACE, frame(abi.FRAME_SETTINGS, 0, 0), frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0));
    out.push(b);
  }
  await new Promise((r) => setTimeout(r, 100));
  return out;
}

const MiB = 1 << 20;

/** SETTINGS ACKs a peer received. */
const acks = (p: RawPeer) => p.frames.filter((f) => f.type === abi.FRAME_SETTINGS && f.flags === abi.FLAG_ACK).length;

describe("Wasm heap under hostile frames", () => {
  it("has a hard memory maximum of 1 GiB and a heap budget below it", () => {
    // Growing past the module's declared maximum fails in JS (the allocator never gets there).
    expect(() => codec.ex.memory.grow(16384)).toThrow(RangeError);
    expect(codec.heapLimit).toBe(768 * MiB);
    expect(codec.memoryBytes).toBeLessThan(1024 * MiB);
  });

  it("refuses a non-DATA frame larger than the header-block limit before gathering it (ENHANCE_YOUR_CALM)", async () => {
    const { port, sessions } = await server();
    const ps = await peers(port, 100);
    const taken = codec.heapTaken;
    // Each declares a 1 MiB HEADERS (our SETTINGS_MAX_FRAME_SIZE) and sends its first 16 KiB.
    const head = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(MiB)).subarray(0, 9);
    for (const p of ps) p.send(head, Buffer.alloc(16384));
    for (const p of ps) expect(await p.goaway()).toBe(abi.ENHANCE_YOUR_CALM);
    // Nothing was gathered: before the fix, 100 x 1 MiB.
    expect(codec.heapTaken - taken).toBeLessThan(1 * MiB);
    // The same for a 1 MiB SETTINGS and GOAWAY (SETTINGS: more than 32 entries).
    const [s1, s2] = await peers(port, 2);
    s1.send(Buffer.from([0x0f, 0xff, 0xfc, abi.FRAME_SETTINGS, 0, 0, 0, 0, 0]));
    s2.send(Buffer.from([0x10, 0, 0, abi.FRAME_GOAWAY, 0, 0, 0, 0, 0]), Buffer.alloc(8));
    expect(await s1.goaway()).toBe(abi.ENHANCE_YOUR_CALM);
    expect(await s2.goaway()).toBe(abi.ENHANCE_YOUR_CALM);
    await freshTunnelWorks(port);
    expect(sessions.length).toBeGreaterThan(100);
    expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
  });

  it("gathers a partial frame with the bytes that came, and returns the buffer once the frame is done", async () => {
    const { port } = await server();
    const N = 300;
    const ps = await peers(port, N);
    const taken = codec.heapTaken;
    // Each declares an 80 KiB HEADERS (the limit: 64 KiB header list + 16 KiB) and sends 1 KiB of it.
    const declared = 64 * 1024 + 16384;
    const head = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(declared)).subarray(0, 9);
    for (const p of ps) p.send(head, CONNECT_BLOCK, Buffer.alloc(1024 - CONNECT_BLOCK.length));
    await new Promise((r) => setTimeout(r, 300));
    const partial = codec.heapTaken - taken;
    // 4 KiB each (the first growth step), not the 128 KiB block the declared length would take.
    expect(partial).toBeLessThan(N * 8 * 1024);
    expect(partial).toBeLessThan((N * declared) / 8);
    expect(codec.memoryBytes).toBeLessThan(64 * MiB); // the stated bound for this test (before: 300 x 128 KiB held)
    // Complete the frames: zeros decode as empty literal fields, 32 octets of header list per 2 bytes,
    // so each block expands past 4x the list limit (ENHANCE_YOUR_CALM); the buffers go back.
    for (const p of ps) p.send(Buffer.alloc(declared - 1024));
    for (const p of ps) expect(await p.goaway()).toBe(abi.ENHANCE_YOUR_CALM);
    const after = codec.heapTaken;
    const free = codec.ex.heap_check();
    expect(free).toBeGreaterThan(N); // the gather buffers and session contexts are on the free lists
    // A second wave reuses them: the heap does not grow again.
    const ps2 = await peers(port, N);
    for (const p of ps2) p.send(head, CONNECT_BLOCK, Buffer.alloc(1024 - CONNECT_BLOCK.length));
    await new Promise((r) => setTimeout(r, 300));
    expect(codec.heapTaken - after).toBeLessThan(2 * MiB);
    await freshTunnelWorks(port);
    console.log(
      `[h2 hardening] ${N} partial 80 KiB HEADERS: +${(partial / 1024).toFixed(0)} KiB heap; ` +
        `second wave: +${((codec.heapTaken - after) / 1024).toFixed(0)} KiB; memory ${(codec.memoryBytes / MiB).toFixed(1)} MiB`,
    );
  });

  it("turns allocator exhaustion into a per-session INTERNAL_ERROR; other sessions keep working", async () => {
    // A 1 MiB header-list limit, so the hostile frames need blocks no earlier test left on the free lists.
    const { port, errors } = await server({ maxHeaderListSize: MiB });
    // A session opened before the budget runs out, with a tunnel.
    const victim = await cleanups.peer(port);
    victim.connectRequest(1);
    expect(await victim.response(1)).toEqual([[":status", "200"]]);
    const saved = codec.heapLimit;
    codec.heapLimit = codec.heapTaken + 4 * MiB;
    try {
      // Hostile peers hold partial 80 KiB HEADERS until the budget is spent.
      const head = frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, Buffer.alloc(MiB)).subarray(0, 9);
      const hostile: RawPeer[] = [];
      for (let i = 0; i < 60 && !errors.some((e) => e.reason === abi.R_OUT_OF_MEMORY); i++) {
        const sock = net.connect(port, "127.0.0.1");
        await once(sock, "connect");
        const p = new RawPeer(sock);
        cleanups.add(() => p.close());
        hostile.push(p);
        p.send(PREFACE, frame(abi.FRAME_SETTINGS, 0, 0), head, Buffer.alloc(900 * 1024));
        await p.waitFor((f) => f.type === abi.FRAME_SETTINGS || f.type === abi.FRAME_GOAWAY, 2000);
        await new Promise((r) => setTimeout(r, 20));
      }
      const oom = errors.filter((e) => e.reason === abi.R_OUT_OF_MEMORY);
      expect(oom.length).toBeGreaterThan(0);
      expect(oom[0].code).toBe(abi.INTERNAL_ERROR);
      // The refused peer got GOAWAY(INTERNAL_ERROR).
      const refused = await hostile[hostile.length - 1].goaway();
      expect(refused?.errorCode).toBe(abi.INTERNAL_ERROR);
      // The victim's tunnel and HPACK state are intact: more data echoes, a new CONNECT decodes.
      victim.data(1, 5000);
      expect(await until(() => victim.dataBytes(1) === 5000)).toBe(true);
      victim.connectRequest(3, "10.0.0.2:443");
      expect(await victim.response(3)).toEqual([[":status", "200"]]);
      expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
    } finally {
      codec.heapLimit = saved;
    }
    await freshTunnelWorks(port);
  });
});

describe("HPACK amplification", () => {
  it("stops copying past the header-list limit and fails the connection past 4x (ENHANCE_YOUR_CALM)", async () => {
    const { port } = await server();
    const p = await cleanups.peer(port);
    // One 4 KiB entry, then 60,000 one-byte references to it: 240 MiB of header list from 60 KiB.
    const block = Buffer.concat([CONNECT_BLOCK, literalIndexed("x", "a".repeat(4000)), Buffer.alloc(60_000, 0xbe)]);
    p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, block));
    const g = await p.goaway();
    expect(g?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    await freshTunnelWorks(port);
  });

  it("answers a list just over the limit with 431 and keeps the connection (the table stays in sync)", async () => {
    const { port } = await server();
    const p = await cleanups.peer(port);
    const block = Buffer.concat([CONNECT_BLOCK, literalIndexed("x", "a".repeat(4000)), Buffer.alloc(20, 0xbe)]);
    p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, block));
    const f = await p.waitFor((x) => x.type === abi.FRAME_HEADERS && x.streamId === 1);
    expect(f).toBeDefined();
    // The next block refers to the entry the oversized one inserted (index 62): decoded in sync.
    p.send(frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 3, Buffer.concat([CONNECT_BLOCK, Buffer.from([0xbe])])));
    const r3 = await p.waitFor((x) => x.type === abi.FRAME_HEADERS && x.streamId === 3);
    expect(r3).toBeDefined();
    expect(p.frames.some((x) => x.type === abi.FRAME_GOAWAY)).toBe(false);
  });

  it("checks the size of the first HEADERS frame, not only of CONTINUATIONs", async () => {
    const { port } = await server({ maxHeaderListSize: 8192 });
    const p = await cleanups.peer(port);
    // 8 KiB list limit: the block limit is 24 KiB; one 30 KiB HEADERS frame (below the 1 MiB max frame size).
    p.send(
      frame(
        abi.FRAME_HEADERS,
        abi.FLAG_END_HEADERS,
        1,
        Buffer.concat([CONNECT_BLOCK, Buffer.alloc(30 * 1024, 0x80 | 2)]),
      ),
    );
    expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
  });
});

describe("SETTINGS", () => {
  it("refuses a SETTINGS frame of more than 32 entries (ENHANCE_YOUR_CALM); 32 are fine", async () => {
    const { port } = await server();
    const ok = await cleanups.peer(port);
    const entries: [number, number][] = Array.from({ length: 32 }, (_, i) => [
      abi.SETTINGS_INITIAL_WINDOW_SIZE,
      65535 + i,
    ]);
    ok.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload(entries)));
    expect(await until(() => acks(ok) === 2)).toBe(true);
    const bad = await cleanups.peer(port);
    bad.send(frame(abi.FRAME_SETTINGS, 0, 0, settingsPayload([...entries, [abi.SETTINGS_ENABLE_PUSH, 0]])));
    expect((await bad.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
  });

  it("applies INITIAL_WINDOW_SIZE once per frame yet detects an overflow by any value in between", async () => {
    const { port } = await server({}, true);
    const p = await cleanups.peer(port);
    p.connectRequest(1);
    expect(await p.response(1)).toEqual([[":status", "200"]]);
    p.windowUpdate(1, 1000); // our send window on stream 1: 65535 + 1000
    // Last value wins (65535), but 2^31-1 in between would have pushed the window past 2^31-1.
    p.send(
      frame(
        abi.FRAME_SETTINGS,
        0,
        0,
        settingsPayload([
          [abi.SETTINGS_INITIAL_WINDOW_SIZE, abi.MAX_WINDOW_SIZE],
          [abi.SETTINGS_INITIAL_WINDOW_SIZE, 65535],
        ]),
      ),
    );
    expect((await p.goaway())?.errorCode).toBe(abi.FLOW_CONTROL_ERROR);
  });

  it("applies the last INITIAL_WINDOW_SIZE of a frame to open streams", async () => {
    const { port, streams } = await server({}, true);
    const p = await cleanups.peer(port);
    p.connectRequest(1);
    expect(await p.response(1)).toEqual([[":status", "200"]]);
    p.send(
      frame(
        abi.FRAME_SETTINGS,
        0,
        0,
        settingsPayload([
          [abi.SETTINGS_INITIAL_WINDOW_SIZE, 10],
          [abi.SETTINGS_INITIAL_WINDOW_SIZE, 100_000],
        ]),
      ),
    );
    expect(await until(() => acks(p) === 2)).toBe(true);
    streams[0].write(Buffer.alloc(90_000));
    // The connection window is 65535: the stream window (100,000) is not the limit.
    expect(await until(() => p.dataBytes(1) === 65535)).toBe(true);
  });
});

describe("a peer that does not read, and resets it provokes", () => {
  it("closes the connection once control frames queue past the bound; the process keeps serving", async () => {
    const { port, errors } = await server({ maxLocalResetsPerWindow: 1e9, maxQueuedControlBytes: 256 * 1024 });
    const sock = net.connect(port, "127.0.0.1");
    cleanups.add(() => sock.destroy());
    sock.on("error", () => {});
    await once(sock, "connect");
    sock.pause(); // never reads
    // Requests the server must answer with RST_STREAM (CONNECT without :authority): 10 bytes in, 13 out.
    const bad = literalStatic(2, "CONNECT");
    const n = 600_000;
    const reqs = Buffer.alloc(n * (9 + bad.length));
    for (let i = 0; i < n; i++)
      frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS | abi.FLAG_END_STREAM, 2 * i + 1, bad).copy(
        reqs,
        i * (9 + bad.length),
      );
    sock.write(Buffer.concat([PREFACE, frame(abi.FRAME_SETTINGS, 0, 0), frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0)]));
    for (let off = 0; off < reqs.length && !sock.destroyed; off += 1 << 20) {
      if (!sock.write(reqs.subarray(off, off + (1 << 20)))) {
        await Promise.race([once(sock, "drain"), once(sock, "close"), new Promise((r) => setTimeout(r, 2000))]);
      }
      if (errors.length > 0) break;
    }
    expect(await until(() => errors.length > 0, 20_000)).toBe(true);
    expect(errors[0].code).toBe(abi.ENHANCE_YOUR_CALM);
    expect(errors[0].message).toMatch(/does not read/);
    await freshTunnelWorks(port);
  }, 60_000);

  it("counts streams we reset for invalid frames (WINDOW_UPDATE 0) and calms a MadeYouReset peer", async () => {
    const { port, errors } = await server();
    const p = await cleanups.peer(port);
    const burst: Buffer[] = [];
    for (let i = 0; i < 450; i++) {
      const id = 2 * i + 1;
      burst.push(
        frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, id, CONNECT_BLOCK),
        frame(abi.FRAME_WINDOW_UPDATE, 0, id, u32(0)),
      );
    }
    p.send(...burst);
    expect((await p.goaway())?.errorCode).toBe(abi.ENHANCE_YOUR_CALM);
    expect(errors[0].message).toMatch(/MadeYouReset/);
    // Each stream got its RST_STREAM(PROTOCOL_ERROR) up to the budget (400 per 10 s).
    expect(p.frames.filter((f) => f.type === abi.FRAME_RST_STREAM).length).toBe(400);
    await freshTunnelWorks(port);
  });
});
