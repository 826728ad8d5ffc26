// Attacks on a spawned source proxy (workload sleep, SOCKS5 and --forward listeners): a
// destination that answers 200 and RST_STREAM(INTERNAL_ERROR) in one write, SOCKS5 and forward
// clients that reset (TCP RST) while their tunnel is being set up, SSRF to the proxy's own ports
// through SOCKS5, and SIGTERM after all that. After each: the process survives, a fresh
// legitimate tunnel is byte-exact, no tunnel is left open, and memory stays bounded.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import { existsSync, writeFileSync } from "node:fs";
import * as abi from "../../assembly/abi.js";
import { createSocks5Server, SOCKS_OK } from "../../host/proxy/socks5.js";
import { listen } from "../helpers/net.js";
import { frame } from "../helpers/frames.js";
import { meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
import {
  CLI,
  spawnHbone,
  expectSurvived,
  expectRssBelow,
  issue,
  roundTrip,
  tcpRoundTrip,
  eventually,
  activeTunnels,
  socksRequest,
  socksConnect,
  fakeDestination,
  statusThenReset,
  refusal,
  rstFrame,
  type HboneProcess,
  proxyArgs,
} from "../helpers/attack.js";

const ROUNDS = 20;
const ECHO = "echo.default.svc.cluster.local";
/** A service with two endpoints: echo, and evil behind the fake destination. */
const FLAKY = "flaky.default.svc.cluster.local";

let fx: MeshFixture;
let sleep: HboneProcess;
let fake: Awaited<ReturnType<typeof fakeDestination>>;
let fake503: Awaited<ReturnType<typeof fakeDestination>>;
let ready: { socks5: number; admin: number; metrics: number; readiness: number; forward: string[]; inbound: string };

async function checkHealthy(): Promise<void> {
  expectSurvived(sleep);
  expectRssBelow(sleep);
  await tcpRoundTrip(ready.forward[0]);
  await roundTrip(await socksConnect(ready.socks5, ECHO, 9000));
}

/** "host:port" → [host, port]. */
function hostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** Connects to a TCP port, writes `bytes`, and resets (TCP RST) at once. */
async function resetAfter(port: number, host: string, bytes?: Buffer): Promise<void> {
  const s = net.connect(port, host);
  s.on("error", () => {});
  await once(s, "connect");
  if (bytes) s.write(bytes);
  s.resetAndDestroy();
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  // A misbehaving destination workload "evil" at 127.0.0.5, on the same HBONE port as echo's proxy.
  writeFileSync(
    fx.configPath,
    meshYaml(fx.echoPort, fx.halfPort)
      .replace(
        "\nservices:\n",
        `
  - uid: test//v1/Pod/default/evil
    name: evil
    namespace: default
    serviceAccount: evil
    workloadIps: [127.0.0.5]
    protocol: HBONE
    clusterId: test
    services:
      default/${FLAKY}: { 9000: 9000 }
  - uid: test//v1/Pod/default/evil2
    name: evil2
    namespace: default
    serviceAccount: evil
    workloadIps: [127.0.0.6]
    protocol: HBONE
    clusterId: test
    services:
      default/${FLAKY}: { 9000: 9000 }
services:
  - name: flaky
    namespace: default
    hostname: ${FLAKY}
    vips: [/10.96.0.12]
    ports: { 9000: 9000 }
`,
      )
      .replace(
        `        9001: ${fx.halfPort}\n`,
        `        9001: ${fx.halfPort}\n      default/${FLAKY}:\n        9000: ${fx.echoPort}\n`,
      ),
  );
  const echoProxy = await fx.proxy({ workload: "default/echo/echo", inboundPort: 0 });
  const hbonePort = echoProxy.addresses.inbound!.port;
  fake = await fakeDestination(
    "127.0.0.5",
    hbonePort,
    await issue(fx.caDir, "default", "evil"),
    statusThenReset(200, abi.INTERNAL_ERROR),
  );
  fake503 = await fakeDestination("127.0.0.6", hbonePort, await issue(fx.caDir, "default", "evil"), refusal(503));
  sleep = await spawnHbone(
    "proxy",
    proxyArgs(
      fx,
      "default/sleep/sleep",
      "--hbone-port",
      String(hbonePort),
      "--socks5-port",
      "0",
      "--forward",
      `127.0.0.1:0=${ECHO}:9000`,
      "--forward",
      "127.0.0.1:0=127.0.0.5:80",
    ),
  );
  ready = sleep.ready as typeof ready;
  await checkHealthy();
}, 60_000);

afterAll(async () => {
  await sleep?.stop();
  fake?.close();
  fake503?.close();
  await fx?.close();
});

describe("source proxy under attack (spawned hbone proxy)", () => {
  it("loses no tunnel to endpoints that answer 503 or reset right after their 200: retried on another one", async () => {
    const tunnels = 30;
    for (let n = 0; n < tunnels; n++) await roundTrip(await socksConnect(ready.socks5, FLAKY, 9000), 4096, n + 1);
    // Both bad endpoints were tried (until outlier detection ejected them), yet every tunnel got through.
    expect(fake.connects).toBeGreaterThan(0);
    expect(fake503.connects).toBeGreaterThan(0);
    await checkHealthy();
  });

  it("survives a destination answering 200 and RST_STREAM(INTERNAL_ERROR) in one write", async () => {
    const before = fake.connects;
    const evilForward = ready.forward[1];
    const i = evilForward.lastIndexOf(":");
    for (let n = 0; n < ROUNDS; n++) {
      const s = net.connect(Number(evilForward.slice(i + 1)), evilForward.slice(0, i));
      s.on("error", () => {});
      s.end("hello");
      await new Promise((r) => s.once("close", r)); // refused: reset or closed, nothing echoed
      await expect(socksConnect(ready.socks5, "127.0.0.5", 80)).rejects.toThrow(/reply code/);
    }
    expect(fake.connects - before).toBeGreaterThanOrEqual(2 * ROUNDS);
    await checkHealthy();
  });

  it("closes the tunnels of SOCKS5 clients that reset mid-connect (none left open)", async () => {
    for (let n = 0; n < ROUNDS; n++) await resetAfter(ready.socks5, "127.0.0.1", socksRequest(ECHO, 9000));
    await eventually(async () => expect(await activeTunnels(ready.metrics, "outbound")).toBe(0), 5000);
    await checkHealthy();
    await eventually(async () => expect(await activeTunnels(ready.metrics, "outbound")).toBe(0), 5000);
  });

  it("survives --forward clients that reset during tunnel setup (none left open)", async () => {
    const [h, p] = [ready.forward[0].split(":")[0], Number(ready.forward[0].split(":")[1])];
    for (let n = 0; n < ROUNDS; n++) await resetAfter(p, h);
    for (let n = 0; n < ROUNDS; n++) await resetAfter(p, h, Buffer.from("early bytes"));
    await eventually(async () => expect(await activeTunnels(ready.metrics, "outbound")).toBe(0), 5000);
    await checkHealthy();
  });

  it("refuses destinations on the proxy's own ports at local addresses (SOCKS5 reply 2: not allowed)", async () => {
    for (const [host, port] of [
      ["127.0.0.1", ready.admin],
      ["127.0.0.1", ready.metrics],
      ["127.0.0.1", ready.socks5],
      ["0.0.0.0", ready.readiness],
      ["127.0.0.2", Number(ready.inbound.split(":")[1])],
      ["127.0.0.1", 15001],
      ["localhost", ready.admin],
    ] as const) {
      await expect(socksConnect(ready.socks5, host, port), `${host}:${port}`).rejects.toThrow(/reply code (2|4)/);
    }
    await checkHealthy();
  });

  it("closes SOCKS5 clients that never finish their handshake (the listener's own timeout)", async () => {
    // The listener itself, with a short timeout (the proxy's is SOCKS5_HANDSHAKE_TIMEOUT_MS, 10 s).
    let connects = 0;
    const server = createSocks5Server(async () => {
      connects++;
      return { code: SOCKS_OK };
    }, 300);
    const port = await listen(server);
    try {
      const clients = await Promise.all(
        [Buffer.alloc(0), Buffer.from([5]), Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 5, 1])].map(
          async (partial) => {
            const c = net.connect(port, "127.0.0.1");
            c.on("error", () => {});
            c.resume(); // read the greeting reply, so the server's close is seen
            await once(c, "connect");
            c.write(partial);
            const t0 = Date.now();
            await new Promise((r) => c.once("close", r));
            return Date.now() - t0;
          },
        ),
      );
      for (const ms of clients) expect(ms).toBeLessThan(5000);
      expect(connects).toBe(0);
    } finally {
      server.close();
    }
  });

  it("resets a --forward client whose tunnel is refused: never a clean FIN that reads as an empty answer", async () => {
    // 127.0.0.5:80 is one workload (no other endpoint to retry): its 200 + RST_STREAM fails the dial. The client's
    // bytes and FIN are already in the proxy's buffers, so a plain close would be a FIN (the soak's "clean FIN
    // after 0 bytes").
    const [h, p] = hostPort(ready.forward[1]);
    for (let n = 0; n < 5; n++) {
      const s = net.connect(p, h);
      const ended = new Promise<string>((resolve) => {
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        s.on("end", () => resolve("clean FIN"));
      });
      s.resume();
      s.end("hello"); // sent on connect (the reset may even come before our 'connect' event)
      expect(await ended).toBe("ECONNRESET");
      s.destroy();
    }
    await checkHealthy();
  });

  it("closes a tunnel whose destination ends its stream and cancels it later (none left open)", async () => {
    // END_STREAM, our FIN to the client, then RST_STREAM(CANCEL) while the client's side is still open. The
    // stream's close unpipes (and so pauses) the client's socket: bytes the client sends next stay unread, its FIN
    // is never seen, and the tunnel would stay counted (and its descriptor open) for ever.
    fake.answer = (stream, enc, later) => {
      setTimeout(() => later([rstFrame(stream, abi.CANCEL)]), 100);
      return [
        enc.encodeHeadersFrame(stream, [[":status", "200"]], false, 16384),
        frame(abi.FRAME_DATA, abi.FLAG_END_STREAM, stream, Buffer.from("bye")),
      ];
    };
    try {
      const [h, p] = hostPort(ready.forward[1]);
      for (let n = 0; n < 5; n++) {
        const s = net.connect({ port: p, host: h, allowHalfOpen: true });
        s.on("error", () => {});
        let got = "";
        s.on("data", (d: Buffer) => (got += d.toString()));
        await once(s, "connect");
        s.write("hi");
        await once(s, "end");
        expect(got).toBe("bye");
        await new Promise((r) => setTimeout(r, 300)); // the CANCEL has arrived
        s.end("more"); // bytes nobody will forward, then our FIN: the proxy must still see the FIN (or close us)
        await eventually(async () => expect(await activeTunnels(ready.metrics, "outbound")).toBe(0), 3000);
        s.destroy();
      }
    } finally {
      fake.answer = statusThenReset(200, abi.INTERNAL_ERROR);
    }
    await checkHealthy();
  });

  it("drains on SIGTERM at once when no tunnel is open (exit 0)", async () => {
    await eventually(async () => expect(await activeTunnels(ready.metrics, "outbound")).toBe(0), 5000);
    expectSurvived(sleep);
    const t0 = Date.now();
    const exited = once(sleep.proc, "exit");
    sleep.proc.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
    // The drain waits for open tunnels only (30 s at most): none leaked, so it ends right away.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(sleep.unowned).toEqual([]);
  });
});
