// Workload certificates from istiod's CA, as ztunnel's CaClient (src/identity/caclient.rs): a fresh ECDSA P-256 key
// and a CSR (URI SAN only, empty subject) per certificate, sent to
// istio.v1.auth.IstioCertificateService/CreateCertificate with `authorization: Bearer <token>` and `clusterid`.
// What comes back is checked before it is used: the chain (leaf first, root last) must link up signature by
// signature to one of the configured mesh roots, the leaf must hold our public key and carry exactly the requested
// SPIFFE identity as its URI SAN. Renewal (half-life, backoff 1 s .. 150 s, the old certificate serving meanwhile) is
// SecretManager's (./manager.ts): an IstioCaClient is its CertificateSource.

import { X509Certificate, generateKeyPair } from "node:crypto";
import { promisify } from "node:util";
import type { ServiceError } from "@grpc/grpc-js";
import { controlPlaneChannel, controlPlaneMetadata, type ControlPlaneConnection } from "../tls/control-plane.js";
import {
  IstioCertificateServiceClient,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from "../xds/gen/istio/v1/auth/ca.js";
import type { WorkloadCertificate } from "./ca.js";
import { certificateFields, certificationRequest, toPem } from "./der.js";
import type { Identity } from "./identity.js";
import type { CertificateSource } from "./manager.js";
import { logger } from "../log.js";
import { CaError, IstioCaError } from "../errors.js";

const log = logger("identity");

export interface IstioCaClientOptions extends ControlPlaneConnection {
  /** The mesh roots (root-cert.pem): TLS to the CA is verified with them and every issued chain must end at one. */
  rootsPem: string;
  /** Requested lifetime, sent as validity_duration in seconds (default 24 h, ztunnel's SECRET_TTL). */
  ttlMs?: number;
  /** Send metadata {ImpersonatedIdentity: <spiffe id>} (ztunnel in shared mode, where the token is the node
   *  proxy's own). Default false: a dedicated proxy's token is the workload's. */
  impersonate?: boolean;
  /** Deadline of one CreateCertificate call (default 10 s). */
  timeoutMs?: number;
  /** CreateCertificate calls in flight at most (default 8, as ztunnel). */
  maxConcurrent?: number;
}

export { IstioCaError } from "../errors.js";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const generateKeys = promisify(generateKeyPair);

function parseRoots(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new CaError("IstioCaClient: rootsPem holds no PEM certificate");
  return blocks.map((b) => new X509Certificate(b));
}

/** Certificate-authority client for istiod; a CertificateSource for SecretManager. */
export class IstioCaClient implements CertificateSource {
  private readonly grpc: InstanceType<typeof IstioCertificateServiceClient>;
  private readonly roots: X509Certificate[];
  private readonly ttlSeconds: number;
  private readonly timeoutMs: number;
  private readonly maxConcurrent: number;
  private inflight = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;

  constructor(private readonly o: IstioCaClientOptions) {
    this.roots = parseRoots(o.rootsPem);
    this.ttlSeconds = Math.max(1, Math.round((o.ttlMs ?? 24 * 3600_000) / 1000));
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.maxConcurrent = o.maxConcurrent ?? 8;
    const ch = controlPlaneChannel(o, {
      // Fail fast while istiod is away: SecretManager's backoff decides when to try again.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 5_000,
    });
    this.grpc = new IstioCertificateServiceClient(ch.target, ch.credentials, ch.options);
  }

  /** A new key and a certificate for `identity` from istiod, checked (see the file comment). */
  async issue(identity: Identity): Promise<WorkloadCertificate> {
    if (this.closed) throw new IstioCaError("IstioCaClient is closed");
    await this.slot();
    try {
      if (this.closed) throw new IstioCaError("IstioCaClient is closed");
      return await this.issueNow(identity);
    } finally {
      this.release();
    }
  }

  close(): void {
    this.closed = true;
    this.grpc.close();
    for (const wake of this.queue.splice(0)) wake();
  }

  private async issueNow(identity: Identity): Promise<WorkloadCertificate> {
    const id = identity.toString();
    const keys = await generateKeys("ec", { namedCurve: "prime256v1" });
    const spki = keys.publicKey.export({ type: "spki", format: "der" });
    const request: IstioCertificateRequest = {
      csr: toPem("CERTIFICATE REQUEST", certificationRequest(id, spki, keys.privateKey)),
      validityDuration: this.ttlSeconds,
      metadata: this.o.impersonate ? { ImpersonatedIdentity: id } : undefined,
    };
    let md;
    try {
      md = await controlPlaneMetadata(this.o);
    } catch (e) {
      throw new IstioCaError(`CreateCertificate for ${id}: ${(e as Error).message}`);
    }
    const resp = await new Promise<IstioCertificateResponse>((resolve, reject) => {
      this.grpc.createCertificate(
        request,
        md,
        { deadline: Date.now() + this.timeoutMs },
        (err: ServiceError | null, r) => {
          if (err)
            reject(new IstioCaError(`CreateCertificate for ${id} at ${this.o.address}: ${err.details || err.message}`));
          else resolve(r);
        },
      );
    });
    const chain = this.checkChain(id, spki, resp.certChain);
    const leaf = chain[0]!;
    const cert: WorkloadCertificate = {
      identity,
      keyPem: keys.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
      // Leaf and intermediates; the root is a trust anchor, not part of what we present.
      certChainPem: chain
        .filter((c) => !this.isRoot(c))
        .map((c) => c.toString())
        .join(""),
      rootsPem: this.o.rootsPem,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
    log.info("workload certificate issued by istiod", { identity: id, notAfter: cert.notAfter.toISOString() });
    return cert;
  }

  /** The returned chain, parsed and checked; throws IstioCaError naming what is wrong. */
  private checkChain(id: string, spki: Buffer, pems: string[]): X509Certificate[] {
    const bad = (why: string): never => {
      throw new IstioCaError(`CreateCertificate for ${id}: refused the issued certificate: ${why}`);
    };
    const blocks = pems.flatMap((p) => p.match(PEM_CERT) ?? []);
    if (blocks.length === 0) bad("cert_chain holds no PEM certificate");
    const chain = blocks.map((b, i) => {
      try {
        return new X509Certificate(b);
      } catch (e) {
        return bad(`certificate #${i + 1} does not parse (${(e as Error).message})`);
      }
    });
    const leaf = chain[0]!;
    if (!leaf.publicKey.export({ type: "spki", format: "der" }).equals(spki))
      bad("the leaf does not hold our public key");
    if (leaf.ca) bad("the leaf is a CA certificate");
    let uris: string[] = [];
    try {
      uris = certificateFields(leaf.raw).uris;
    } catch (e) {
      bad(`the leaf's extensions do not parse (${(e as Error).message})`);
    }
    if (uris.length !== 1 || uris[0] !== id) bad(`the leaf's URI SANs are [${uris.join(", ")}], not exactly [${id}]`);
    const now = Date.now();
    const notAfter = Date.parse(leaf.validTo);
    if (!(notAfter > now)) bad(`the leaf expired at ${leaf.validTo}`);
    // Each certificate is signed by the next; the last is a configured root or signed by one.
    for (let i = 0; i + 1 < chain.length; i++) {
      const [c, issuer] = [chain[i]!, chain[i + 1]!];
      if (!issuer.ca) bad(`certificate #${i + 2} (${issuer.subject.replace(/\n/g, ", ")}) is not a CA`);
      if (!c.checkIssued(issuer) || !c.verify(issuer.publicKey))
        bad(`certificate #${i + 1} is not signed by #${i + 2}`);
    }
    const last = chain[chain.length - 1]!;
    if (!this.isRoot(last) && !this.roots.some((r) => last.checkIssued(r) && last.verify(r.publicKey))) {
      bad("the chain does not end at the configured mesh root");
    }
    return chain;
  }

  private isRoot(c: X509Certificate): boolean {
    return this.roots.some((r) => r.fingerprint256 === c.fingerprint256);
  }

  private slot(): Promise<void> {
    if (this.inflight < this.maxConcurrent) {
      this.inflight++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.queue.push(() => {
        this.inflight++;
        resolve();
      }),
    );
  }

  private release(): void {
    this.inflight--;
    this.queue.shift()?.();
  }
}
