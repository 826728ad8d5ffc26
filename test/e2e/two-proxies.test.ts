// End to end on loopback: application -> SOCKS5 -> proxy A (sleep) -> HBONE/mTLS -> proxy B
// (echo) -> echo application; pooling, half-close, refusals, config reload.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { writeFileSync, readFileSync } from "node:fs";
import { meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { socks5Connect } from "../../host/socks5-client.js";
import { OutboundError } from "../../host/proxy/outbound.js";
import { pattern, drain, pump } from "../helpers/net.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { setSink, type LogRecord } from "../../host/log.js";

let fx: MeshFixture;
let b: Mesh; // echo's proxy
let a: Mesh; // sleep's proxy

beforeAll(async () => {
  fx = await meshFixture();
  b = await fx.proxy({ workload: "default/echo/echo" });
  a = await fx.proxy({ workload: "default/sleep/sleep", socks5Port: 0, hbonePort: b.addresses.inbound!.port });
});
afterAll(async () => fx?.close());

const socks = (host: string, port: number) =>
  socks5Connect({ host: "127.0.0.1", port: a.addresses.socks5!.port }, host, port);

describe("node proxy end to end", () => {
  it("moves 64 MiB both ways byte-exact: app -> SOCKS5 -> A -> HBONE -> B -> echo", async () => {
    const s = await socks("echo.default.svc.cluster.local", 9000);
    const data = pattern(64 << 20, 21);
    const [, got] = await Promise.all([pump(s, data), drain(s, data)]);
    expect(got).toEqual({ bytes: data.length, equal: true });
    expect(b.addresses.inbound!.address).toBe("127.0.0.3");
  });

  it("reaches the service by VIP and the workload by IP", async () => {
    for (const [host, port] of [
      ["10.96.0.10", 9000],
      ["127.0.0.3", fx.echoPort],
    ] as const) {
      const s = await socks(host, port);
      s.end("ping");
      const chunks: Buffer[] = [];
      for await (const c of s) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe("ping");
    }
  });

  it("half-closes: the app's FIN reaches the far app, whose answer still comes back", async () => {
    const s = await socks("echo.default.svc.cluster.local", 9001);
    s.end(Buffer.alloc(100_000, 1));
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("got 100000 bytes");
  });

  it("runs 100 parallel tunnels over one pooled connection, and 1000 sequential ones without a new handshake", async () => {
    const before = a.pool.stats.dials;
    const ok = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const t = await a.connect("echo.default.svc.cluster.local:9000");
        const data = pattern(16 * 1024, 300 + i);
        const [, got] = await Promise.all([pump(t, data), drain(t, data)]);
        return got.equal;
      }),
    );
    expect(ok.every(Boolean)).toBe(true);
    for (let i = 0; i < 1000; i++) {
      const t = await a.connect("echo.default.svc.cluster.local:9000");
      t.end("x");
      await drain(t);
    }
    expect(a.pool.stats.dials - before).toBe(0); // the connection from the first test served them all
    expect(a.pool.stats.dials).toBe(1);
    expect(a.pool.size).toBe(1);
  });

  it("releases an idle pooled connection", async () => {
    const c = await fx.proxy({
      workload: "default/sleep/sleep",
      inboundPort: false,
      hbonePort: b.addresses.inbound!.port,
      pool: { idleMs: 150 },
    });
    const t = await c.connect("echo.default.svc.cluster.local:9000");
    t.end("x");
    await drain(t);
    expect(c.pool.size).toBe(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(c.pool.size).toBe(0);
    expect(c.pool.stats.idleClosed).toBe(1);
  });

  it("gives plain TCP to a destination that does not speak HBONE", async () => {
    const legacy = net.createServer((s) => s.end("legacy says hi"));
    await new Promise<void>((r) => legacy.listen(0, "127.0.0.4", r));
    try {
      const t = await a.connect(`127.0.0.4:${(legacy.address() as net.AddressInfo).port}`);
      expect(t).toBeInstanceOf(net.Socket);
      const chunks: Buffer[] = [];
      for await (const c of t) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe("legacy says hi");
    } finally {
      legacy.close();
    }
  });

  it("answers 503 for a port the destination does not serve, and the app gets a SOCKS refusal", async () => {
    await expect(a.connect("127.0.0.3:4444")).rejects.toMatchObject({
      status: 503,
      kind: "refused",
      code: "HBONE_OUTBOUND_REFUSED",
    });
    await expect(socks("127.0.0.3", 4444)).rejects.toThrow(/refused/);
    await expect(a.connect("nosuch.default.svc.cluster.local:80")).rejects.toBeInstanceOf(OutboundError);
    await expect(a.connect("nosuch.default.svc.cluster.local:80")).rejects.toMatchObject({ kind: "unknown-host" });
  });

  it("refuses a server whose identity is not the one expected, and says why", async () => {
    // This proxy believes 127.0.0.3 runs as sa/impostor; the real peer presents sa/echo.
    const cfg = parseMeshConfig(meshYaml(fx.echoPort, fx.halfPort, "impostor"));
    const c = await fx.proxy({
      workload: "default/sleep/sleep",
      config: cfg,
      inboundPort: false,
      hbonePort: b.addresses.inbound!.port,
    });
    const logs: LogRecord[] = [];
    const restore = setSink((r) => logs.push(r));
    try {
      await expect(c.connect(`127.0.0.3:${fx.echoPort}`)).rejects.toBeInstanceOf(OutboundError);
    } finally {
      restore();
    }
    const why = logs.map((l) => JSON.stringify(l)).join("\n");
    expect(why).toMatch(/sa\/impostor/);
    expect(c.pool.size).toBe(0);
  });

  it("accepts tunnels in-process through the library API", async () => {
    b.accept(7000, (stream, info) => {
      stream.end(`hello ${info.peer}`);
      stream.resume();
    });
    const t = await a.connect("127.0.0.3:7000");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("hello spiffe://cluster.local/ns/default/sa/sleep");
  });

  it("keeps the running config when an edit is bad, and applies a good one", async () => {
    const good = readFileSync(fx.configPath, "utf8");
    writeFileSync(fx.configPath, good.replace("workloadIps: [127.0.0.2]", "workloadIpz: [127.0.0.2]"));
    await new Promise((r) => setTimeout(r, 400));
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    t.end("still");
    expect((await drain(t)).bytes).toBe(5);
    // A good edit: the service gains a port.
    writeFileSync(
      fx.configPath,
      meshYaml(fx.echoPort, fx.halfPort).replace(
        "      9001: " + fx.halfPort + "\n    subjectAltNames",
        `      9001: ${fx.halfPort}\n      9002: ${fx.echoPort}\n    subjectAltNames`,
      ),
    );
    await new Promise((r) => setTimeout(r, 400));
    const t2 = await a.connect("echo.default.svc.cluster.local:9002");
    t2.end("new port");
    expect((await drain(t2)).bytes).toBe(8);
    writeFileSync(fx.configPath, good);
  });
});
