// A drain that begins while a --forward tunnel is still being set up waits for it: the client's connection counts
// as an open tunnel from the moment it is accepted, not from when its tunnel is up. Two real proxy processes: the
// destination is stopped (SIGSTOP) so the source's dial hangs, the source gets SIGTERM, then the destination goes
// on (SIGCONT); the tunnel must complete byte for byte and the source then exit 0.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import { ANY_STATUS_PORTS, forwardSourceArgs, spawnHbone, type HboneProcess } from "../helpers/attack.js";
import { drain, pattern, pump } from "../helpers/net.js";

let fx: MeshFixture;
let dest: HboneProcess;
let source: HboneProcess;

beforeAll(async () => {
  fx = await meshFixture();
  const common = ["--config", fx.configPath, "--ca-dir", fx.caDir, "--socks5-port", "off", ...ANY_STATUS_PORTS];
  dest = await spawnHbone("proxy", [...common, "--workload", "default/echo/echo", "--inbound-port", "0"]);
  source = await spawnHbone("proxy", [
    ...common,
    ...forwardSourceArgs(dest, "127.0.0.1:0=echo.default.svc.cluster.local:9000", "--drain-timeout", "20"),
  ]);
}, 60_000);
afterAll(async () => {
  dest?.proc.kill("SIGCONT");
  await source?.stop();
  await dest?.stop();
  await fx?.close();
});

describe("drain and --forward tunnels being set up", () => {
  it("SIGTERM while the tunnel is dialled: the drain waits, the tunnel completes, exit 0", async () => {
    const [host, port] = (source.ready.forward as string[])[0]!.split(":");
    dest.proc.kill("SIGSTOP"); // its kernel still accepts the TCP connection; the TLS handshake waits
    const client = net.connect({ host, port: Number(port), allowHalfOpen: true });
    client.on("error", () => {});
    await once(client, "connect");
    await new Promise((r) => setTimeout(r, 300)); // accepted by the source, which is dialling
    const exited = once(source.proc, "exit");
    source.proc.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    expect(source.alive(), "the source exited while a tunnel was being set up").toBe(true);
    dest.proc.kill("SIGCONT");
    const data = pattern(2 << 20, 5);
    const [, back] = await Promise.all([pump(client, data, 64 << 10), drain(client, data)]);
    expect(back).toEqual({ bytes: data.length, equal: true });
    const [code] = await exited;
    expect(code).toBe(0);
  }, 30_000);
});
