// Node mode on istiod's CA with short-lived certificates (4 s): one shared proxy serves ten workloads of its node,
// each with its own service account. Each identity's certificate comes from CreateCertificate with the proxy's
// token and `ImpersonatedIdentity` (the test istiod refuses anything else), is renewed at half-life, and the
// renewed one is what a new TLS connection to that workload is shown (its not-after moves). The test istiod holds
// every signature back 300 ms: ten identities at once must never make more than 8 requests in flight (and do reach
// 8). A workload istiod removes takes its certificate with it: no further requests for that identity, while the
// others keep renewing.

import { afterAll, beforeAll, expect, it } from "vitest";
import tls from "node:tls";
import { newWorkload } from "../../host/model/index.js";
import { startProxy, type NodeProxy } from "../../host/app.js";
import { Identity } from "../../host/identity/identity.js";
import { ADDRESS_TYPE_URL, CsrSigner, TestControlPlane } from "../helpers/control-plane.js";
import { TOKEN, makeMesh, type MeshFixture } from "../helpers/control-plane-mesh.js";
import { setSink } from "../../host/log.js";
import { istiodProxyOptions, waitFor } from "../helpers/node-proxy.js";

const N = 10;
const TTL_MS = 4_000;
const spiffe = (i: number) => `spiffe://cluster.local/ns/default/sa/sa-${i}`;

let mesh: MeshFixture;
let cp: TestControlPlane;
let signer: CsrSigner;
let node: NodeProxy;
const restore = setSink(() => {});

beforeAll(async () => {
  mesh = await makeMesh("node-renewal");
  signer = await CsrSigner.load(mesh.caDir);
  signer.requireImpersonation = true;
  signer.delayMs = 300;
  cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, signer });
});
afterAll(async () => {
  await node?.close();
  await cp?.stop();
  mesh?.cleanup();
  restore();
});

type Dump = {
  workloads: {
    uid: string;
    certificate: { identity: string; notAfter?: Date | string };
    listeners: { address: string }[];
  }[];
};

/** The not-after of the certificate a new TLS connection to `port` on 127.0.43.<10+i> is shown (ms). */
async function servedNotAfter(i: number, port: number, client: { keyPem: string; certChainPem: string }) {
  const s = tls.connect({
    host: `127.0.43.${10 + i}`,
    port,
    key: client.keyPem,
    cert: client.certChainPem,
    ALPNProtocols: ["h2"],
    rejectUnauthorized: false, // only the certificate's dates are looked at here
  });
  try {
    await new Promise<void>((resolve, reject) => {
      s.once("secureConnect", resolve);
      s.once("error", reject);
    });
    return new Date(s.getPeerCertificate().valid_to).getTime();
  } finally {
    s.destroy();
  }
}

const requestsFor = (id: string) => signer.requests.filter((r) => r.metadata?.ImpersonatedIdentity === id).length;

it("renews each workload's impersonated certificate at half-life, serves the new one, keeps ≤ 8 in flight, drops a removed one", async () => {
  cp.batch(() => {
    for (let i = 0; i < N; i++) {
      cp.setWorkload(
        newWorkload({
          uid: `c1//Pod/default/w-${i}`,
          name: `w-${i}`,
          namespace: "default",
          serviceAccount: `sa-${i}`,
          workloadIps: [`127.0.43.${10 + i}`],
          protocol: "HBONE",
          node: "n1",
        }),
      );
    }
  });
  node = await startProxy({
    ...istiodProxyOptions(mesh, cp.address),
    nodeName: "n1",
    inboundPort: 0,
    certificateTtlMs: TTL_MS,
  });
  const dump = () => node.configDump() as Dump;
  const notAfter = (i: number) => {
    const w = dump().workloads.find((x) => x.uid.endsWith(`/w-${i}`));
    return w?.certificate.notAfter ? new Date(w.certificate.notAfter).getTime() : undefined;
  };
  const port = (i: number) =>
    Number(
      dump()
        .workloads.find((x) => x.uid.endsWith(`/w-${i}`))!
        .listeners[0]!.address.split(":")[1],
    );
  await waitFor(
    "ten certificates",
    async () => dump().workloads.length === N && dump().workloads.every((w) => w.certificate.notAfter),
    20_000,
  );
  for (let i = 0; i < N; i++)
    expect(dump().workloads.find((x) => x.uid.endsWith(`/w-${i}`))!.certificate.identity).toBe(spiffe(i));
  expect(signer.requests.every((r) => r.headers.get("authorization")[0] === `Bearer ${TOKEN}`)).toBe(true);
  expect(signer.requests.every((r) => r.validitySeconds === TTL_MS / 1000)).toBe(true);

  const client = await mesh.ca.issue(new Identity("cluster.local", "default", "client"));
  const first = notAfter(0)!;
  expect(await servedNotAfter(0, port(0), client)).toBe(first);

  // Half-life is 2 s: within a few seconds every identity has been renewed at least once.
  await waitFor("w-0 renewed", async () => (notAfter(0) ?? 0) > first, 10_000);
  const renewed = notAfter(0)!;
  expect(await servedNotAfter(0, port(0), client)).toBe(renewed);
  await waitFor(
    "every identity renewed",
    async () => [...Array(N).keys()].every((i) => requestsFor(spiffe(i)) >= 2),
    15_000,
  );
  expect(signer.maxInflight).toBe(8);

  // istiod removes w-9: its certificate is dropped, no more renewals for it; the others go on.
  cp.remove(ADDRESS_TYPE_URL, "c1//Pod/default/w-9");
  await waitFor("w-9 gone", async () => dump().workloads.length === N - 1);
  const gone = requestsFor(spiffe(9));
  const others = requestsFor(spiffe(0));
  await new Promise((r) => setTimeout(r, TTL_MS + 1_000)); // past a whole lifetime: a kept one would renew twice
  expect(requestsFor(spiffe(9))).toBeLessThanOrEqual(gone + 1); // at most one already in flight at removal
  const after = requestsFor(spiffe(9));
  await new Promise((r) => setTimeout(r, TTL_MS));
  expect(requestsFor(spiffe(9))).toBe(after);
  expect(requestsFor(spiffe(0))).toBeGreaterThan(others);
  expect(dump().workloads.some((w) => w.certificate.identity === spiffe(9))).toBe(false);
  expect(signer.maxInflight).toBe(8);
}, 60_000);
