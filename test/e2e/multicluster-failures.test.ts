// Double HBONE refusals at each layer (wrong gateway identity, a service without SANs, a
// wrong inner identity), and an independent client (Python hyper-h2 over OpenSSL) opening an
// outer tunnel through the east-west gateway.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TwoClusters } from "../../host/demo/two-clusters.js";
import { type MeshConfig } from "../../host/model/index.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { startProxy, type Mesh } from "../../host/app.js";
import { OutboundError } from "../../host/proxy/outbound.js";
import { CertificateAuthority } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { haveH2, runH2Peer } from "../helpers/python.js";

let dir: string;
let mc: TwoClusters;
const extra: Mesh[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hbone-mcf-"));
  mc = await TwoClusters.start({ dir, octets: [31, 32] });
}, 60_000);
afterAll(async () => {
  for (const m of extra) await m.close();
  await mc?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** cluster1's config with its own echo pods removed (so echo is only reachable cross-network), then `edit`. */
function remoteOnly(edit: (cfg: MeshConfig) => void): MeshConfig {
  const cfg = parseMeshConfig(mc.config("cluster1"));
  cfg.workloads = cfg.workloads.filter((w) => !(w.clusterId === "cluster1" && w.name.startsWith("echo")));
  edit(cfg);
  return cfg;
}

async function clientWith(cfg: MeshConfig): Promise<Mesh> {
  const m = await startProxy({
    config: cfg,
    caDir: mc.caDir("cluster1"),
    workload: "default/sleep/sleep",
    cluster: "cluster1",
    network: "network1",
    inboundPort: false,
    hbonePort: 15008,
    socks5Port: false,
    adminPort: false,
    metricsPort: false,
    readinessPort: false,
  });
  extra.push(m);
  return m;
}

describe("double HBONE identity checks", () => {
  it("works with the real identities (control)", async () => {
    const m = await clientWith(remoteOnly(() => {}));
    const t = await m.connect("echo.default.svc.cluster.local:9000");
    t.end("x");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toMatch(/^echo-[ab]@cluster2\nx$/);
  });

  it("refuses a gateway that does not present the gateway identity", async () => {
    const m = await clientWith(
      remoteOnly((cfg) => {
        for (const w of cfg.workloads)
          if (w.name === "eastwest" && w.clusterId === "cluster2") w.serviceAccount = "impostor";
      }),
    );
    await expect(m.connect("echo.default.svc.cluster.local:9000")).rejects.toThrow(/sa\/impostor|identity/);
    expect(m.innerPool.size + m.pool.size).toBe(0); // nothing was established
  });

  it("refuses double HBONE to a service without subjectAltNames", async () => {
    const m = await clientWith(
      remoteOnly((cfg) => {
        cfg.services.find((s) => s.name === "echo")!.subjectAltNames = [];
      }),
    );
    await expect(m.connect("echo.default.svc.cluster.local:9000")).rejects.toThrow(/subjectAltNames/);
    await expect(m.connect("echo.default.svc.cluster.local:9000")).rejects.toMatchObject({ kind: "no-identity" });
  });

  it("refuses an inner peer whose identity is not among the service's SANs", async () => {
    const m = await clientWith(
      remoteOnly((cfg) => {
        cfg.services.find((s) => s.name === "echo")!.subjectAltNames = [
          "spiffe://cluster.local/ns/default/sa/not-echo",
        ];
      }),
    );
    const err = await m.connect("echo.default.svc.cluster.local:9000").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect(String(err)).toMatch(/inner HBONE/);
    expect(err).toMatchObject({ kind: "unreachable", code: "HBONE_OUTBOUND_UNREACHABLE" });
  });
});

describe.skipIf(!haveH2())("an independent client through the gateway", () => {
  it("Python hyper-h2 opens an outer tunnel to echo via cluster2's gateway (200), the inner bytes pass through", async () => {
    const ca = await CertificateAuthority.load(mc.caDir("cluster1"));
    const cert = await ca.issue(new Identity("cluster.local", "default", "python"));
    writeFileSync(join(dir, "py-chain.pem"), cert.certChainPem);
    writeFileSync(join(dir, "py-key.pem"), cert.keyPem);
    writeFileSync(join(dir, "roots.pem"), cert.rootsPem);
    // The inner bytes reach a node proxy's TLS listener, which drops non-TLS: the tunnel answer is what counts.
    const { code, out, err } = await runH2Peer([
      "tls-client",
      mc.ip("cluster2", "100"),
      "15008",
      "1",
      "0",
      "echo.default.svc.cluster.local:9000",
      join(dir, "py-chain.pem"),
      join(dir, "py-key.pem"),
      join(dir, "roots.pem"),
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.status).toEqual([200]);
    expect(r.peerSans).toEqual(["spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway"]);
  });
});
