// The wiring snippet for host/app.ts: two proxies whose config comes from the test istiod over xDS and whose
// certificates come from its CA; sleep tunnels to the echo service; a policy pushed later denies it.
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { newService, newWorkload } from "../../host/model/index.js";
import { startProxy, type Mesh } from "../../host/app.js";
import { CsrSigner, TestControlPlane, policyMatch } from "../helpers/control-plane.js";
import { TOKEN, makeMesh, type MeshFixture } from "../helpers/control-plane-mesh.js";
import { setSink } from "../../host/log.js";

let mesh: MeshFixture;
let cp: TestControlPlane;
const proxies: Mesh[] = [];
const restore = setSink(() => {});
beforeAll(async () => {
  mesh = await makeMesh("wiring");
  cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, signer: await CsrSigner.load(mesh.caDir) });
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await cp.stop();
  mesh.cleanup();
  restore();
});

it("runs two proxies on xDS + istiod's CA", async () => {
  cp.batch(() => {
    cp.setWorkload(
      newWorkload({
        uid: "c1//Pod/default/sleep",
        name: "sleep",
        namespace: "default",
        serviceAccount: "sleep",
        workloadIps: ["127.0.0.2"],
        protocol: "HBONE",
      }),
    );
    cp.setWorkload(
      newWorkload({
        uid: "c1//Pod/default/echo",
        name: "echo",
        namespace: "default",
        serviceAccount: "echo",
        workloadIps: ["127.0.0.3"],
        protocol: "HBONE",
        services: { "default/echo.default.svc.cluster.local": { 9000: 9000 } },
      }),
    );
    cp.setService(
      newService({
        name: "echo",
        namespace: "default",
        hostname: "echo.default.svc.cluster.local",
        vips: [{ network: "", address: "10.96.0.10" }],
        ports: { 9000: 9000 },
      }),
    );
  });
  const rootCertPath = join(mesh.dir, "root-cert.pem");
  writeFileSync(rootCertPath, mesh.rootsPem);
  // The test istiod serves a mesh certificate: its SPIFFE id is what the client checks (see connection()).
  const off = { socks5Port: false, adminPort: false, metricsPort: false, readinessPort: false } as const;
  const common = {
    xdsAddress: cp.address,
    caAddress: cp.address,
    tokenFile: mesh.tokenFile,
    rootCertPath,
    clusterId: "c1",
    istiodIdentity: "spiffe://cluster.local/ns/istio-system/sa/istiod",
    ...off,
  };
  const echo = await startProxy({ ...common, workload: "default/echo/echo", inboundPort: 0 });
  proxies.push(echo);
  echo.accept(9000, (stream, info) => stream.end(`hello ${info.peer}`));
  const sleep = await startProxy({
    ...common,
    workload: "default/sleep/sleep",
    inboundPort: false,
    hbonePort: echo.addresses.inbound!.port,
  });
  proxies.push(sleep);
  const tunnel = await sleep.connect("echo.default.svc.cluster.local:9000");
  tunnel.end();
  let reply = "";
  for await (const chunk of tunnel) reply += chunk;
  expect(reply).toBe("hello spiffe://cluster.local/ns/default/sa/sleep");

  // Live config: a DENY for sleep pushed by istiod reaches echo's proxy and refuses the next tunnel.
  const acks = cp.streams.reduce((n, s) => n + s.acks().length, 0);
  cp.setPolicy({
    name: "deny-sleep",
    namespace: "default",
    scope: "Namespace",
    action: "Deny",
    dryRun: false,
    rules: [[[policyMatch({ principals: [{ kind: "exact", value: "cluster.local/ns/default/sa/sleep" }] })]]],
  });
  await cp.waitFor(() => cp.streams.reduce((n, s) => n + s.acks().length, 0) >= acks + 2, 10_000, "both proxies' ACKs");
  const err = await sleep.connect("echo.default.svc.cluster.local:9000").then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/401/);
});
