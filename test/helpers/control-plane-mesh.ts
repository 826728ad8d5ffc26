// Shared set-up of the xDS and CA tests: a mesh CA made with createPluginCa, istiod's serving certificate issued by
// it (URI SAN spiffe://cluster.local/ns/istio-system/sa/istiod), a token file, and a bounded wait.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificateAuthority, createPluginCa, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import type { ControlPlaneConnection } from "../../host/tls/control-plane.js";

export const ISTIOD = Identity.parse("spiffe://cluster.local/ns/istio-system/sa/istiod");
export const TOKEN = "test-token-1";

export interface MeshFixture {
  dir: string;
  caDir: string;
  ca: CertificateAuthority;
  rootsPem: string;
  istiodCert: WorkloadCertificate;
  tokenFile: string;
  cleanup(): void;
}

export async function makeMesh(name = "mesh"): Promise<MeshFixture> {
  const dir = mkdtempSync(join(tmpdir(), `hbone-xds-${name}-`));
  const caDir = join(dir, "ca");
  await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "c1" });
  const ca = await CertificateAuthority.load(caDir);
  const istiodCert = await ca.issue(ISTIOD);
  const tokenFile = join(dir, "istio-token");
  writeFileSync(tokenFile, `${TOKEN}\n`);
  return {
    dir,
    caDir,
    ca,
    rootsPem: ca.rootsPem,
    istiodCert,
    tokenFile,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** How clients reach the test istiod: TLS to the mesh root, istiod's SPIFFE identity, token and cluster id. */
export function connection(m: MeshFixture, address: string): ControlPlaneConnection {
  return {
    address,
    rootsPem: m.rootsPem,
    serverName: "istiod.istio-system.svc",
    serverIdentities: [ISTIOD],
    tokenFile: m.tokenFile,
    clusterId: "c1",
  };
}

/** Polls check() every 10 ms; rejects after timeoutMs. */
export async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
