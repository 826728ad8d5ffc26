// Attacks on a spawned east-west gateway (`hbone gateway`): CONNECT svc-host:port reset or
// flow-control-broken in the same write, or abandoned while the gateway dials the endpoint, and
// CONNECTs to a service that is not global (ServiceScope), which must never leave its cluster.
// After each: the process survives, a fresh double-HBONE tunnel through it is byte-exact, and
// memory and descriptors stay bounded.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, writeFileSync } from "node:fs";
import * as abi from "../../assembly/abi.js";
import { meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
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
  viaGateway,
  type HboneProcess,
  proxyArgs,
} from "../helpers/attack.js";

const ROUNDS = 20;
const GW_IP = "127.0.0.100";
const ECHO = "echo.default.svc.cluster.local:9000";
const HELLO = "hello.default.svc.cluster.local:9000";

let fx: MeshFixture;
let gw: HboneProcess;
let gwPort: number;
let sleepCert: WorkloadCertificate;
let fdsBefore: number;

const gatewayId = id("istio-system", "istio-eastwestgateway");
const peer = () => tlsPeer({ host: GW_IP, port: gwPort, cert: sleepCert, expected: gatewayId });

async function legit(): Promise<void> {
  const t = await viaGateway({
    gateway: GW_IP,
    port: gwPort,
    cert: sleepCert,
    gatewayId,
    endpointId: id("default", "echo"),
    authority: ECHO,
  });
  try {
    await roundTrip(t.tunnel);
  } finally {
    t.close();
  }
}

async function checkHealthy(): Promise<void> {
  expectSurvived(gw);
  expectRssBelow(gw);
  await legit();
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  // echo is global; hello (served by the same pod) is not; the gateway workload at 127.0.0.100.
  const yaml = meshYaml(fx.echoPort, fx.halfPort)
    .replace(
      `        9001: ${fx.halfPort}\n`,
      `        9001: ${fx.halfPort}\n      default/hello.default.svc.cluster.local:\n        9000: ${fx.echoPort}\n`,
    )
    .replace(
      "    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]\n",
      '    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]\n    labels: { istio.io/global: "true" }\n',
    )
    .replace(
      "\nservices:\n",
      `
  - uid: test//v1/Pod/istio-system/eastwest
    name: eastwest
    namespace: istio-system
    serviceAccount: istio-eastwestgateway
    workloadIps: [${GW_IP}]
    protocol: HBONE
    clusterId: test
services:
  - name: hello
    namespace: default
    hostname: hello.default.svc.cluster.local
    vips: [/10.96.0.11]
    ports: { 9000: ${fx.echoPort} }
    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]
`,
    );
  writeFileSync(fx.configPath, yaml);
  const echoProxy = await fx.proxy({ workload: "default/echo/echo", inboundPort: 0 });
  gw = await spawnHbone(
    "gateway",
    proxyArgs(
      fx,
      "istio-system/eastwest/istio-eastwestgateway",
      "--hbone-port",
      String(echoProxy.addresses.inbound!.port),
    ),
  );
  gwPort = Number(String(gw.ready.inbound).split(":")[1]);
  sleepCert = await issue(fx.caDir, "default", "sleep");
  await legit();
  fdsBefore = gw.fds();
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await fx?.close();
});

describe("east-west gateway under attack (spawned hbone gateway)", () => {
  it("survives CONNECT svc-host:port + RST_STREAM(INTERNAL_ERROR) in one write", async () => {
    const p = await peer();
    for (let i = 0; i < ROUNDS; i++) p.send(connectFrame(p, 1 + 2 * i, ECHO), rstFrame(1 + 2 * i, abi.INTERNAL_ERROR));
    p.send(connectFrame(p, 2 * ROUNDS + 1, ECHO));
    expect(await statusOf(p, 2 * ROUNDS + 1)).toBe(200);
    p.close();
    await checkHealthy();
  });

  it("survives CONNECT svc-host:port + WINDOW_UPDATE 0 in one write", async () => {
    const p = await peer();
    for (let i = 0; i < ROUNDS; i++) p.send(connectFrame(p, 1 + 2 * i, ECHO), windowUpdateFrame(1 + 2 * i, 0));
    expect(await p.rst(2 * ROUNDS - 1)).toBeDefined();
    p.close();
    await checkHealthy();
  });

  it("survives a client closing its connection while the gateway dials, and cancels those dials", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const p = await peer();
      p.send(connectFrame(p, 1, ECHO), connectFrame(p, 3, ECHO));
      p.close();
    }
    await checkHealthy();
    await eventually(async () => expect(gw.fds()).toBeLessThan(fdsBefore + 10), 5000);
  });

  it("routes only global services: a local-only service is refused (400), never dialled", async () => {
    const p = await peer();
    p.send(
      connectFrame(p, 1, HELLO),
      connectFrame(p, 3, "nosuch.default.svc.cluster.local:9000"),
      connectFrame(p, 5, ECHO),
    );
    expect(await statusOf(p, 1)).toBe(400);
    expect(await statusOf(p, 3)).toBe(400);
    expect(await statusOf(p, 5)).toBe(200);
    p.close();
    await checkHealthy();
  });
});
