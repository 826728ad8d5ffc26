// :15020 against clients that ask for /metrics and never read (host/admin.ts): a real server on loopback whose
// answer is 32 MiB, as at the series cap. Only `inFlight` such answers are held at once (another scrape gets a 503
// at once), a stalled answer is dropped after `stallMs`, and its place is free again; a reading client still gets the
// whole text.

import net from "node:net";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStatusServers, type StatusServers } from "../host/admin.js";

const BIG = "x".repeat(32 << 20) + "\n";
let status: StatusServers;
let port: number;
const sockets: net.Socket[] = [];

beforeAll(async () => {
  status = await startStatusServers({
    statusAddress: "127.0.0.1",
    ports: { admin: false, metrics: 0, readiness: false },
    metrics: { contentType: "text/plain; version=0.0.4", chunks: async () => [BIG] },
    ready: () => true,
    configDump: () => ({}),
    quit: () => {},
    scrapeLimits: { inFlight: 2, stallMs: 600 },
  });
  port = status.metrics!.port;
});
afterAll(() => {
  for (const s of sockets) s.destroy();
  for (const s of status?.servers ?? []) s.close();
});

/** Asks for /metrics and never reads; resolves once the server has begun to answer (bytes are waiting unread). */
async function askAndStall(): Promise<net.Socket> {
  const s = net.connect(port, "127.0.0.1");
  sockets.push(s);
  s.on("error", () => {});
  await once(s, "connect");
  s.pause();
  s.write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  await new Promise((r) => setTimeout(r, 150));
  return s;
}

describe(":15020 against clients that never read", () => {
  it("holds at most inFlight answers, answers more with 503, drops a stalled one after stallMs", async () => {
    const a = await askAndStall();
    const b = await askAndStall();
    const third = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(third.status).toBe(503);
    expect(await third.text()).toBe("too many scrapes in flight\n");
    expect(third.headers.get("retry-after")).toBe("1");
    // The stalled two are dropped after stallMs without progress (0.6 s): scrapes are answered in full again. (Their
    // clients, not reading, see no end: a paused socket reads no FIN.)
    const t0 = Date.now();
    let next = await fetch(`http://127.0.0.1:${port}/metrics`);
    while (next.status === 503 && Date.now() - t0 < 10_000) {
      await next.text();
      await new Promise((r) => setTimeout(r, 100));
      next = await fetch(`http://127.0.0.1:${port}/metrics`);
    }
    expect(next.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect((await next.text()).length).toBe(BIG.length);
    expect(a.destroyed || b.destroyed).toBe(false); // the server dropped them, not the clients
  }, 20_000);
});
