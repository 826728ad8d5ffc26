// AF_UNIX SOCK_SEQPACKET through host/sys (no root needed): datagram boundaries, real fds across SCM_RIGHTS,
// MSG_TRUNC / MSG_CTRUNC reported (and no fd leaked), EAGAIN as "nothing now", peer close as "eof", a flood read
// in order without blocking the event loop, and clear errors for a missing or bad path.

import fs from "node:fs";
import net from "node:net";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { SeqpacketServer, SeqpacketSocket, type Datagram } from "../../host/sys/seqpacket.js";
import { nativeAvailable } from "../../host/sys/libc.js";
import { closeQuietly } from "../../host/sys/libc.js";

const NATIVE = nativeAvailable();
if (!NATIVE) console.warn("native calls unavailable here (koffi on Linux x64/arm64), SEQPACKET tests skipped");

const openFds = () => fs.readdirSync("/proc/self/fd").length;

/** A connected pair: [client, accepted] plus cleanup. */
async function pair(opts: { maxData?: number; maxFds?: number } = {}) {
  const p = path.join(os.tmpdir(), `hb-sp-${randomBytes(4).toString("hex")}.sock`);
  const server = SeqpacketServer.listen(p);
  const client = SeqpacketSocket.connect(p, opts);
  let peer: SeqpacketSocket | null = null;
  for (let i = 0; i < 100 && !peer; i++) {
    peer = server.accept();
    if (!peer) await new Promise((r) => setTimeout(r, 5));
  }
  if (!peer) throw new Error("accept timed out");
  const close = () => {
    client.close();
    peer?.close();
    server.close();
    fs.rmSync(p, { force: true });
  };
  return { client, peer, close, path: p };
}

/** Waits (via the poller) for the next datagram on `s`. */
function nextDatagram(s: SeqpacketSocket, timeoutMs = 5000, useTimer = false): Promise<Datagram | "eof"> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      w.close();
      reject(new Error("no datagram"));
    }, timeoutMs);
    const w = s.watch(
      () => {
        const d = s.recv();
        if (d === null) return;
        clearTimeout(timer);
        w.close();
        resolve(d);
      },
      { timer: useTimer },
    );
  });
}

describe.skipIf(!NATIVE)("SOCK_SEQPACKET with SCM_RIGHTS", () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => cleanups.splice(0).forEach((f) => f()));

  it("keeps datagram boundaries and passes real descriptors", async () => {
    const { client, peer, close } = await pair();
    cleanups.push(close);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hb-sp-"));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = fs.openSync(path.join(dir, "f"), "w+");
    fs.writeSync(file, "through the fd");
    peer.send(Buffer.from("one"), [file]);
    peer.send(Buffer.from("two"));
    const d1 = (await nextDatagram(client)) as Datagram;
    expect(d1.data.toString()).toBe("one");
    expect(d1.fds).toHaveLength(1);
    expect(d1.fds[0]).not.toBe(file); // a new descriptor for the same open file
    expect(fs.fstatSync(d1.fds[0]).ino).toBe(fs.fstatSync(file).ino);
    const buf = Buffer.alloc(14);
    fs.readSync(d1.fds[0], buf, 0, 14, 0);
    expect(buf.toString()).toBe("through the fd");
    const d2 = (await nextDatagram(client)) as Datagram;
    expect([d2.data.toString(), d2.fds, d2.truncated, d2.controlTruncated]).toEqual(["two", [], false, false]);
    expect(client.recv()).toBeNull(); // nothing waiting: EAGAIN, not a block
    fs.closeSync(d1.fds[0]);
    fs.closeSync(file);
  });

  it("reports MSG_TRUNC and MSG_CTRUNC; the fds that did not fit are not leaked", async () => {
    const { client, peer, close } = await pair({ maxData: 1024, maxFds: 1 });
    cleanups.push(close);
    const before = openFds();
    peer.send(Buffer.alloc(1500, 7));
    const big = (await nextDatagram(client)) as Datagram;
    expect([big.data.length, big.truncated]).toEqual([1024, true]);
    const fds = Array.from({ length: 5 }, () => fs.openSync("/dev/null", "r"));
    peer.send(Buffer.from("x"), fds);
    fds.forEach((fd) => fs.closeSync(fd));
    const ct = (await nextDatagram(client)) as Datagram;
    expect(ct.controlTruncated).toBe(true);
    expect(ct.fds.length).toBeLessThan(5);
    ct.fds.forEach(closeQuietly);
    expect(openFds()).toBe(before);
  });

  it("the timer fallback (koffi without libuv poll) delivers too", async () => {
    const { client, peer, close } = await pair();
    cleanups.push(close);
    peer.send(Buffer.from("tick"));
    const d = (await nextDatagram(client, 5000, true)) as Datagram;
    expect(d.data.toString()).toBe("tick");
  });

  it("connecting to a stream socket is refused with the reason", async () => {
    const p = path.join(os.tmpdir(), `hb-stream-${randomBytes(4).toString("hex")}.sock`);
    const srv = net.createServer();
    srv.listen(p);
    await once(srv, "listening");
    try {
      expect(() => SeqpacketSocket.connect(p)).toThrow(/EPROTOTYPE — the socket at that path is not SOCK_SEQPACKET/);
    } finally {
      srv.close();
    }
  });

  it("the peer's close reads as eof", async () => {
    const { client, peer, close } = await pair();
    cleanups.push(close);
    peer.close();
    expect(await nextDatagram(client)).toBe("eof");
  });

  it("a flood of 2000 datagrams arrives in order; a full socket says EAGAIN instead of blocking", async () => {
    const { client, peer, close } = await pair();
    cleanups.push(close);
    const got: number[] = [];
    let eagain = 0;
    const done = new Promise<void>((resolve) => {
      const w = client.watch(() => {
        for (let d = client.recv(); d !== null; d = client.recv()) {
          if (d !== "eof") got.push(d.data.readUInt32BE(0));
        }
        if (got.length === 2000) {
          w.close();
          resolve();
        }
      });
    });
    let sent = 0;
    while (sent < 2000) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(sent);
      try {
        peer.send(b);
        sent++;
      } catch (err) {
        if ((err as { code?: string }).code !== "EAGAIN") throw err;
        eagain++;
        await new Promise((r) => setImmediate(r)); // the receiver drains meanwhile
      }
    }
    await done;
    expect(got).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(eagain).toBeGreaterThan(0); // the send buffer filled: the sender was told, not blocked
  });

  it("connect to a missing path, a plain file or a too-long path fails with the reason", () => {
    const missing = path.join(os.tmpdir(), `hb-absent-${randomBytes(4).toString("hex")}.sock`);
    expect(() => SeqpacketSocket.connect(missing)).toThrow(
      /^connect\(.*\): ENOENT — no agent is listening on that path$/,
    );
    const file = path.join(os.tmpdir(), `hb-file-${randomBytes(4).toString("hex")}`);
    fs.writeFileSync(file, "");
    try {
      expect(() => SeqpacketSocket.connect(file)).toThrow(/ECONNREFUSED — no agent is listening on that path/);
    } finally {
      fs.rmSync(file);
    }
    expect(() => SeqpacketSocket.connect("/" + "x".repeat(200))).toThrow(/a socket path must be 1-107 bytes/);
  });

  it("sending on a closed socket is a SysError, not a crash", async () => {
    const { client, close } = await pair();
    cleanups.push(close);
    client.close();
    expect(() => client.send(Buffer.from("x"))).toThrow(/EBADF/);
    expect(() => client.recv()).toThrow(/EBADF/);
  });
});
