// Attacks on a spawned node proxy's inbound (:15008) and its admin/metrics/readiness ports, over
// real mTLS from raw HTTP/2 peers: a CONNECT reset, flow-control-broken or abandoned in the same
// write or while the app dial is pending, a DENY policy arriving mid-dial, SSRF to the proxy's
// own ports, a peer at a known workload's address with another identity, request lines that
// used to kill the admin, and DNS-rebinding-style requests. After each: the process survives,
// a fresh legitimate tunnel is byte-exact, and memory and descriptors stay bounded.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createPluginCa } from "../../host/identity/ca.js";
import * as abi from "../../assembly/abi.js";
import { DENY_SLEEP_YAML, meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import {
  CLI,
  spawnHbone,
  expectSurvived,
  expectRssBelow,
  issue,
  id,
  tlsPeer,
  connectFrame,
  rstFrame,
  windowUpdateFrame,
  statusOf,
  roundTrip,
  eventually,
  rawRequest,
  blackhole,
  type HboneProcess,
  proxyArgs,
} from "../helpers/attack.js";

const ROUNDS = 20;

let fx: MeshFixture;
let echo: HboneProcess;
let client: Mesh;
let sleepCert: WorkloadCertificate;
let hole: { port: number; close(): void };
let ready: { inbound: string; admin: number; metrics: number; readiness: number };
let inboundPort: number;
let baseYaml: string;
let fdsBefore: number;

/** The fixture's mesh, with echo's record in another trust domain than the proxy's own, and extra service ports. */
function config(extraPorts: Record<number, number>, policies = ""): string {
  let y = baseYaml.replace("    serviceAccount: echo\n", "    serviceAccount: echo\n    trustDomain: other.example\n");
  const ports = Object.entries(extraPorts)
    .map(([p, t]) => `        ${p}: ${t}\n`)
    .join("");
  y = y.replace(`        9001: ${fx.halfPort}\n`, `        9001: ${fx.halfPort}\n${ports}`);
  return y + policies;
}

const ECHO = "echo.default.svc.cluster.local:9000";
const peer = (localAddress?: string, cert = sleepCert) =>
  tlsPeer({ host: "127.0.0.3", port: inboundPort, cert, expected: id("default", "echo"), localAddress });

async function legit(): Promise<void> {
  await roundTrip(await client.connect(ECHO));
}

function checkHealthy(): Promise<void> {
  expectSurvived(echo);
  expectRssBelow(echo);
  return legit();
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  baseYaml = meshYaml(fx.echoPort, fx.halfPort);
  hole = await blackhole("127.0.0.3");
  // 9002: an app that never answers (dials stay pending); 9005: ztunnel's outbound capture port.
  writeFileSync(fx.configPath, config({ 9002: hole.port, 9005: 15001 }));
  // --trust-domain is the proxy's own: peers are checked against it, not the record's other.example.
  echo = await spawnHbone("proxy", proxyArgs(fx, "default/echo/echo", "--trust-domain", "cluster.local"));
  ready = echo.ready as typeof ready;
  inboundPort = Number(ready.inbound.split(":")[1]);
  client = await fx.proxy({ workload: "default/sleep/sleep", inboundPort: false, hbonePort: inboundPort });
  sleepCert = await issue(fx.caDir, "default", "sleep");
  await legit();
  fdsBefore = echo.fds();
}, 60_000);

afterAll(async () => {
  await echo?.stop();
  hole?.close();
  await fx?.close();
});

describe("inbound under attack (spawned hbone proxy)", () => {
  it("checks peers against its own trust domain (--trust-domain), not the workload record's", async () => {
    // The record says other.example; the legitimate client in beforeAll (cluster.local) got through.
    await legit();
    // A certificate for other.example under the same root chains fine, but is another trust domain: refused.
    const otherCa = join(fx.dir, "ca-other");
    await createPluginCa({ outDir: otherCa, trustDomain: "other.example", cluster: "test", rootDir: fx.caDir });
    const foreign = await issue(otherCa, "default", "sleep", "other.example");
    const p = await peer(undefined, foreign).catch(() => null);
    if (p) {
      p.send(connectFrame(p, 1, "127.0.0.3:9000"));
      expect(await statusOf(p, 1, 3000)).toBe(0);
      expect(p.closed).toBe(true);
      p.close();
    }
    // Refused for its trust domain (the chain itself is good).
    await eventually(async () => expect(echo.tail()).toMatch(/TLS refused.*other\.example/));
    await checkHealthy();
  });

  it("survives CONNECT + RST_STREAM(INTERNAL_ERROR) in one write, to a live and to a never-answering app", async () => {
    const p = await peer();
    for (let i = 0; i < ROUNDS; i++) {
      const s = 1 + 4 * i;
      p.send(connectFrame(p, s, "127.0.0.3:9000"), rstFrame(s, abi.INTERNAL_ERROR));
      p.send(connectFrame(p, s + 2, "127.0.0.3:9002"), rstFrame(s + 2, abi.INTERNAL_ERROR));
    }
    // The connection is still served: a last CONNECT gets its answer.
    p.send(connectFrame(p, 4 * ROUNDS + 1, "127.0.0.3:9000"));
    expect(await statusOf(p, 4 * ROUNDS + 1)).toBe(200);
    p.close();
    await checkHealthy();
  });

  it("survives CONNECT + WINDOW_UPDATE 0 on that stream in one write", async () => {
    const p = await peer();
    for (let i = 0; i < ROUNDS; i++)
      p.send(connectFrame(p, 1 + 2 * i, "127.0.0.3:9000"), windowUpdateFrame(1 + 2 * i, 0));
    expect(await p.rst(2 * ROUNDS - 1)).toBeDefined();
    p.close();
    await checkHealthy();
  });

  it("survives a client closing its connection while the dial is pending, and cancels that dial", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const p = await peer();
      p.send(connectFrame(p, 1, "127.0.0.3:9002"), connectFrame(p, 3, "127.0.0.3:9000"));
      p.close();
    }
    await checkHealthy();
    // Cancelled dials hold no descriptor (each pending one would, until its 10 s timeout).
    await eventually(async () => expect(echo.fds()).toBeLessThan(fdsBefore + 10), 5000);
  });

  it("survives a DENY policy added while a tunnel is mid-dial: that stream is reset", async () => {
    const p = await peer();
    p.send(connectFrame(p, 1, "127.0.0.3:9002"));
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(fx.configPath, config({ 9002: hole.port, 9005: 15001 }, DENY_SLEEP_YAML));
    const rst = await p.waitFor((f) => f.type === abi.FRAME_RST_STREAM && f.streamId === 1, 8000);
    expect(rst && Buffer.from(rst.payload).readUInt32BE(0)).toBe(abi.CONNECT_ERROR);
    p.close();
    writeFileSync(fx.configPath, config({ 9002: hole.port, 9005: 15001 }));
    expectSurvived(echo);
    await eventually(legit);
  });

  it("refuses CONNECTs to the proxy's own ports, checked on the mapped target port", async () => {
    // 9004 -> the admin port, 9005 -> 15001 (capture): service ports that map onto the proxy itself.
    writeFileSync(fx.configPath, config({ 9002: hole.port, 9004: ready.admin, 9005: 15001 }));
    const p = await peer();
    let s = -1;
    // Until the reload is in force (503: no such port yet), then 400.
    await eventually(async () => {
      s += 2;
      p.send(connectFrame(p, s, "127.0.0.3:9004"));
      const st = await statusOf(p, s);
      if (st !== 400) throw new Error(`got ${st}`);
    });
    for (const port of [9005, ready.metrics, ready.readiness, inboundPort, 15008]) {
      s += 2;
      p.send(connectFrame(p, s, `127.0.0.3:${port}`));
      expect(await statusOf(p, s), `port ${port}`).toBe(port === 9005 ? 400 : 503);
    }
    p.close();
    await checkHealthy();
  });

  it("labels a source by its address only when its TLS identity is that workload's", async () => {
    // An intruder at sleep's address (127.0.0.2) with its own certificate: not labelled as sleep.
    const p = await peer("127.0.0.2", await issue(fx.caDir, "default", "intruder"));
    p.send(connectFrame(p, 1, "127.0.0.3:9000"));
    expect(await statusOf(p, 1)).toBe(200);
    p.close();
    const text = await (await fetch(`http://127.0.0.1:${ready.metrics}/metrics`)).text();
    const lines = text
      .split("\n")
      .filter((l) => l.startsWith("istio_tcp_connections_opened_total{") && l.includes("sa/intruder"));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).not.toContain('source_workload="sleep"');
    // The real sleep (its own identity) is still labelled from config.
    expect(text).toMatch(/istio_tcp_connections_opened_total\{[^}]*source_workload="sleep"/);
  });

  it("admin, metrics and readiness survive bad request targets (400) and the admin refuses foreign Hosts and GET /quitquitquit", async () => {
    for (const port of [ready.admin, ready.metrics, ready.readiness]) {
      for (const line of [
        "GET http://x:99999/ HTTP/1.1",
        "GET http://[::1 HTTP/1.1",
        "GET * HTTP/1.1",
        "GET %zz HTTP/1.1",
      ]) {
        const r = await rawRequest(port, `${line}\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
        expect(r, `${port} ${line}`).toMatch(/^HTTP\/1\.1 400/);
      }
    }
    const req = (method: string, path: string, host: string) =>
      rawRequest(
        ready.admin,
        `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
    expect(await req("GET", "/config_dump", "evil.example")).toMatch(/^HTTP\/1\.1 403/);
    expect(await req("GET", "/config_dump", "127.0.0.1.nip.io:15000")).toMatch(/^HTTP\/1\.1 403/);
    expect(await req("POST", "/quitquitquit", "evil.example:80")).toMatch(/^HTTP\/1\.1 403/);
    expect(await req("GET", "/quitquitquit", "localhost")).toMatch(/^HTTP\/1\.1 405/);
    expect(await req("GET", "http://evil.example/config_dump", "localhost")).toMatch(/^HTTP\/1\.1 403/);
    expect(await req("GET", "/config_dump", `[::1]:${ready.admin}`)).toMatch(/^HTTP\/1\.1 200/);
    expect(await req("GET", "/config_dump", `localhost:${ready.admin}`)).toMatch(/^HTTP\/1\.1 200/);
    // Readiness still says ready: nothing stopped it.
    expect((await fetch(`http://127.0.0.1:${ready.readiness}/healthz/ready`)).status).toBe(200);
    await checkHealthy();
  });
});
