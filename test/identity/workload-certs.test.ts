// Per-identity certificates for the node's workloads: shared by the pods of one service account, prefetched when
// the first appears, dropped when the last leaves (a queued request for it never reaches the CA); at most 8
// requests in flight with 20 identities, on-demand fetches ahead of prefetches; renewal at half-life with a short
// TTL, a still-valid certificate kept while the CA fails. Sources: the plug-in CA (caDir) and the test istiod's
// CreateCertificate with impersonation, which the server side checks (metadata ImpersonatedIdentity equals the
// CSR's SAN, the identity is on the caller's node, the proxy's own token), and a leaf naming another id refused.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { IstioCaClient } from "../../host/identity/istio-ca.js";
import type { CertificateSource } from "../../host/identity/manager.js";
import { IdentityDroppedError, WorkloadCertificates, type LocalWorkload } from "../../host/identity/workload-certs.js";
import { setSink, type LogRecord } from "../../host/log.js";
import { CsrSigner, TestControlPlane } from "../helpers/control-plane.js";
import { TOKEN, connection, makeMesh, until, type MeshFixture } from "../helpers/control-plane-mesh.js";

let mesh: MeshFixture;
let signer: CsrSigner;
let cp: TestControlPlane;
const logs: LogRecord[] = [];
let restoreSink: () => void;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  restoreSink = setSink((r) => logs.push(r));
  mesh = await makeMesh("wcerts");
  signer = await CsrSigner.load(mesh.caDir);
  cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, signer });
});
afterAll(async () => {
  await cp?.stop();
  restoreSink();
  mesh?.cleanup();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  Object.assign(signer, { mode: "ok", delayMs: 0, requireImpersonation: false, impersonationAllowed: () => true });
  signer.maxInflight = 0;
  logs.length = 0;
});

const pod = (i: number, sa: string, ns = "default"): LocalWorkload => ({
  uid: `c1//Pod/${ns}/pod-${i}`,
  trustDomain: "cluster.local",
  namespace: ns,
  serviceAccount: sa,
});
const uriOf = (c: WorkloadCertificate) => new X509Certificate(c.certChainPem).subjectAltName;

/** The plug-in CA as a source, counting and (optionally) holding each issue until released. */
function caDirSource(o: { ttlMs?: number; hold?: boolean } = {}) {
  const calls: string[] = [];
  const held: (() => void)[] = [];
  let running = 0;
  let peak = 0;
  let failing = false;
  const source: CertificateSource = {
    issue: async (id: Identity) => {
      calls.push(id.serviceAccount);
      running++;
      peak = Math.max(peak, running);
      try {
        if (o.hold) await new Promise<void>((r) => held.push(r));
        if (failing) throw new Error("CA down on purpose");
        return await mesh.ca.issue(id, o.ttlMs ? { validityMs: o.ttlMs } : undefined);
      } finally {
        running--;
      }
    },
  };
  return {
    source,
    calls,
    held,
    get peak() {
      return peak;
    },
    fail(v: boolean) {
      failing = v;
    },
  };
}

function certs(
  source: CertificateSource,
  o: ConstructorParameters<typeof WorkloadCertificates>[1] = {},
): WorkloadCertificates {
  const wc = new WorkloadCertificates(source, o);
  cleanups.push(() => wc.close());
  return wc;
}

describe("WorkloadCertificates with the plug-in CA", () => {
  it("one certificate per identity shared by its pods, prefetched on arrival, dropped when the last pod leaves", async () => {
    const s = caDirSource();
    const wc = certs(s.source);
    const dropped: string[] = [];
    wc.on("dropped", (id) => dropped.push(String(id)));
    const sleep = wc.add(pod(1, "sleep"));
    expect(wc.add(pod(2, "sleep")).equals(sleep)).toBe(true);
    const echo = wc.add(pod(3, "echo"));
    await until(() => wc.current(sleep) !== undefined && wc.current(echo) !== undefined, 10_000, "prefetch");
    expect(s.calls.sort()).toEqual(["echo", "sleep"]);
    expect(uriOf(await wc.fetch(sleep))).toBe(`URI:${sleep}`);
    expect(await wc.fetch(sleep)).toBe(wc.current(sleep));
    expect(wc.snapshot().map((e) => [e.identity, e.workloads.length, typeof e.notAfter])).toEqual([
      [String(sleep), 2, "string"],
      [String(echo), 1, "string"],
    ]);

    wc.remove(pod(1, "sleep").uid);
    expect(wc.current(sleep)).toBeDefined();
    wc.remove(pod(2, "sleep").uid);
    expect(wc.current(sleep)).toBeUndefined();
    expect(dropped).toEqual([String(sleep)]);
    await expect(wc.fetch(sleep)).rejects.toBeInstanceOf(IdentityDroppedError);
    expect(wc.current(echo)).toBeDefined();

    // Back on the node: fetched again. sync() removes what a snapshot no longer has.
    wc.sync([pod(4, "sleep"), pod(3, "echo")]);
    await until(() => wc.current(sleep) !== undefined, 10_000, "refetch");
    expect(s.calls.filter((c) => c === "sleep")).toHaveLength(2);
    wc.sync([pod(4, "sleep")]);
    expect(wc.current(echo)).toBeUndefined();
  });

  it("20 identities: at most 8 requests at once; an on-demand fetch goes ahead of the queued prefetches", async () => {
    const s = caDirSource({ hold: true });
    const wc = certs(s.source);
    const ids = Array.from({ length: 20 }, (_, i) => wc.add(pod(i, `sa-${i}`)));
    await until(() => s.calls.length === 8, 5000, "8 started");
    await new Promise((r) => setTimeout(r, 50));
    expect(s.calls).toHaveLength(8);
    expect(wc.load).toEqual({ inFlight: 8, queued: 12 });

    const urgent = wc.fetch(ids[19]!);
    s.held.shift()!(); // one finishes: the next to start is the one a connection waits for
    await until(() => s.calls.length === 9, 5000, "the 9th start");
    expect(s.calls[8]).toBe("sa-19");
    while (s.calls.length < 20 || s.held.length > 0) {
      s.held.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(uriOf(await urgent)).toBe(`URI:${ids[19]}`);
    await until(() => ids.every((id) => wc.current(id) !== undefined), 10_000, "all 20");
    expect(s.peak).toBe(8);
    expect(wc.peakInFlight).toBe(8);
    expect(s.calls).toHaveLength(20);
  });

  it("an identity that leaves while its request is queued never reaches the CA", async () => {
    const s = caDirSource({ hold: true });
    const wc = certs(s.source, { maxConcurrent: 1 });
    wc.add(pod(1, "first"));
    const gone = wc.add(pod(2, "gone"));
    await until(() => s.calls.length === 1, 5000, "first started");
    const waiting = wc.fetch(gone);
    wc.remove(pod(2, "gone").uid);
    await expect(waiting).rejects.toBeInstanceOf(IdentityDroppedError);
    s.held.shift()!();
    // Signing the first one takes a while on a loaded machine: wait for it to finish, then nothing else ran.
    await until(() => wc.load.inFlight === 0, 5000, "first finished");
    expect(s.calls).toEqual(["first"]);
    expect(wc.load).toEqual({ inFlight: 0, queued: 0 });
  });

  it("renewal at half-life (2 s TTL); a failing CA keeps the still-valid certificate and retries with backoff", async () => {
    const s = caDirSource({ ttlMs: 2000 });
    const wc = certs(s.source, { minBackoffMs: 100, maxBackoffMs: 400 });
    const rotated: WorkloadCertificate[] = [];
    wc.on("rotated", (_id, c) => rotated.push(c));
    const id = wc.add(pod(1, "short"));
    const first = await wc.fetch(id);
    await until(() => rotated.length === 1, 5000, "renewal");
    const renewedAt = Date.now();
    // Renewed around half-life (1 s after issue; X.509 whole seconds make it 0.5–1.5 s).
    expect(renewedAt - first.notBefore.getTime()).toBeGreaterThanOrEqual(400);
    expect(renewedAt - first.notBefore.getTime()).toBeLessThan(2000);
    // A new certificate (new key); X.509 whole seconds may give it the same notAfter when renewed within a second.
    expect(rotated[0]!.keyPem).not.toBe(first.keyPem);
    expect(rotated[0]!.notAfter.getTime()).toBeGreaterThanOrEqual(first.notAfter.getTime());

    s.fail(true);
    const before = s.calls.length;
    const kept = wc.current(id)!;
    await until(() => s.calls.length >= before + 2, 5000, "retries");
    // The failures start at the kept certificate's half-life: it is still valid, and still served.
    expect(kept.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(wc.current(id)).toBe(kept);
    expect(logs.some((l) => l.msg === "certificate fetch failed" && l.serving === "previous certificate")).toBe(true);
    s.fail(false);
    await until(() => wc.current(id) !== undefined && wc.current(id) !== kept, 5000, "recovery");
  });
});

describe("WorkloadCertificates with istiod's CA (impersonation)", () => {
  function istioCa(impersonate: boolean): IstioCaClient {
    const c = new IstioCaClient({
      ...connection(mesh, cp.address),
      rootsPem: mesh.rootsPem,
      impersonate,
      ttlMs: 3600_000,
    });
    cleanups.push(() => c.close());
    return c;
  }

  it("20 identities through CreateCertificate: ImpersonatedIdentity = the CSR's SAN, the proxy's token, 8 at once", async () => {
    const onNode = new Set<string>();
    Object.assign(signer, {
      requireImpersonation: true,
      impersonationAllowed: (id: string) => onNode.has(id),
      delayMs: 100,
    });
    const wc = certs(istioCa(true));
    const n = signer.requests.length;
    const ids = Array.from({ length: 20 }, (_, i) => {
      const w = pod(i, `imp-${i}`, "apps");
      onNode.add(`spiffe://cluster.local/ns/apps/sa/imp-${i}`);
      return wc.add(w);
    });
    await until(() => ids.every((id) => wc.current(id) !== undefined), 30_000, "20 certificates");
    const reqs = signer.requests.slice(n);
    expect(reqs).toHaveLength(20);
    for (const r of reqs) {
      const want = r.metadata?.ImpersonatedIdentity;
      expect(r.headers.get("authorization")).toEqual([`Bearer ${TOKEN}`]);
      expect(typeof want === "string" && onNode.has(want)).toBe(true);
    }
    expect(new Set(reqs.map((r) => r.metadata?.ImpersonatedIdentity)).size).toBe(20);
    for (const id of ids) expect(uriOf(wc.current(id)!)).toBe(`URI:${id}`);
    expect(signer.maxInflight).toBe(8);
  });

  it("a leaf naming another identity is refused; so is an identity istiod will not impersonate", async () => {
    const wc = certs(istioCa(true), { minBackoffMs: 60_000 });
    signer.mode = "wrong-identity";
    const id = wc.add(pod(1, "victim"));
    await expect(wc.fetch(id)).rejects.toThrow(
      /URI SANs are \[spiffe:\/\/cluster.local\/ns\/default\/sa\/someone-else\], not exactly/,
    );
    expect(wc.current(id)).toBeUndefined();

    signer.mode = "ok";
    Object.assign(signer, { requireImpersonation: true, impersonationAllowed: () => false });
    const other = wc.add(pod(2, "elsewhere"));
    await expect(wc.fetch(other)).rejects.toThrow(/no pod with identity .*elsewhere on the caller's node/);

    // A dedicated-mode client (no impersonation metadata) is refused by a node-proxy istiod.
    Object.assign(signer, { impersonationAllowed: () => true });
    const dedicated = certs(istioCa(false), { minBackoffMs: 60_000 });
    await expect(dedicated.fetch(dedicated.add(pod(3, "plain")))).rejects.toThrow(/no ImpersonatedIdentity/);
  });
});
