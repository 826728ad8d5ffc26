// Certificates for the mesh:
// - ./plugin-ca.ts writes Istio's plug-in CA files with node-forge (RSA root and per-cluster intermediate), like
//   istio/tools/certs; loaded by the commands that write them, a proxy does not hold node-forge's pki code.
// - workload leaves (ECDSA P-256 keys from node:crypto, as ztunnel's CSRs) are written with forge's ASN.1 codec
//   (./der.ts) and signed by the CA key whatever it is (RSA or EC P-256), so CA directories made by openssl or
//   Istio's Makefile load as well.

import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { IdentityError, type Identity } from "./identity.js";
import { CaError } from "../errors.js";
import type * as PluginCa from "./plugin-ca.js";
import { certificateFields, leafCertificate, toPem, type CertificateFields } from "./der.js";

export interface WorkloadCertificate {
  identity: Identity;
  /** PKCS#8 PEM. */
  keyPem: string;
  /** Leaf first, then intermediate(s) (not the root). */
  certChainPem: string;
  /** Trust anchors (root-cert.pem content). */
  rootsPem: string;
  notBefore: Date;
  notAfter: Date;
}

export const DAY_MS = 24 * 3600 * 1000;
// 2048-bit RSA keys, as istiod's self-signed CA (CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE).
export const RSA_BITS = 2048;

/** Writes Istio's plug-in CA layout (./plugin-ca.ts, node-forge loaded on first use). */
export async function createPluginCa(opts: Parameters<typeof PluginCa.createPluginCa>[0]): Promise<void> {
  return (await import("./plugin-ca.js")).createPluginCa(opts);
}

/** A positive DER INTEGER of 16 bytes with no leading zero byte (OpenSSL rejects non-minimal encodings). */
export function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// Issuing workload certificates (node:crypto keys and signatures, ./der.ts structures)

export async function readCaFile(dir: string, name: string): Promise<string>;
export async function readCaFile(dir: string, name: string, optional: true): Promise<string | undefined>;
export async function readCaFile(dir: string, name: string, optional = false): Promise<string | undefined> {
  try {
    return await readFile(join(dir, name), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (optional && code === "ENOENT") return undefined;
    throw new CaError(
      `${join(dir, name)}: ${code === "ENOENT" ? "missing" : `cannot read (${code ?? (err as Error).message})`}`,
    );
  }
}

export function parseKey(dir: string, name: string, pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new CaError(`${join(dir, name)}: not a usable private key (${(err as Error).message})`);
  }
}

function parseCerts(dir: string, name: string, text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new CaError(`${join(dir, name)}: no PEM certificate`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new CaError(`${join(dir, name)}: certificate #${i + 1} is invalid (${(err as Error).message})`);
    }
  });
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: "spki", format: "der" });
}

function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** The certificates from `ca` up to (not including) a root, or undefined when it does not chain to one. */
function pathToRoot(
  ca: X509Certificate,
  pool: X509Certificate[],
  roots: X509Certificate[],
): X509Certificate[] | undefined {
  const isRoot = (c: X509Certificate) => roots.some((r) => r.fingerprint256 === c.fingerprint256);
  const path: X509Certificate[] = [];
  let cur = ca;
  while (!isRoot(cur)) {
    path.push(cur);
    if (roots.some((r) => issued(r, cur))) return path;
    const next = pool.find((c) => !path.some((p) => p.fingerprint256 === c.fingerprint256) && issued(c, cur));
    if (!next) return undefined;
    cur = next;
  }
  return path;
}

const generateKeys = promisify(generateKeyPair);

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

export class CertificateAuthority {
  /** Trust anchors (root-cert.pem), handed to every issued certificate. */
  readonly rootsPem: string;
  /** The trust domain named by the CA certificate's spiffe://<td> URI SAN, if it has one; issue() keeps to it. */
  readonly trustDomain: string | undefined;
  /** The CA certificate's subject (our issuer) and subjectKeyIdentifier (our authorityKeyIdentifier). */
  private readonly caFields: CertificateFields;
  private readonly signingKey: KeyObject;
  /** Intermediates from the CA certificate up to the root, as PEM. */
  private readonly chainPem: string;

  private constructor(caFields: CertificateFields, signingKey: KeyObject, chainPem: string, rootsPem: string) {
    this.caFields = caFields;
    this.signingKey = signingKey;
    this.chainPem = chainPem;
    this.rootsPem = rootsPem;
    const td = this.caFields.uris.find((u) => /^spiffe:\/\/[^/]+\/?$/.test(u));
    this.trustDomain = td?.slice("spiffe://".length).replace(/\/$/, "");
  }

  /** Loads ca-cert.pem, ca-key.pem, root-cert.pem and (optional) cert-chain.pem from an Istio plug-in CA dir. */
  static async load(dir: string): Promise<CertificateAuthority> {
    const [caPem, keyPem, rootPem, chainText] = await Promise.all([
      readCaFile(dir, "ca-cert.pem"),
      readCaFile(dir, "ca-key.pem"),
      readCaFile(dir, "root-cert.pem"),
      readCaFile(dir, "cert-chain.pem", true),
    ]);
    // Certificates after the first in ca-cert.pem may help build the path, like those of cert-chain.pem.
    const [ca, ...caRest] = parseCerts(dir, "ca-cert.pem", caPem);
    const roots = parseCerts(dir, "root-cert.pem", rootPem);
    const pool = [...caRest, ...(chainText ? parseCerts(dir, "cert-chain.pem", chainText) : [])];
    const key = parseKey(dir, "ca-key.pem", keyPem);

    if (!ca.ca)
      throw new CaError(`${join(dir, "ca-cert.pem")}: not a CA certificate (basicConstraints CA:TRUE missing)`);
    if (!spki(createPublicKey(key)).equals(spki(ca.publicKey))) {
      throw new CaError(`${join(dir, "ca-key.pem")}: does not match the public key of ca-cert.pem`);
    }
    const now = Date.now();
    if (now < Date.parse(ca.validFrom) || now > Date.parse(ca.validTo)) {
      throw new CaError(`${join(dir, "ca-cert.pem")}: not valid now (${ca.validFrom} .. ${ca.validTo})`);
    }
    const path = pathToRoot(ca, pool, roots);
    if (!path)
      throw new CaError(`${join(dir, "ca-cert.pem")}: does not chain to root-cert.pem (through cert-chain.pem)`);

    const details = key.asymmetricKeyDetails;
    if (!(
      key.asymmetricKeyType === "rsa" ||
      (key.asymmetricKeyType === "ec" && details?.namedCurve === "prime256v1")
    )) {
      const what = key.asymmetricKeyType === "ec" ? `EC ${details?.namedCurve}` : key.asymmetricKeyType;
      throw new CaError(`${join(dir, "ca-key.pem")}: unsupported key type ${what} (RSA or EC P-256)`);
    }
    let fields: CertificateFields;
    try {
      fields = certificateFields(ca.raw);
    } catch (err) {
      throw new CaError(
        `${join(dir, "ca-cert.pem")}: cannot read its subject and extensions (${(err as Error).message})`,
      );
    }
    return new CertificateAuthority(
      fields,
      key,
      path.map((c) => c.toString()).join(""),
      roots.map((c) => c.toString()).join(""),
    );
  }

  /** Issues a workload certificate: URI SAN only, empty subject, ECDSA P-256 key unless keyType "rsa", 24 h. */
  async issue(
    identity: Identity,
    opts: { validityMs?: number; notBefore?: Date; notAfter?: Date; keyType?: "ec" | "rsa" } = {},
  ): Promise<WorkloadCertificate> {
    if (this.trustDomain !== undefined && identity.trustDomain !== this.trustDomain) {
      throw new IdentityError(`this CA issues for trust domain ${this.trustDomain}, not ${identity}`);
    }
    // X.509 times have whole seconds: round here so the check below sees what peers will see.
    const start = opts.notBefore ?? new Date();
    const notBefore = wholeSeconds(start);
    const notAfter = wholeSeconds(opts.notAfter ?? new Date(start.getTime() + (opts.validityMs ?? DAY_MS)));
    if (notAfter <= notBefore) {
      throw new CaError(
        `empty validity: ${notBefore.toISOString()} .. ${notAfter.toISOString()} (whole seconds)`,
        "HBONE_CA_BAD_REQUEST",
      );
    }

    const keys =
      opts.keyType === "rsa"
        ? await generateKeys("rsa", { modulusLength: RSA_BITS })
        : await generateKeys("ec", { namedCurve: "prime256v1" });
    const leaf = leafCertificate(
      {
        serial: serial(),
        issuer: this.caFields.subject,
        notBefore,
        notAfter,
        spki: spki(keys.publicKey),
        authorityKeyId: this.caFields.subjectKeyId,
        uri: identity.toString(),
      },
      this.signingKey,
    );
    return {
      identity,
      keyPem: keys.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
      certChainPem: toPem("CERTIFICATE", leaf) + this.chainPem,
      rootsPem: this.rootsPem,
      notBefore,
      notAfter,
    };
  }
}
