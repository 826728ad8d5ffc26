// Certificates for the mesh:
// - node-forge writes Istio's plug-in CA files (RSA root and per-cluster intermediate), like istio/tools/certs.
// - workload leaves (ECDSA P-256 keys from node:crypto, as ztunnel's CSRs) are written with forge's ASN.1 codec
//   (./der.ts) and signed by the CA key whatever it is (RSA or EC P-256), so CA directories made by openssl or
//   Istio's Makefile load as well.

import forge from "node-forge";
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkTrustDomain, IdentityError, type Identity } from "./identity.js";
import { CaError } from "../errors.js";
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

const DAY_MS = 24 * 3600 * 1000;
// Istio's tools/certs Makefile: root 10 years, intermediates 2 years. 2048-bit keys as istiod's self-signed CA
// (CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE).
const ROOT_DAYS = 3650;
const INTERMEDIATE_DAYS = 730;
const RSA_BITS = 2048;

// ---------------------------------------------------------------------------------------------------------
// Plug-in CA files (node-forge)

const { pki } = forge;

interface ForgeRoot {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  /** root-cert.pem as written (a reused root keeps its file, bundles included). */
  pem: string;
}

/** node-forge writes CRLF; PEM files from openssl (and Istio's tools) use LF. */
function lf(pem: string): string {
  return pem.replace(/\r\n/g, "\n");
}

function forgeKeyPair(): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) =>
    pki.rsa.generateKeyPair({ bits: RSA_BITS }, (err, keys) => (err ? reject(err) : resolve(keys))),
  );
}

/** A positive DER INTEGER of 16 bytes with no leading zero byte (OpenSSL rejects non-minimal encodings). */
function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}

function forgeCert(
  publicKey: forge.pki.rsa.PublicKey,
  subject: forge.pki.CertificateField[],
  days: number,
): forge.pki.Certificate {
  const cert = pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial().toString("hex");
  // Backdated a minute so a peer with a slightly slow clock accepts a fresh CA.
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * DAY_MS);
  cert.setSubject(subject);
  return cert;
}

async function newRoot(): Promise<ForgeRoot & { keyPem: string }> {
  const keys = await forgeKeyPair();
  const cert = forgeCert(
    keys.publicKey,
    [
      { name: "organizationName", value: "Istio" },
      { name: "commonName", value: "Root CA" },
    ],
    ROOT_DAYS,
  );
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return {
    cert,
    key: keys.privateKey,
    pem: lf(pki.certificateToPem(cert)),
    keyPem: lf(pki.privateKeyToPem(keys.privateKey)),
  };
}

/** Reads root-cert.pem + root-key.pem; the root signing the intermediate is the certificate matching the key. */
async function loadRoot(rootDir: string): Promise<ForgeRoot> {
  const pem = await readCaFile(rootDir, "root-cert.pem");
  const keyObject = parseKey(rootDir, "root-key.pem", await readCaFile(rootDir, "root-key.pem"));
  if (keyObject.asymmetricKeyType !== "rsa") {
    throw new CaError(
      `${join(rootDir, "root-key.pem")}: a reused root must have an RSA key (got ${keyObject.asymmetricKeyType})`,
    );
  }
  const key = pki.privateKeyFromPem(
    keyObject.export({ type: "pkcs1", format: "pem" }) as string,
  ) as forge.pki.rsa.PrivateKey;
  for (const block of forge.pem.decode(pem)) {
    if (block.type !== "CERTIFICATE") continue;
    let cert: forge.pki.Certificate;
    try {
      cert = pki.certificateFromAsn1(forge.asn1.fromDer(block.body));
    } catch {
      continue; // not RSA: node-forge cannot read it, and it cannot match an RSA key anyway
    }
    if ((cert.publicKey as forge.pki.rsa.PublicKey).n.equals(key.n)) return { cert, key, pem };
  }
  throw new CaError(`${join(rootDir, "root-cert.pem")}: no certificate matches root-key.pem`);
}

/** Writes Istio's plug-in CA layout with node-forge (RSA): root-cert.pem, ca-cert.pem + ca-key.pem (an intermediate
 *  for that cluster, signed by the root), cert-chain.pem (intermediate then root). With rootDir, reuses the root cert+key
 *  found there (root-cert.pem + root-key.pem) so clusters share trust; without, creates a root and also writes root-key.pem. */
export async function createPluginCa(opts: {
  outDir: string;
  trustDomain: string;
  cluster?: string;
  rootDir?: string;
}): Promise<void> {
  checkTrustDomain(opts.trustDomain);
  const files = new Map<string, string>();
  let root: ForgeRoot;
  if (opts.rootDir) {
    root = await loadRoot(opts.rootDir);
  } else {
    const created = await newRoot();
    root = created;
    files.set("root-key.pem", created.keyPem);
  }

  const keys = await forgeKeyPair();
  const subject: forge.pki.CertificateField[] = [
    { name: "organizationName", value: "Istio" },
    { name: "commonName", value: "Intermediate CA" },
  ];
  if (opts.cluster) subject.push({ name: "localityName", value: opts.cluster });
  const cert = forgeCert(keys.publicKey, subject, INTERMEDIATE_DAYS);
  cert.setIssuer(root.cert.subject.attributes);
  const rootSki = root.cert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | undefined;
  cert.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
    // Must equal the root's own SKI, or chain building by key identifier fails.
    ...(rootSki?.subjectKeyIdentifier
      ? [{ name: "authorityKeyIdentifier", keyIdentifier: forge.util.hexToBytes(rootSki.subjectKeyIdentifier) }]
      : []),
    // The SPIFFE X.509-SVID form of a signing certificate: the trust domain it issues for.
    { name: "subjectAltName", altNames: [{ type: 6, value: `spiffe://${opts.trustDomain}` }] },
  ]);
  cert.sign(root.key, forge.md.sha256.create());

  const caCertPem = lf(pki.certificateToPem(cert));
  files.set("root-cert.pem", root.pem);
  files.set("ca-cert.pem", caCertPem);
  files.set("ca-key.pem", lf(pki.privateKeyToPem(keys.privateKey)));
  files.set("cert-chain.pem", caCertPem + lf(pki.certificateToPem(root.cert)));

  await mkdir(opts.outDir, { recursive: true });
  // Never replace a CA in use: refuse if any file exists with other content (before writing anything).
  for (const [name, text] of files) {
    const existing = await readFile(join(opts.outDir, name), "utf8").catch(() => undefined);
    if (existing !== undefined && existing !== text)
      throw new CaError(`${join(opts.outDir, name)} already exists`, "HBONE_CA_EXISTS");
  }
  for (const [name, text] of files) {
    await writeFile(join(opts.outDir, name), text, { mode: name.endsWith("-key.pem") ? 0o600 : 0o644 });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Issuing workload certificates (node:crypto keys and signatures, ./der.ts structures)

async function readCaFile(dir: string, name: string): Promise<string>;
async function readCaFile(dir: string, name: string, optional: true): Promise<string | undefined>;
async function readCaFile(dir: string, name: string, optional = false): Promise<string | undefined> {
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

function parseKey(dir: string, name: string, pem: string): KeyObject {
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
