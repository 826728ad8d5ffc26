// Node mode on xDS and istiod's CA: one shared proxy serves the workloads istiod says are on its node, each with a
// certificate it asks istiod for with its own token and `ImpersonatedIdentity` (the test istiod requires it and
// refuses a CSR naming another identity); one request per identity, none for a workload on another node; a
// workload removed by istiod is dropped with its certificate. A dedicated proxy elsewhere is the client.

import { afterAll, beforeAll, expect, it } from "vitest";
import { newService, newWorkload } from "../../host/model/index.js";
import { startProxy, type NodeProxy } from "../../host/app.js";
import { ADDRESS_TYPE_URL, CsrSigner, TestControlPlane } from "../helpers/control-plane.js";
import { TOKEN, makeMesh, type MeshFixture } from "../helpers/control-plane-mesh.js";
import { setSink } from "../../host/log.js";
import { istiodProxyOptions, waitFor } from "../helpers/node-proxy.js";

let mesh: MeshFixture;
let cp: TestControlPlane;
let signer: CsrSigner;
const proxies: NodeProxy[] = [];
const restore = setSink(() => {});

beforeAll(async () => {
  mesh = await makeMesh("node-xds");
  signer = await CsrSigner.load(mesh.caDir);
  signer.requireImpersonation = true;
  cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, signer });
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await cp.stop();
  mesh.cleanup();
  restore();
});

const w = (name: string, sa: string, ip: string, node: string, services = {}) =>
  newWorkload({
    uid: `c1//Pod/default/${name}`,
    name,
    namespace: "default",
    serviceAccount: sa,
    workloadIps: [ip],
    protocol: "HBONE",
    node,
    services,
  });

it("serves its node's workloads from xDS with impersonated certificates, drops one istiod removes", async () => {
  cp.batch(() => {
    cp.setWorkload(
      w("echo-1", "echo", "127.0.41.3", "n1", { "default/echo.default.svc.cluster.local": { 9000: 9000 } }),
    );
    cp.setWorkload(w("echo-2", "echo", "127.0.41.4", "n1"));
    cp.setWorkload(w("sleep", "sleep", "127.0.41.5", "n1"));
    cp.setWorkload(w("far", "far", "127.0.41.6", "n2"));
    cp.setWorkload(w("client", "client", "127.0.41.2", "n3"));
    cp.setService(
      newService({
        name: "echo",
        namespace: "default",
        hostname: "echo.default.svc.cluster.local",
        vips: [{ network: "", address: "10.96.41.10" }],
        ports: { 9000: 9000 },
      }),
    );
  });
  const common = istiodProxyOptions(mesh, cp.address);
  const node = await startProxy({ ...common, nodeName: "n1", inboundPort: 0 });
  proxies.push(node);
  const dump = () =>
    node.configDump() as { workloads: { uid: string; certificate: { identity: string; notAfter?: Date } }[] };
  await waitFor("three local workloads", async () => dump().workloads.length === 3);
  await waitFor("their certificates", async () => dump().workloads.every((x) => x.certificate.notAfter));
  const asked = signer.requests.map((r) => r.metadata?.ImpersonatedIdentity).sort();
  // One request per identity (echo-1 and echo-2 share theirs), none for n2's workload; all impersonated.
  expect(asked).toEqual(["spiffe://cluster.local/ns/default/sa/echo", "spiffe://cluster.local/ns/default/sa/sleep"]);
  expect(signer.requests.every((r) => r.headers.get("authorization")[0] === `Bearer ${TOKEN}`)).toBe(true);

  // A client elsewhere reaches echo-1 on the shared proxy (which listens on each workload's IP, port 0 -> its own).
  for (const x of dump().workloads)
    expect(x.certificate.identity).toMatch(/^spiffe:\/\/cluster\.local\/ns\/default\/sa\/(echo|sleep)$/);
  const echoPort = (node.configDump() as { workloads: { uid: string; listeners: { address: string }[] }[] }).workloads
    .find((x) => x.uid.endsWith("echo-1"))!
    .listeners[0]!.address.split(":")[1];
  signer.requireImpersonation = false; // the client is a dedicated proxy: its own identity, its own token
  const client = await startProxy({
    ...common,
    workload: "default/client/client",
    inboundPort: false,
    hbonePort: Number(echoPort),
  });
  proxies.push(client);
  // No app listens on 9000: the shared proxy answers the CONNECT with 503 — after a TLS handshake in which the client
  // verified echo's identity (a wrong one would fail as "HBONE to …", not with a status).
  const t = await client.connect("127.0.41.3:9000").then(
    () => "connected",
    (e: Error) => e.message,
  );
  expect(t).toMatch(/answered 503/);

  // istiod removes the last sleep pod from the node: its listener and certificate go.
  cp.remove(ADDRESS_TYPE_URL, "c1//Pod/default/sleep");
  await waitFor("sleep dropped", async () => dump().workloads.length === 2);
  expect(
    dump()
      .workloads.map((x) => x.uid)
      .sort(),
  ).toEqual(["c1//Pod/default/echo-1", "c1//Pod/default/echo-2"]);
}, 60_000);
