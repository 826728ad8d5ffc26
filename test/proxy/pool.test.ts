// HbonePool (host/proxy/pool.ts) over real H2Sessions on loopback TCP against our CONNECT echo server: one dial
// per key however many checkouts wait for it (and a failed dial retried by the next waiter), the stream cap held
// at checkout even when every waiter of a fresh session opens its stream at once, reuse of an idle session,
// the idle close (and none while a stream is open), removal on GOAWAY, keys apart, a closed pool refusing.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import { H2Session } from "../../host/h2/session.js";
import { HbonePool, keyString, type WorkloadKey } from "../../host/proxy/pool.js";
import { ourServer, until, type OurServer } from "../helpers/h2-server.js";

let server: OurServer;
const sessions: H2Session[] = [];

beforeAll(async () => {
  server = await ourServer();
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  await server.close();
});

const KEY: WorkloadKey = {
  src: "spiffe://cluster.local/ns/default/sa/sleep",
  dst: ["spiffe://cluster.local/ns/default/sa/echo"],
  hop: "127.0.0.1:15008",
};

/** A dial that opens a real client session to the echo server, counting calls; `gate` holds it back. */
function dialer(gate?: Promise<void>): { dial: () => Promise<H2Session>; calls: () => number } {
  let calls = 0;
  return {
    calls: () => calls,
    dial: async () => {
      calls++;
      await gate;
      const sock = net.connect(server.port, "127.0.0.1");
      await once(sock, "connect");
      const s = H2Session.client(sock);
      s.on("error", () => {});
      sessions.push(s);
      return s;
    },
  };
}

/** `p`, or a rejection after `ms` (a tunnel left waiting on a full session must fail the test, not hang it). */
function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`not done in ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

async function openStream(s: H2Session): Promise<void> {
  const stream = await s.connect("127.0.0.1:9000");
  stream.on("error", () => {});
  expect(stream.status).toBe(200);
}

describe("HbonePool", () => {
  it("dials once for a key however many checkouts wait for the dial", async () => {
    const pool = new HbonePool();
    let open!: () => void;
    const d = dialer(new Promise<void>((r) => (open = r)));
    const all = Array.from({ length: 20 }, () => pool.checkout(KEY, d.dial));
    await new Promise((r) => setTimeout(r, 20));
    expect(d.calls()).toBe(1);
    open();
    const got = await Promise.all(all);
    expect(new Set(got).size).toBe(1);
    expect(pool.stats).toMatchObject({ dials: 1, dialFailures: 0, reused: 19 });
    pool.close();
  });

  it("a failed dial rejects its caller only; a waiter dials again", async () => {
    const pool = new HbonePool();
    let n = 0;
    const good = dialer();
    const dial = async () => {
      if (n++ === 0) {
        await new Promise((r) => setTimeout(r, 20));
        throw new Error("connection refused");
      }
      return good.dial();
    };
    const [first, ...rest] = await Promise.allSettled(Array.from({ length: 5 }, () => pool.checkout(KEY, dial)));
    expect(first.status).toBe("rejected");
    expect(rest.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "fulfilled"]);
    expect(pool.stats).toMatchObject({ dials: 1, dialFailures: 1, reused: 3 });
    expect(n).toBe(2);
    pool.close();
  });

  it("holds the stream cap at checkout when every waiter opens its stream at once (150 tunnels, cap 100)", async () => {
    const pool = new HbonePool();
    const d = dialer();
    const got: H2Session[] = [];
    await within(
      Promise.all(
        Array.from({ length: 150 }, async () => {
          const s = await pool.checkout(KEY, d.dial);
          got.push(s);
          await openStream(s);
        }),
      ),
    );
    const distinct = [...new Set(got)];
    expect(distinct.map((s) => s.activeStreams).sort((a, b) => b - a)).toEqual([100, 50]);
    expect(pool.stats.dials).toBe(2);
    pool.close();
  });

  it("holds a small cap the session itself would exceed (cap 3, session limit 100)", async () => {
    const pool = new HbonePool({ maxStreams: 3 });
    const d = dialer();
    const got = await within(
      Promise.all(
        Array.from({ length: 7 }, async () => {
          const s = await pool.checkout(KEY, d.dial);
          await openStream(s);
          return s;
        }),
      ),
    );
    for (const s of new Set(got)) expect(s.activeStreams).toBeLessThanOrEqual(3);
    expect(pool.stats.dials).toBe(3);
    pool.close();
  });

  it("reuses an idle session for the next tunnel, and keys apart get sessions apart", async () => {
    const pool = new HbonePool();
    const d = dialer();
    const a = await pool.checkout(KEY, d.dial);
    const stream = await a.connect("127.0.0.1:9000");
    stream.end();
    stream.resume();
    await once(stream, "close");
    expect(await pool.checkout(KEY, d.dial)).toBe(a);
    // The destination identities are a set: their order is not part of the key.
    const two = { ...KEY, dst: ["spiffe://b", "spiffe://a"] };
    expect(keyString(two)).toBe(keyString({ ...KEY, dst: ["spiffe://a", "spiffe://b"] }));
    const other = await pool.checkout({ ...KEY, hop: "127.0.0.9:15008" }, d.dial);
    expect(other).not.toBe(a);
    expect(await pool.checkout(two, d.dial)).not.toBe(a);
    expect(pool.size).toBe(3);
    expect(pool.stats).toMatchObject({ dials: 3, reused: 1 });
    pool.close();
  });

  it("closes a session idle for idleMs, never one with an open stream", async () => {
    const pool = new HbonePool({ idleMs: 150 });
    const d = dialer();
    const s = await pool.checkout(KEY, d.dial);
    const long = await s.connect("127.0.0.1:9000");
    long.on("error", () => {});
    const short = await s.connect("127.0.0.1:9000");
    short.end();
    short.resume();
    await once(short, "close");
    // One stream is still open: past idleMs the session stays.
    await new Promise((r) => setTimeout(r, 400));
    expect(s.open).toBe(true);
    expect(pool.stats.idleClosed).toBe(0);
    long.end();
    long.resume();
    await once(long, "close");
    expect(await until(() => pool.stats.idleClosed === 1, 3000)).toBe(true);
    expect(pool.size).toBe(0);
    expect(s.open).toBe(false);
    // The next tunnel dials a fresh session.
    expect(await pool.checkout(KEY, d.dial)).not.toBe(s);
    expect(pool.stats.dials).toBe(2);
    pool.close();
  });

  it("drops a session the peer sent GOAWAY on; the next checkout dials", async () => {
    const pool = new HbonePool();
    const d = dialer();
    const s = await pool.checkout(KEY, d.dial);
    await openStream(s);
    const before = server.sessions.length;
    expect(before).toBeGreaterThan(0);
    server.sessions[before - 1]!.close(); // GOAWAY(NO_ERROR) from the server
    expect(await until(() => pool.size === 0, 3000)).toBe(true);
    expect(await pool.checkout(KEY, d.dial)).not.toBe(s);
    expect(pool.stats.dials).toBe(2);
    pool.close();
  });

  it("a closed or draining pool refuses checkouts", async () => {
    const pool = new HbonePool();
    const d = dialer();
    await pool.checkout(KEY, d.dial);
    pool.drain();
    await expect(pool.checkout(KEY, d.dial)).rejects.toThrow(/pool closed/);
    pool.close();
    await expect(pool.checkout(KEY, d.dial)).rejects.toThrow(/pool closed/);
    expect(d.calls()).toBe(1);
  });
});
