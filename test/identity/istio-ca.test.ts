// IstioCaClient against a real gRPC CA (IstioCertificateService over TLS on loopback) that signs CSRs with an Istio
// plug-in CA: what the CSR and the call carry, the checks on what comes back, and SecretManager renewing a 3 s
// certificate through it while an HBONE TLS connection stays up across the rotation.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { once } from "node:events";
import type tls from "node:tls";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { IstioCaClient, IstioCaError, type IstioCaClientOptions } from "../../host/identity/istio-ca.js";
import { SecretManager } from "../../host/identity/manager.js";
import { setSink, type LogRecord } from "../../host/log.js";
import { connectHbone, createHboneServer, type HboneServer } from "../../host/tls/contexts.js";
import { CsrSigner, TestControlPlane } from "../helpers/control-plane.js";
import { TOKEN, connection, makeMesh, until, type MeshFixture } from "../helpers/control-plane-mesh.js";

const ID = Identity.parse("spiffe://cluster.local/ns/default/sa/sleep");
const PEER = Identity.parse("spiffe://cluster.local/ns/default/sa/echo");
const WAIT = 15_000;

let mesh: MeshFixture;
let otherMesh: MeshFixture;
let signer: CsrSigner;
let cp: TestControlPlane;
const logs: LogRecord[] = [];
let restoreSink: () => void;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  restoreSink = setSink((r) => logs.push(r));
  [mesh, otherMesh] = await Promise.all([makeMesh("ca-a"), makeMesh("ca-b")]);
  signer = await CsrSigner.load(mesh.caDir);
  cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, signer });
});
afterAll(async () => {
  await cp?.stop();
  restoreSink();
  mesh?.cleanup();
  otherMesh?.cleanup();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  signer.mode = "ok";
  logs.length = 0;
});

function caClient(o: Partial<IstioCaClientOptions> = {}, at: TestControlPlane = cp): IstioCaClient {
  const c = new IstioCaClient({ ...connection(mesh, at.address), rootsPem: mesh.rootsPem, ...o });
  cleanups.push(() => c.close());
  return c;
}

function pems(chain: string): X509Certificate[] {
  return (chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a refusal");
}

describe("IstioCaClient", () => {
  it("sends a P-256 CSR with only the URI SAN, the TTL, the token and the cluster id; returns a usable certificate", async () => {
    const ca = caClient({ ttlMs: 3600_000 });
    const n = signer.requests.length;
    const cert = await ca.issue(ID);

    const req = signer.requests[n]!;
    expect(req.validitySeconds).toBe(3600);
    expect(req.metadata).toBeUndefined();
    expect(req.headers.get("authorization")).toEqual([`Bearer ${TOKEN}`]);
    expect(req.headers.get("clusterid")).toEqual(["c1"]);
    expect(req.csr.subject).toBe("");
    expect(req.csr.signatureAlgorithm).toMatchObject({ name: "ECDSA", hash: { name: "SHA-256" } });
    expect(req.csr.publicKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    const san = req.csr.extensions.find(
      (e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension,
    )!;
    expect(san.names.items.map((i) => [i.type, i.value])).toEqual([["url", ID.toString()]]);

    // The certificate: our key, leaf + intermediate (the root is the trust anchor), validity from the leaf.
    expect(cert.identity).toBe(ID);
    expect(cert.rootsPem).toBe(mesh.rootsPem);
    const chain = pems(cert.certChainPem);
    expect(chain).toHaveLength(2);
    expect(chain[0]!.subjectAltName).toBe(`URI:${ID}`);
    expect(chain[0]!.checkPrivateKey(createPrivateKey(cert.keyPem))).toBe(true);
    expect(createPublicKey(cert.keyPem).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(chain[1]!.ca).toBe(true);
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe(3600_000);
    expect(cert.notAfter.toISOString()).toBe(new Date(chain[0]!.validTo).toISOString());

    // Two such certificates talk HBONE mTLS to each other.
    const peerCert = await caClient().issue(PEER);
    const { server, port } = await hboneServer(peerCert, (s) => s.pipe(s));
    cleanups.push(() => server.close());
    const { socket, peer } = await connectHbone({ host: "127.0.0.1", port, certificate: cert, expected: [PEER] });
    cleanups.push(() => socket.destroy());
    expect(peer.equals(PEER)).toBe(true);
    expect(await echo(socket, "ping")).toBe("ping");
  });

  it("a fresh key for every certificate; ImpersonatedIdentity metadata when asked (shared mode)", async () => {
    const ca = caClient({ impersonate: true });
    const n = signer.requests.length;
    const [a, b] = await Promise.all([ca.issue(ID), ca.issue(ID)]);
    expect(a.keyPem).not.toBe(b.keyPem);
    expect(signer.requests[n]!.metadata).toEqual({ ImpersonatedIdentity: ID.toString() });
    expect(signer.requests[n]!.validitySeconds).toBe(24 * 3600);
  });

  const refusals: [string, () => Promise<unknown>, RegExp][] = [
    [
      "a leaf for another identity",
      async () => {
        signer.mode = "wrong-identity";
        return caClient().issue(ID);
      },
      /URI SANs are \[spiffe:\/\/cluster\.local\/ns\/default\/sa\/someone-else\], not exactly \[spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\]/,
    ],
    [
      "a leaf holding another key",
      async () => {
        signer.mode = "foreign-key";
        return caClient().issue(ID);
      },
      /the leaf does not hold our public key/,
    ],
    [
      "a chain that does not end at the mesh root",
      async () => {
        const foreign = await TestControlPlane.start({
          tls: mesh.istiodCert,
          token: TOKEN,
          signer: await CsrSigner.load(otherMesh.caDir),
        });
        cleanups.push(() => foreign.stop());
        return caClient({}, foreign).issue(ID);
      },
      /the chain does not end at the configured mesh root/,
    ],
    [
      "a CA error",
      async () => {
        signer.mode = "fail";
        return caClient().issue(ID);
      },
      /CreateCertificate for spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep at https:\/\/127\.0\.0\.1:\d+: CA is failing on purpose/,
    ],
    [
      "a wrong token",
      async () => {
        const bad = `${mesh.tokenFile}.bad`;
        const { writeFileSync } = await import("node:fs");
        writeFileSync(bad, "nope");
        return caClient({ tokenFile: bad }).issue(ID);
      },
      /bad or missing bearer token \(Bearer nope\)/,
    ],
    [
      "a missing token file",
      async () => caClient({ tokenFile: `${mesh.tokenFile}.missing` }).issue(ID),
      /cannot read the token file/,
    ],
    [
      "a CA server not trusted by the mesh root",
      async () => {
        const foreign = await TestControlPlane.start({ tls: otherMesh.istiodCert, token: TOKEN, signer });
        cleanups.push(() => foreign.stop());
        return caClient({ timeoutMs: 3000 }, foreign).issue(ID);
      },
      /unable to get local issuer certificate/,
    ],
  ];
  it.each(refusals)("refuses %s", async (_name, fn, re) => {
    const err = await refusal(fn());
    expect(err).toBeInstanceOf(IstioCaError);
    expect(err.message).toMatch(re);
  });
});

describe("SecretManager over IstioCaClient", () => {
  it("renews a 3 s certificate at half-life while an HBONE TLS connection stays up across the rotation", async () => {
    const secrets = new SecretManager(caClient({ ttlMs: 3000 }));
    cleanups.push(() => secrets.close());
    const first = await secrets.fetch(ID);
    expect(first.notAfter.getTime() - first.notBefore.getTime()).toBe(3000);
    const rotated: WorkloadCertificate[] = [];
    const { server, port } = await hboneServer(first, (s) => s.pipe(s));
    cleanups.push(() => server.close());
    secrets.on("rotated", (id, c) => {
      if (id.equals(ID)) {
        rotated.push(c);
        server.setCertificate(c);
      }
    });
    const clientCert = await mesh.ca.issue(PEER);
    const old = await connectHbone({ host: "127.0.0.1", port, certificate: clientCert, expected: [ID] });
    cleanups.push(() => old.socket.destroy());
    expect(serialOf(old.socket)).toBe(serialOfPem(first.certChainPem));
    expect(await echo(old.socket, "before")).toBe("before");

    await until(() => rotated.length >= 1, WAIT, "the rotation");
    const second = rotated[0]!;
    // Renewed at half-life (not before), while the first was still valid.
    const halfLife = (first.notBefore.getTime() + first.notAfter.getTime()) / 2;
    expect(second.notBefore.getTime()).toBeGreaterThanOrEqual(Math.floor(halfLife / 1000) * 1000);
    expect(second.notBefore.getTime()).toBeLessThan(first.notAfter.getTime());
    expect(serialOfPem(second.certChainPem)).not.toBe(serialOfPem(first.certChainPem));
    expect(secrets.current(ID)).toBe(second);

    // The open connection carries on; a new one is served the new certificate.
    expect(await echo(old.socket, "after rotation")).toBe("after rotation");
    const fresh = await connectHbone({ host: "127.0.0.1", port, certificate: clientCert, expected: [ID] });
    cleanups.push(() => fresh.socket.destroy());
    expect(serialOf(fresh.socket)).toBe(serialOfPem(second.certChainPem));
    // Even once the first certificate has expired, the connection made with it stays up.
    await until(() => Date.now() > first.notAfter.getTime() + 100, WAIT, "the first certificate to expire");
    expect(await echo(old.socket, "after expiry")).toBe("after expiry");
    expect(old.socket.destroyed).toBe(false);
  });

  it("keeps the valid certificate while the CA fails, retries with backoff, and rotates on the next success", async () => {
    const secrets = new SecretManager(caClient({ ttlMs: 6000 }), { minBackoffMs: 200 });
    cleanups.push(() => secrets.close());
    const first = await secrets.fetch(ID);
    const n = signer.requests.length;
    signer.mode = "fail";
    let rotated: WorkloadCertificate | undefined;
    secrets.on("rotated", (_id, c) => (rotated = c));
    const failed = () =>
      logs.filter((l) => l.msg === "certificate fetch failed" && l.serving === "previous certificate");
    await until(() => failed().length >= 3, WAIT, "three failed renewals");
    expect(signer.requests.length).toBeGreaterThanOrEqual(n + 3);
    expect(rotated).toBeUndefined();
    expect(secrets.current(ID)).toBe(first);
    // Backoff: the retry delays grow (200 ms, 400 ms, ... with jitter 0.2).
    const delays = failed().map((l) => l.retryInMs as number);
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    signer.mode = "ok";
    await until(() => rotated !== undefined, WAIT, "the rotation after recovery");
    expect(secrets.current(ID)).toBe(rotated);
    expect(rotated!.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
  });
});

async function hboneServer(
  cert: WorkloadCertificate,
  onSecure: (s: tls.TLSSocket) => void,
): Promise<{ server: HboneServer; port: number }> {
  const server = createHboneServer({ certificate: cert, trustDomain: "cluster.local" }, onSecure);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as { port: number }).port };
}

async function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  socket.write(text);
  let got = "";
  const deadline = Date.now() + 5000;
  while (got.length < text.length) {
    if (Date.now() > deadline) throw new Error(`echo timed out (got ${JSON.stringify(got)})`);
    const chunk = socket.read() as Buffer | null;
    if (chunk) got += chunk.toString();
    else await Promise.race([once(socket, "readable"), new Promise((r) => setTimeout(r, 100))]);
  }
  return got;
}

function serialOf(socket: tls.TLSSocket): string {
  return socket.getPeerCertificate().serialNumber.toUpperCase();
}

function serialOfPem(chain: string): string {
  return pems(chain)[0]!.serialNumber.toUpperCase();
}
