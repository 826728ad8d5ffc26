// A small istiod for tests and benchmarks, on the same protos as the client: Delta ADS for istio.workload.Address
// and istio.security.Authorization (wildcard, per-stream tracking of what each client holds, initial resource
// versions honoured, removals, NACK rollback), and IstioCertificateService/CreateCertificate signing CSRs with an
// Istio plug-in CA directory. It records every request and stream header so tests can assert on them.

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createPrivateKey, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Server, ServerCredentials, status, type Metadata, type ServerDuplexStream } from "@grpc/grpc-js";
import { policyKey, type Policy, type PolicyMatch, type Service, type Workload } from "../../host/model/index.js";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, addressResourceName } from "../../host/xds/convert.js";
import { encodeAddress, encodePolicy } from "../xds/encode.js";
import { AggregatedDiscoveryServiceService } from "../../host/xds/gen/envoy/service/discovery/v3/ads.js";
import type {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  Resource,
} from "../../host/xds/gen/envoy/service/discovery/v3/discovery.js";
import {
  IstioCertificateServiceService,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from "../../host/xds/gen/istio/v1/auth/ca.js";

export { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL };

/** A policy match with `m`'s fields and every other field empty (what a test's istiod pushes). */
export function policyMatch(m: Partial<PolicyMatch>): PolicyMatch {
  return {
    namespaces: [],
    notNamespaces: [],
    serviceAccounts: [],
    notServiceAccounts: [],
    principals: [],
    notPrincipals: [],
    sourceIps: [],
    notSourceIps: [],
    destinationIps: [],
    notDestinationIps: [],
    destinationPorts: [],
    notDestinationPorts: [],
    ...m,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CSR signing

export type SignerMode = "ok" | "wrong-identity" | "foreign-key" | "fail";

/** Signs CSRs with the intermediate of an Istio plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem),
 *  returning istiod's chain order: leaf, intermediate, root. */
export class CsrSigner {
  /** How the next certificates are made: "ok", or a misbehaviour for tests. */
  mode: SignerMode = "ok";
  /** Every request, in order. */
  readonly requests: {
    csr: x509.Pkcs10CertificateRequest;
    validitySeconds: number;
    metadata: Record<string, unknown> | undefined;
    headers: Metadata;
  }[] = [];
  issued = 0;
  /** Holds each signature back this long (to observe how many requests a client keeps in flight). */
  delayMs = 0;
  /** Requests being signed now, and the most seen at once. */
  inflight = 0;
  maxInflight = 0;
  /** As istiod for a node proxy: metadata.ImpersonatedIdentity must be present and equal the CSR's URI SAN, and
   *  `impersonationAllowed` (istiod: a pod with that service account runs on the caller's node) must accept it;
   *  otherwise PERMISSION_DENIED. */
  requireImpersonation = false;
  impersonationAllowed: (spiffeId: string) => boolean = () => true;

  private constructor(
    private readonly caCert: x509.X509Certificate,
    private readonly key: CryptoKey,
    private readonly caPem: string,
    private readonly rootPem: string,
  ) {}

  static async load(dir: string): Promise<CsrSigner> {
    const [caPem, keyPem, rootPem] = await Promise.all(
      ["ca-cert.pem", "ca-key.pem", "root-cert.pem"].map((f) => readFile(join(dir, f), "utf8")),
    );
    const der = createPrivateKey(keyPem!).export({ type: "pkcs8", format: "der" });
    const key = await crypto.subtle.importKey("pkcs8", der, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, [
      "sign",
    ]);
    return new CsrSigner(new x509.X509Certificate(caPem!), key, caPem!, rootPem!);
  }

  async sign(req: IstioCertificateRequest, headers: Metadata): Promise<string[]> {
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      return await this.signNow(req, headers);
    } finally {
      this.inflight--;
    }
  }

  private async signNow(req: IstioCertificateRequest, headers: Metadata): Promise<string[]> {
    const csr = new x509.Pkcs10CertificateRequest(req.csr);
    this.requests.push({ csr, validitySeconds: req.validityDuration, metadata: req.metadata, headers });
    if (this.mode === "fail") throw new Error("CA is failing on purpose");
    if (!(await csr.verify())) throw new Error("CSR signature does not verify");
    const san = csr.extensions.find(
      (e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension,
    );
    let uris: string[] = san?.names.items.filter((n) => n.type === "url").map((n) => n.value) ?? [];
    if (this.requireImpersonation) {
      const want = req.metadata?.ImpersonatedIdentity;
      if (typeof want !== "string")
        throw new SignerRefusal("impersonation required: no ImpersonatedIdentity in metadata");
      if (uris.length !== 1 || uris[0] !== want)
        throw new SignerRefusal(`CSR names [${uris.join(", ")}], not the impersonated ${want}`);
      if (!this.impersonationAllowed(want))
        throw new SignerRefusal(`no pod with identity ${want} on the caller's node`);
    }
    if (this.mode === "wrong-identity") uris = ["spiffe://cluster.local/ns/default/sa/someone-else"];
    let publicKey: x509.PublicKey | CryptoKey = csr.publicKey;
    if (this.mode === "foreign-key") {
      publicKey = (
        (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
          "sign",
          "verify",
        ])) as CryptoKeyPair
      ).publicKey;
    }
    const now = Math.floor(Date.now() / 1000) * 1000;
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x40;
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString("hex"),
      issuer: this.caCert.subjectName,
      notBefore: new Date(now),
      notAfter: new Date(now + Math.max(1, req.validityDuration) * 1000),
      publicKey,
      signingKey: this.key,
      signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(
          uris.map((u) => ({ type: "url" as const, value: u })),
          true,
        ),
      ],
    });
    this.issued++;
    return [leaf.toString("pem") + "\n", this.caPem, this.rootPem];
  }
}

/** A request the signer refuses as istiod would (PERMISSION_DENIED), rather than failing on it. */
export class SignerRefusal extends Error {
  readonly code = status.PERMISSION_DENIED;
}

// ---------------------------------------------------------------------------------------------------------------
// The control plane

export interface ControlPlaneOptions {
  /** TLS serving certificate (e.g. CertificateAuthority.issue for spiffe://cluster.local/ns/istio-system/sa/istiod);
   *  none: plaintext. */
  tls?: WorkloadCertificate;
  /** Streams and calls without `authorization: Bearer <token>` are refused with UNAUTHENTICATED. */
  token?: string;
  /** Serves IstioCertificateService with this signer. */
  signer?: CsrSigner;
  /** Listen port (default 0: any). */
  port?: number;
  /** Keep every response sent in StreamRecord.responses (default true; benchmarks turn it off). */
  recordResponses?: boolean;
}

interface Entry {
  version: string;
  body: Uint8Array;
}

interface TypeStream {
  subscribed: boolean;
  /** What the client holds (optimistically, once sent; rolled back on NACK). */
  held: Map<string, string>;
  /** nonce -> the held entries the response replaced (for rollback). */
  pending: Map<string, Map<string, string | undefined>>;
  /** Names rolled back by a NACK: looked at again on the next push. */
  stale: Set<string>;
  /** The initial response was sent. */
  answered: boolean;
}

/** One client stream as seen by the control plane. */
export class StreamRecord {
  readonly requests: DeltaDiscoveryRequest[] = [];
  readonly responses: DeltaDiscoveryResponse[] = [];
  readonly types = new Map<string, TypeStream>();
  closed = false;
  constructor(
    readonly headers: Metadata,
    readonly call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
  ) {}

  /** ACKs and NACKs received (requests carrying a nonce). */
  acks(typeUrl?: string): DeltaDiscoveryRequest[] {
    return this.requests.filter((r) => r.responseNonce !== "" && !r.errorDetail && (!typeUrl || r.typeUrl === typeUrl));
  }

  nacks(typeUrl?: string): DeltaDiscoveryRequest[] {
    return this.requests.filter((r) => r.responseNonce !== "" && r.errorDetail && (!typeUrl || r.typeUrl === typeUrl));
  }
}

export class TestControlPlane {
  readonly streams: StreamRecord[] = [];
  private readonly store = new Map<string, Map<string, Entry>>([
    [ADDRESS_TYPE_URL, new Map()],
    [AUTHORIZATION_TYPE_URL, new Map()],
  ]);
  private readonly held = new Set<string>();
  private server: Server | undefined;
  private nonce = 0;
  private version = 0;
  private batching = 0;
  /** typeUrl -> names changed since the last push (a push looks only at those). */
  private dirty = new Map<string, Set<string>>();
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  port = 0;

  private constructor(private readonly o: ControlPlaneOptions) {}

  static async start(o: ControlPlaneOptions = {}): Promise<TestControlPlane> {
    const cp = new TestControlPlane(o);
    await cp.listen(o.port ?? 0);
    return cp;
  }

  get address(): string {
    return `${this.o.tls ? "https" : "http"}://127.0.0.1:${this.port}`;
  }

  // -- resources ----------------------------------------------------------------------------------------------

  /** Adds or replaces a resource (a new version) and pushes it to subscribed streams. */
  set(typeUrl: string, name: string, body: Uint8Array, version = `v${++this.version}`): void {
    this.store.get(typeUrl)!.set(name, { version, body });
    this.changed(typeUrl, name);
  }

  remove(typeUrl: string, name: string): void {
    if (this.store.get(typeUrl)!.delete(name)) this.changed(typeUrl, name);
  }

  setWorkload(w: Workload): void {
    this.set(ADDRESS_TYPE_URL, w.uid, encodeAddress({ kind: "workload", workload: w }));
  }

  setService(s: Service): void {
    this.set(
      ADDRESS_TYPE_URL,
      addressResourceName({ kind: "service", service: s }),
      encodeAddress({ kind: "service", service: s }),
    );
  }

  setPolicy(p: Policy): void {
    this.set(AUTHORIZATION_TYPE_URL, policyKey(p), encodePolicy(p));
  }

  /** The names and versions the control plane serves for a type. */
  versions(typeUrl: string): Map<string, string> {
    return new Map([...this.store.get(typeUrl)!].map(([k, v]) => [k, v.version]));
  }

  /** Changes made inside fn reach each stream as one response per type. */
  batch(fn: () => void): void {
    this.batching++;
    try {
      fn();
    } finally {
      this.batching--;
    }
    if (this.batching === 0) for (const t of [...this.dirty.keys()]) this.pushAll(t);
  }

  /** Responses of this type wait (initial ones included) until release(). */
  hold(typeUrl: string): void {
    this.held.add(typeUrl);
  }

  release(typeUrl: string): void {
    this.held.delete(typeUrl);
    // Streams whose first request waited get their initial response; the others what changed meanwhile.
    const names = this.dirty.get(typeUrl) ?? new Set<string>();
    this.dirty.delete(typeUrl);
    for (const rec of this.streams) {
      if (rec.closed) continue;
      const ts = rec.types.get(typeUrl);
      this.push(rec, typeUrl, ts && !ts.answered ? "initial" : names);
    }
  }

  // -- lifecycle ----------------------------------------------------------------------------------------------

  /** Kills the server and every stream (as an istiod restart does). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.forceShutdown();
    for (const st of this.streams) st.closed = true;
  }

  /** Starts again on the same port with the same resources. */
  async restart(): Promise<void> {
    await this.stop();
    await this.listen(this.port);
  }

  /** The newest stream. */
  get stream(): StreamRecord | undefined {
    return this.streams[this.streams.length - 1];
  }

  /** Resolves once check() holds (checked after every request received), or rejects after timeoutMs. */
  waitFor(check: () => boolean, timeoutMs: number, what = "condition"): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { check, resolve: () => {} };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`control plane: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      w.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(w);
    });
  }

  // -- internals ----------------------------------------------------------------------------------------------

  private async listen(port: number): Promise<void> {
    const server = new Server({ "grpc.max_receive_message_length": 64 * 1024 * 1024 });
    server.addService(AggregatedDiscoveryServiceService, {
      deltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) =>
        this.onStream(call),
    });
    if (this.o.signer) {
      const signer = this.o.signer;
      server.addService(IstioCertificateServiceService, {
        createCertificate: (
          call: { request: IstioCertificateRequest; metadata: Metadata },
          cb: (err: { code: number; details: string } | null, r?: IstioCertificateResponse) => void,
        ) => {
          const denied = this.authError(call.metadata);
          if (denied) return cb({ code: status.UNAUTHENTICATED, details: denied });
          signer.sign(call.request, call.metadata).then(
            (certChain) => cb(null, { certChain }),
            (e: Error) => cb({ code: e instanceof SignerRefusal ? e.code : status.INTERNAL, details: e.message }),
          );
        },
      });
    }
    const creds = this.o.tls
      ? ServerCredentials.createSsl(
          null,
          [{ private_key: Buffer.from(this.o.tls.keyPem), cert_chain: Buffer.from(this.o.tls.certChainPem) }],
          false,
        )
      : ServerCredentials.createInsecure();
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
  }

  private authError(md: Metadata): string | undefined {
    if (this.o.token === undefined) return undefined;
    const got = md.get("authorization")[0];
    return got === `Bearer ${this.o.token}` ? undefined : `bad or missing bearer token (${String(got)})`;
  }

  private onStream(call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
    const rec = new StreamRecord(call.metadata, call);
    this.streams.push(rec);
    const denied = this.authError(call.metadata);
    if (denied) {
      call.emit("error", { code: status.UNAUTHENTICATED, details: denied });
      rec.closed = true;
      this.wake();
      return;
    }
    call.on("data", (req: DeltaDiscoveryRequest) => {
      rec.requests.push(req);
      this.onRequest(rec, req);
      this.wake();
    });
    const done = () => {
      rec.closed = true;
      this.wake();
    };
    call.on("end", () => {
      done();
      call.end();
    });
    call.on("error", done);
    call.on("cancelled", done);
  }

  private onRequest(rec: StreamRecord, req: DeltaDiscoveryRequest): void {
    const entries = this.store.get(req.typeUrl);
    if (!entries) return;
    let ts = rec.types.get(req.typeUrl);
    if (!ts)
      rec.types.set(
        req.typeUrl,
        (ts = { subscribed: false, held: new Map(), pending: new Map(), stale: new Set(), answered: false }),
      );
    if (req.responseNonce === "") {
      // A type's first request on this stream: wildcard, starting from what the client says it holds.
      ts.subscribed = true;
      ts.held = new Map(req.initialResourceVersions);
      this.push(rec, req.typeUrl, "initial");
      return;
    }
    const replaced = ts.pending.get(req.responseNonce);
    ts.pending.delete(req.responseNonce);
    if (req.errorDetail && replaced) {
      // NACK: the client kept what it had.
      for (const [name, v] of replaced) {
        if (v === undefined) ts.held.delete(name);
        else ts.held.set(name, v);
        ts.stale.add(name);
      }
    }
  }

  private changed(typeUrl: string, name: string): void {
    let names = this.dirty.get(typeUrl);
    if (!names) this.dirty.set(typeUrl, (names = new Set()));
    names.add(name);
    if (this.batching === 0) this.pushAll(typeUrl);
  }

  private pushAll(typeUrl: string): void {
    // While a type is held, changes pile up for release().
    if (this.held.has(typeUrl)) return;
    const names = this.dirty.get(typeUrl) ?? new Set<string>();
    this.dirty.delete(typeUrl);
    for (const rec of this.streams) if (!rec.closed) this.push(rec, typeUrl, names);
  }

  /**
   * Sends what the stream's client lacks of a type: on its first request (initial) everything that differs from
   * what it holds, afterwards what differs among the changed names (and those a NACK rolled back).
   */
  private push(rec: StreamRecord, typeUrl: string, changed: Set<string> | "initial"): void {
    const ts = rec.types.get(typeUrl);
    if (!ts?.subscribed || this.held.has(typeUrl) || rec.closed) return;
    const entries = this.store.get(typeUrl)!;
    const resources: Resource[] = [];
    const removed: string[] = [];
    const replaced = new Map<string, string | undefined>();
    const initial = changed === "initial";
    const names = initial ? new Set([...entries.keys(), ...ts.held.keys()]) : new Set([...changed, ...ts.stale]);
    ts.stale.clear();
    for (const name of names) {
      const e = entries.get(name);
      const had = ts.held.get(name);
      if (e && had === e.version) continue;
      if (!e && had === undefined) continue;
      replaced.set(name, had);
      if (e) {
        resources.push({ name, version: e.version, resource: { typeUrl, value: e.body }, aliases: [] });
        ts.held.set(name, e.version);
      } else {
        removed.push(name);
        ts.held.delete(name);
      }
    }
    if (!initial && resources.length === 0 && removed.length === 0) return;
    ts.answered = true;
    const nonce = `n${++this.nonce}`;
    ts.pending.set(nonce, replaced);
    const resp: DeltaDiscoveryResponse = {
      systemVersionInfo: "",
      resources,
      typeUrl,
      nonce,
      removedResources: removed,
    };
    if (this.o.recordResponses !== false) rec.responses.push(resp);
    rec.call.write(resp);
  }

  private wake(): void {
    const ready = this.waiters.filter((w) => w.check());
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }
}
