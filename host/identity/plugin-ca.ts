// Istio's plug-in CA files, written with node-forge (RSA root and per-cluster intermediate), like istio/tools/certs:
// root-cert.pem, ca-cert.pem + ca-key.pem, cert-chain.pem (and root-key.pem for a new root).

import forge from "node-forge";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkTrustDomain } from "./identity.js";
import { CaError } from "../errors.js";
import { DAY_MS, RSA_BITS, parseKey, readCaFile, serial } from "./ca.js";

// Istio's tools/certs Makefile: root 10 years, intermediates 2 years.
const ROOT_DAYS = 3650;
const INTERMEDIATE_DAYS = 730;

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
