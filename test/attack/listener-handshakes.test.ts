// Attack on :15008 of a real `hbone proxy` process under a low descriptor limit (ulimit -n 300): hundreds of
// idle unauthenticated sockets that never send a byte, plus slow handshakes that send a real ClientHello one byte a
// second, kept topped up for the whole test. Bounds asserted: a legitimate peer (mTLS, from its own address and from
// an attacker's address) still gets a working tunnel, each within its 5 s handshake timeout; the process survives;
// it holds at most 270 descriptors (limit 300, reserve 75: at most 225 connections) and under 200 MiB RSS; the
// server sheds and times out the attackers' sockets itself; shedding and refusals log at most 10 lines per reason
// per 2 s window, plus summaries.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import { Identity } from "../../host/identity/identity.js";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { clientHello, hboneSession, issue, spawnProxy, type ProxyProcess } from "../helpers/attack.js";

const NOFILE = 300;
const IDLE = 320; // more idle sockets than the proxy has descriptors
const SLOW = 20;
const HANDSHAKE_TIMEOUT_MS = 4000;
const LOG_INTERVAL_MS = 2000;
const LOG_LINES = 10;
const MAX_FDS = 270;
const MAX_RSS_MIB = 200;
const ECHO = new Identity("cluster.local", "default", "echo");

let fx: MeshFixture;
let p: ProxyProcess;
let cert: WorkloadCertificate;

beforeAll(async () => {
  fx = await meshFixture();
  cert = await issue(fx.caDir, "default", "sleep");
  p = await spawnProxy({
    config: fx.configPath,
    caDir: fx.caDir,
    workload: "default/echo/echo",
    nofile: NOFILE,
    env: {
      HBONE_HANDSHAKE_TIMEOUT_MS: String(HANDSHAKE_TIMEOUT_MS),
      HBONE_LOG_RATE_INTERVAL_MS: String(LOG_INTERVAL_MS),
      HBONE_LOG_RATE_LINES: String(LOG_LINES),
    },
  });
}, 60_000);
afterAll(async () => {
  await p?.kill();
  await fx?.close();
});

/** The attacker: keeps `IDLE` silent sockets and `SLOW` byte-a-second handshakes open, reopening what the server
 *  closes; every socket from 127.0.0.10–25 (idle) or 127.0.0.40–44 (slow). Bounded: at most 20,000 sockets. */
function attacker(hello: Buffer) {
  const idle = new Set<net.Socket>();
  const slow = new Set<net.Socket>();
  let opened = 0;
  let closedByServer = 0;
  let stopped = false;
  const open = (kind: "idle" | "slow") => {
    const set = kind === "idle" ? idle : slow;
    const n = opened++;
    const localAddress = kind === "idle" ? `127.0.0.${10 + (n % 16)}` : `127.0.0.${40 + (n % 5)}`;
    const s = net.connect({ host: p.inbound.host, port: p.inbound.port, localAddress });
    set.add(s);
    s.on("error", () => {});
    let timer: NodeJS.Timeout | undefined;
    if (kind === "slow") {
      let i = 0;
      timer = setInterval(() => {
        if (i < hello.length) s.write(hello.subarray(i, ++i));
      }, 1000);
    }
    s.on("close", () => {
      clearInterval(timer);
      set.delete(s);
      if (!stopped) closedByServer++;
    });
  };
  const topUp = () => {
    while (!stopped && opened < 20_000 && idle.size < IDLE) open("idle");
    while (!stopped && opened < 20_000 && slow.size < SLOW) open("slow");
  };
  topUp();
  const refill = setInterval(topUp, 100);
  return {
    get opened() {
      return opened;
    },
    get closedByServer() {
      return closedByServer;
    },
    get live() {
      return idle.size + slow.size;
    },
    /** Stops reopening; the sockets still open stay for the server to time out. */
    stopRefill() {
      clearInterval(refill);
    },
    stop() {
      stopped = true;
      clearInterval(refill);
      for (const s of [...idle, ...slow]) s.destroy();
    },
  };
}

async function tunnel(localAddress: string): Promise<{ ms: number; echoed: string }> {
  const t0 = Date.now();
  const s = await hboneSession({ ...p.inbound, certificate: cert, expected: ECHO, localAddress, timeoutMs: 5000 });
  try {
    const stream = await s.connect(`127.0.0.3:${fx.echoPort}`);
    expect(stream.status).toBe(200);
    stream.end("ping");
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { ms: Date.now() - t0, echoed: Buffer.concat(chunks).toString() };
  } finally {
    s.destroy();
  }
}

describe(":15008 under a handshake flood with 300 descriptors", () => {
  it("keeps admitting legitimate peers while idle and slow handshakes hold more sockets than it has descriptors", async () => {
    const rss0 = p.rssMiB();
    const atk = attacker(await clientHello());
    let maxFds = 0;
    const sample = setInterval(() => (maxFds = Math.max(maxFds, p.fds())), 100);
    try {
      await new Promise((r) => setTimeout(r, 1000)); // the flood is in place
      const times: number[] = [];
      for (let i = 0; i < 6; i++) {
        // From the peer's own address, and from an address the attacker also uses.
        const r = await tunnel(i % 2 === 0 ? "127.0.0.2" : "127.0.0.10");
        expect(r.echoed).toBe("ping");
        times.push(r.ms);
        await new Promise((res) => setTimeout(res, 300));
      }
      console.log(
        `legitimate tunnels under attack: ${times.join(", ")} ms; attacker sockets opened ${atk.opened}, ` +
          `closed by the proxy ${atk.closedByServer}; proxy fds max ${maxFds}, RSS ${rss0.toFixed(0)} -> ${p.rssMiB().toFixed(0)} MiB`,
      );
      expect(p.alive()).toBe(true);
      expect(maxFds).toBeLessThanOrEqual(MAX_FDS);
      expect(p.rssMiB()).toBeLessThan(MAX_RSS_MIB);
      // The proxy itself closed attackers' sockets (shedding, timeouts): far more than the IDLE+SLOW it started with.
      expect(atk.closedByServer).toBeGreaterThan(0);

      // Stop reopening: every attacker socket left is closed by the proxy within the handshake timeout (+ slack).
      atk.stopRefill();
      const deadline = Date.now() + HANDSHAKE_TIMEOUT_MS + 3000;
      while (atk.live > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(atk.live).toBe(0);
    } finally {
      clearInterval(sample);
      atk.stop();
    }

    // A fresh tunnel once the flood is over.
    expect((await tunnel("127.0.0.2")).echoed).toBe("ping");

    // Logs: shedding and refusals are rate-limited (≤ LOG_LINES per message per window), with summaries.
    await new Promise((r) => setTimeout(r, LOG_INTERVAL_MS + 200));
    const logs = p.logs();
    const shed = logs.filter((l) => l.msg === "unfinished TLS handshake shed");
    const refused = logs.filter((l) => l.msg === "inbound HBONE TLS refused");
    const summaries = logs.filter((l) => /^suppressed \d+ similar lines$/.test(l.msg));
    const suppressed = summaries.reduce((n, l) => n + Number(/\d+/.exec(l.msg)![0]), 0);
    console.log(
      `log lines: shed ${shed.length}, TLS refused ${refused.length}, ${summaries.length} summaries for ${suppressed} suppressed`,
    );
    expect(summaries.length).toBeGreaterThan(0);
    // Per message and reason: at most LOG_LINES lines per window.
    const windows = Math.ceil((Date.now() - p.startedAt) / LOG_INTERVAL_MS) + 1;
    const byKey = new Map<string, number>();
    for (const l of [...shed, ...refused])
      byKey.set(`${l.msg}/${String(l.reason)}`, (byKey.get(`${l.msg}/${String(l.reason)}`) ?? 0) + 1);
    expect(byKey.size).toBeLessThanOrEqual(6); // the reasons name caps and TLS errors, never the attacker
    for (const n of byKey.values()) expect(n).toBeLessThanOrEqual(LOG_LINES * windows);
    expect(p.alive()).toBe(true);
  }, 60_000);
});

describe("the handshake timeout", () => {
  it("closes a socket that never sends a byte after HBONE_HANDSHAKE_TIMEOUT_MS, not Node's 120 s", async () => {
    const s = net.connect({ host: p.inbound.host, port: p.inbound.port, localAddress: "127.0.0.60" });
    s.on("error", () => {});
    await once(s, "connect");
    const t0 = Date.now();
    await once(s, "close");
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 500);
    expect(waited).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 5000);
  }, 20_000);
});
