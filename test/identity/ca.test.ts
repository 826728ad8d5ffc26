// The plug-in CA files (createPluginCa, `hbone certs`) and workload certificates issued from CA directories made
// by createPluginCa and by openssl (RSA PKCS#1, EC SEC1 and PKCS#8 keys). Chains are checked with openssl verify
// and Node's X509Certificate, both independent of the code under test.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { CertificateAuthority, createPluginCa, type WorkloadCertificate } from "../../host/identity/ca.js";
import { certsCommand } from "../../host/identity/certs-command.js";
import { Identity, IdentityError } from "../../host/identity/identity.js";
import { OPENSSL, requireSystem } from "../helpers/system.js";

// Every group checks chains with the openssl CLI or reads openssl-made CA dirs.
const HAVE_OPENSSL = requireSystem(OPENSSL);

const ID = Identity.parse("spiffe://cluster.local/ns/test/sa/workload");
const DAY = 24 * 3600 * 1000;

let tmp: string;
const path = (...p: string[]) => join(tmp, ...p);

function openssl(...args: string[]): string {
  return execFileSync("openssl", args, { stdio: "pipe", encoding: "utf8" });
}

function pemCerts(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (b) => new X509Certificate(b),
  );
}

const OPENSSL_CONF = `[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[mid]
basicConstraints = critical, CA:TRUE, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

/** openssl key generation commands by kind. */
const KEYGEN: Record<string, string[]> = {
  "rsa-pkcs1": ["genrsa", "-traditional", "2048"],
  "ec-sec1": ["ecparam", "-name", "prime256v1", "-genkey"], // with an EC PARAMETERS block first
  "ec-pkcs8": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
  "ec-p384": ["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
};

function keygen(kind: string, out: string): void {
  writeFileSync(out, openssl(...KEYGEN[kind]));
}

/** An openssl root: root-cert.pem + root-key.pem in dir. */
function opensslRoot(dir: string, keyKind: string): void {
  mkdirSync(dir, { recursive: true });
  keygen(keyKind, join(dir, "root-key.pem"));
  openssl(
    "req",
    "-x509",
    "-new",
    "-key",
    join(dir, "root-key.pem"),
    "-subj",
    `/O=OpenSSL Test/CN=Root ${keyKind}`,
    "-days",
    "30",
    "-config",
    path("openssl.cnf"),
    "-extensions",
    "root",
    "-out",
    join(dir, "root-cert.pem"),
  );
}

/** An openssl CA dir: an intermediate with a `keyKind` key signed by the CA in issuerDir (its root-cert.pem +
 *  root-key.pem), or the intermediate in opts.issuerDir, trusting rootDir's root. */
function opensslCaDir(
  dir: string,
  rootDir: string,
  keyKind: string,
  opts: { chain?: boolean; issuerDir?: string; section?: string } = {},
): void {
  mkdirSync(dir, { recursive: true });
  const [issuerCert, issuerKey] = opts.issuerDir
    ? [join(opts.issuerDir, "ca-cert.pem"), join(opts.issuerDir, "ca-key.pem")]
    : [join(rootDir, "root-cert.pem"), join(rootDir, "root-key.pem")];
  keygen(keyKind, join(dir, "ca-key.pem"));
  openssl(
    "req",
    "-new",
    "-key",
    join(dir, "ca-key.pem"),
    "-subj",
    `/O=OpenSSL Test/CN=${basename(dir)}`,
    "-config",
    path("openssl.cnf"),
    "-out",
    join(dir, "ca.csr"),
  );
  openssl(
    "x509",
    "-req",
    "-in",
    join(dir, "ca.csr"),
    "-CA",
    issuerCert,
    "-CAkey",
    issuerKey,
    "-set_serial",
    `0x${randomBytes(8).toString("hex")}`,
    "-days",
    "30",
    "-extfile",
    path("openssl.cnf"),
    "-extensions",
    opts.section ?? "intermediate",
    "-out",
    join(dir, "ca-cert.pem"),
  );
  copyFileSync(join(rootDir, "root-cert.pem"), join(dir, "root-cert.pem"));
  if (opts.chain) {
    writeFileSync(
      join(dir, "cert-chain.pem"),
      readFileSync(join(dir, "ca-cert.pem"), "utf8") + readFileSync(join(dir, "root-cert.pem"), "utf8"),
    );
  }
}

/** Checks a workload certificate: URI SAN only, ECDSA P-256, `intermediates` certs after the leaf, chain verified by
 *  openssl (as TLS server and client) and by Node up to the roots, 24 h validity. */
function checkLeaf(cert: WorkloadCertificate, intermediates: number, validityMs = DAY): void {
  const chain = pemCerts(cert.certChainPem);
  const roots = pemCerts(cert.rootsPem);
  expect(chain).toHaveLength(1 + intermediates);
  const leaf = chain[0];
  expect(leaf.subjectAltName).toBe(`URI:${ID}`);
  expect(leaf.subject ?? "").toBe(""); // Node reports an empty subject as undefined
  expect(leaf.ca).toBe(false);
  expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  expect(leaf.publicKey.asymmetricKeyType).toBe("ec");
  expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  // The key is PKCS#8 and belongs to the leaf.
  expect(cert.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: "spki", format: "der" });
  expect(spki(createPublicKey(createPrivateKey(cert.keyPem))).equals(spki(leaf.publicKey))).toBe(true);
  // The root is not in the chain; each certificate is signed by the next, the last by a root.
  for (const c of chain) expect(roots.some((r) => r.fingerprint256 === c.fingerprint256)).toBe(false);
  for (let i = 0; i < chain.length; i++) {
    const issuer = i + 1 < chain.length ? chain[i + 1] : roots.find((r) => chain[i].checkIssued(r));
    expect(issuer, `issuer of certificate #${i}`).toBeDefined();
    expect(chain[i].verify(issuer!.publicKey)).toBe(true);
  }
  const d = mkdtempSync(path("verify-"));
  writeFileSync(join(d, "leaf.pem"), leaf.toString());
  writeFileSync(join(d, "untrusted.pem"), chain.slice(1).map(String).join("") || leaf.toString());
  writeFileSync(join(d, "roots.pem"), cert.rootsPem);
  for (const purpose of ["sslserver", "sslclient"]) {
    const out = openssl(
      "verify",
      "-purpose",
      purpose,
      "-CAfile",
      join(d, "roots.pem"),
      "-untrusted",
      join(d, "untrusted.pem"),
      join(d, "leaf.pem"),
    );
    expect(out.trim()).toBe(`${join(d, "leaf.pem")}: OK`);
  }
  // Validity as encoded, in whole seconds.
  expect(cert.notBefore.getTime()).toBe(Date.parse(leaf.validFrom));
  expect(cert.notAfter.getTime()).toBe(Date.parse(leaf.validTo));
  expect(Math.abs(cert.notBefore.getTime() - Date.now())).toBeLessThan(5_000);
  expect(Math.abs(cert.notAfter.getTime() - cert.notBefore.getTime() - validityMs)).toBeLessThanOrEqual(1_000);
}

beforeAll(async () => {
  if (!HAVE_OPENSSL) return;
  tmp = mkdtempSync(join(tmpdir(), "hbone-ca-"));
  writeFileSync(path("openssl.cnf"), OPENSSL_CONF);
  await createPluginCa({ outDir: path("c1"), trustDomain: "cluster.local", cluster: "c1" });
  opensslRoot(path("ossl-rsa-root"), "rsa-pkcs1");
  opensslRoot(path("ossl-ec-root"), "ec-pkcs8");
  opensslCaDir(path("ossl-rsa-pkcs1"), path("ossl-rsa-root"), "rsa-pkcs1", { chain: true });
  opensslCaDir(path("ossl-ec-sec1"), path("ossl-rsa-root"), "ec-sec1");
  opensslCaDir(path("ossl-ec-pkcs8"), path("ossl-ec-root"), "ec-pkcs8", { chain: true });
  // Root -> mid -> CA, with the mid certificate after the CA's in ca-cert.pem and no cert-chain.pem.
  opensslCaDir(path("ossl-mid"), path("ossl-ec-root"), "ec-pkcs8", { section: "mid" });
  opensslCaDir(path("ossl-two-level"), path("ossl-ec-root"), "ec-pkcs8", { issuerDir: path("ossl-mid") });
  writeFileSync(
    path("ossl-two-level", "ca-cert.pem"),
    readFileSync(path("ossl-two-level", "ca-cert.pem"), "utf8") + readFileSync(path("ossl-mid", "ca-cert.pem"), "utf8"),
  );
  // A root used directly as the CA (Istio allows ca-cert.pem == root-cert.pem).
  mkdirSync(path("ossl-root-as-ca"));
  copyFileSync(path("ossl-ec-root", "root-cert.pem"), path("ossl-root-as-ca", "ca-cert.pem"));
  copyFileSync(path("ossl-ec-root", "root-key.pem"), path("ossl-root-as-ca", "ca-key.pem"));
  copyFileSync(path("ossl-ec-root", "root-cert.pem"), path("ossl-root-as-ca", "root-cert.pem"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!HAVE_OPENSSL)("createPluginCa", () => {
  it("writes Istio's plug-in CA layout with an intermediate signed by the root", () => {
    for (const f of ["root-cert.pem", "root-key.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"]) {
      expect(existsSync(path("c1", f)), f).toBe(true);
    }
    expect(statSync(path("c1", "ca-key.pem")).mode & 0o777).toBe(0o600);
    expect(statSync(path("c1", "root-key.pem")).mode & 0o777).toBe(0o600);
    const [root] = pemCerts(readFileSync(path("c1", "root-cert.pem"), "utf8"));
    const [ca] = pemCerts(readFileSync(path("c1", "ca-cert.pem"), "utf8"));
    expect(root.checkIssued(root) && root.verify(root.publicKey)).toBe(true);
    expect(root.ca).toBe(true);
    expect(ca.checkIssued(root)).toBe(true);
    expect(ca.verify(root.publicKey)).toBe(true);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toContain("L=c1");
    expect(ca.subjectAltName).toBe("URI:spiffe://cluster.local");
    expect(ca.publicKey.asymmetricKeyType).toBe("rsa");
    const out = openssl("verify", "-CAfile", path("c1", "root-cert.pem"), path("c1", "ca-cert.pem"));
    expect(out.trim()).toBe(`${path("c1", "ca-cert.pem")}: OK`);
    // pathlen:0: the intermediate signs only leaves.
    expect(openssl("x509", "-in", path("c1", "ca-cert.pem"), "-noout", "-ext", "basicConstraints")).toMatch(
      /CA:TRUE, pathlen:0/,
    );
    const chain = pemCerts(readFileSync(path("c1", "cert-chain.pem"), "utf8")).map((c) => c.fingerprint256);
    expect(chain).toEqual([ca.fingerprint256, root.fingerprint256]);
  });

  it("shares the root with a second cluster (rootDir) without copying the root key", async () => {
    await createPluginCa({ outDir: path("c2"), trustDomain: "cluster.local", cluster: "c2", rootDir: path("c1") });
    expect(readFileSync(path("c2", "root-cert.pem"), "utf8")).toBe(readFileSync(path("c1", "root-cert.pem"), "utf8"));
    expect(existsSync(path("c2", "root-key.pem"))).toBe(false);
    const [root] = pemCerts(readFileSync(path("c1", "root-cert.pem"), "utf8"));
    const [ca1] = pemCerts(readFileSync(path("c1", "ca-cert.pem"), "utf8"));
    const [ca2] = pemCerts(readFileSync(path("c2", "ca-cert.pem"), "utf8"));
    expect(ca2.fingerprint256).not.toBe(ca1.fingerprint256);
    expect(ca2.subject).toContain("L=c2");
    expect(ca2.checkIssued(root) && ca2.verify(root.publicKey)).toBe(true);
    expect(pemCerts(readFileSync(path("c2", "cert-chain.pem"), "utf8")).map((c) => c.fingerprint256)).toEqual([
      ca2.fingerprint256,
      root.fingerprint256,
    ]);
    // A leaf of cluster 2 verifies against cluster 1's roots.
    const leaf = await (await CertificateAuthority.load(path("c2"))).issue(ID);
    expect(leaf.rootsPem).toBe(readFileSync(path("c1", "root-cert.pem"), "utf8"));
    checkLeaf(leaf, 1);
  });

  it("refuses to replace an existing CA and reports a bad root dir or trust domain", async () => {
    const before = readFileSync(path("c1", "ca-key.pem"), "utf8");
    await expect(createPluginCa({ outDir: path("c1"), trustDomain: "cluster.local" })).rejects.toThrow(
      /already exists/,
    );
    expect(readFileSync(path("c1", "ca-key.pem"), "utf8")).toBe(before);
    await expect(
      createPluginCa({ outDir: path("x1"), trustDomain: "cluster.local", rootDir: path("c2") }),
    ).rejects.toThrow(/root-key\.pem: missing/);
    await expect(
      createPluginCa({ outDir: path("x2"), trustDomain: "cluster.local", rootDir: path("ossl-ec-root") }),
    ).rejects.toThrow(/root-key\.pem: a reused root must have an RSA key/);
    await expect(createPluginCa({ outDir: path("x3"), trustDomain: "Not A Domain" })).rejects.toThrow(IdentityError);
    await expect(createPluginCa({ outDir: path("x4"), trustDomain: "" })).rejects.toThrow(IdentityError);
  });

  it("reuses an openssl RSA root", async () => {
    await createPluginCa({ outDir: path("c-ossl"), trustDomain: "cluster.local", rootDir: path("ossl-rsa-root") });
    const [root] = pemCerts(readFileSync(path("ossl-rsa-root", "root-cert.pem"), "utf8"));
    const [ca] = pemCerts(readFileSync(path("c-ossl", "ca-cert.pem"), "utf8"));
    expect(ca.checkIssued(root) && ca.verify(root.publicKey)).toBe(true);
    checkLeaf(await (await CertificateAuthority.load(path("c-ossl"))).issue(ID), 1);
  });
});

describe.skipIf(!HAVE_OPENSSL)("CertificateAuthority", () => {
  it.each([
    ["createPluginCa (forge, RSA PKCS#1 key)", "c1", 1],
    ["openssl RSA PKCS#1 key with cert-chain.pem", "ossl-rsa-pkcs1", 1],
    ["openssl EC SEC1 key, no cert-chain.pem", "ossl-ec-sec1", 1],
    ["openssl EC PKCS#8 key under an EC root", "ossl-ec-pkcs8", 1],
    ["openssl root used directly as the CA", "ossl-root-as-ca", 0],
    ["openssl two-level intermediates in ca-cert.pem", "ossl-two-level", 2],
  ])("issues from %s", async (_what, dir, intermediates) => {
    const ca = await CertificateAuthority.load(path(dir));
    expect(ca.rootsPem).toBe(
      pemCerts(readFileSync(path(dir, "root-cert.pem"), "utf8"))
        .map(String)
        .join(""),
    );
    const cert = await ca.issue(ID);
    expect(cert.identity).toBe(ID);
    checkLeaf(cert, intermediates);
    // Each issue is a fresh key and serial.
    const again = await ca.issue(ID);
    expect(again.keyPem).not.toBe(cert.keyPem);
    expect(pemCerts(again.certChainPem)[0].serialNumber).not.toBe(pemCerts(cert.certChainPem)[0].serialNumber);
  });

  it("honours validity options and an RSA leaf key", async () => {
    const ca = await CertificateAuthority.load(path("ossl-ec-sec1"));
    checkLeaf(await ca.issue(ID, { validityMs: 2_000 }), 1, 2_000);
    const notBefore = new Date("2020-01-01T00:00:00Z");
    const notAfter = new Date("2020-01-02T00:00:00Z");
    const old = await ca.issue(ID, { notBefore, notAfter });
    expect([old.notBefore, old.notAfter]).toEqual([notBefore, notAfter]);
    // openssl agrees that it has expired.
    const r = spawnSync(
      "openssl",
      ["verify", "-CAfile", path("ossl-ec-sec1", "root-cert.pem"), "-untrusted", path("ossl-ec-sec1", "ca-cert.pem")],
      { input: pemCerts(old.certChainPem)[0].toString(), encoding: "utf8" },
    );
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/certificate has expired/);
    // From 2050 on, X.509 times are GeneralizedTime (RFC 5280 §4.1.2.5): Node and openssl read the same instant.
    const far = await ca.issue(ID, {
      notBefore: new Date("2049-12-31T23:59:59Z"),
      notAfter: new Date("2051-06-01T12:00:00Z"),
    });
    const farLeaf = pemCerts(far.certChainPem)[0];
    expect([Date.parse(farLeaf.validFrom), Date.parse(farLeaf.validTo)]).toEqual([
      far.notBefore.getTime(),
      far.notAfter.getTime(),
    ]);
    const dates = spawnSync("openssl", ["x509", "-noout", "-startdate", "-enddate"], {
      input: farLeaf.toString(),
      encoding: "utf8",
    });
    expect(dates.stdout).toBe("notBefore=Dec 31 23:59:59 2049 GMT\nnotAfter=Jun  1 12:00:00 2051 GMT\n");
    await expect(ca.issue(ID, { notBefore: notAfter, notAfter: notBefore })).rejects.toThrow(/empty validity/);
    await expect(ca.issue(ID, { validityMs: 400, notBefore: new Date("2030-01-01T00:00:00.100Z") })).rejects.toThrow(
      /empty validity/,
    );
  });

  it("issues RSA leaves on request", async () => {
    const ca = await CertificateAuthority.load(path("c1"));
    const cert = await ca.issue(ID, { keyType: "rsa" });
    const leaf = pemCerts(cert.certChainPem)[0];
    expect(leaf.publicKey.asymmetricKeyType).toBe("rsa");
    expect(leaf.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(leaf.verify(pemCerts(cert.certChainPem)[1].publicKey)).toBe(true);
    expect(() => createPrivateKey(cert.keyPem)).not.toThrow();
  });

  it("keeps to the trust domain named by its CA certificate", async () => {
    const ca = await CertificateAuthority.load(path("c1"));
    expect(ca.trustDomain).toBe("cluster.local");
    await expect(ca.issue(Identity.parse("spiffe://other.local/ns/a/sa/b"))).rejects.toThrow(IdentityError);
    // openssl CAs name no trust domain and issue for any.
    const open = await CertificateAuthority.load(path("ossl-rsa-pkcs1"));
    expect(open.trustDomain).toBeUndefined();
    expect((await open.issue(Identity.parse("spiffe://other.local/ns/a/sa/b"))).identity.trustDomain).toBe(
      "other.local",
    );
  });

  describe("load errors name the file", () => {
    /** A copy of a CA dir with some files replaced (undefined = removed). */
    const variant = (name: string, from: string, files: Record<string, string | undefined>) => {
      const d = path("bad", name);
      mkdirSync(d, { recursive: true });
      for (const f of ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"]) {
        if (existsSync(path(from, f))) copyFileSync(path(from, f), join(d, f));
      }
      for (const [f, text] of Object.entries(files)) {
        if (text === undefined) rmSync(join(d, f));
        else writeFileSync(join(d, f), text);
      }
      return d;
    };
    const read = (...p: string[]) => readFileSync(path(...p), "utf8");

    it.each([
      ["a missing ca-key.pem", () => variant("nokey", "c1", { "ca-key.pem": undefined }), /ca-key\.pem: missing/],
      [
        "a missing root-cert.pem",
        () => variant("noroot", "c1", { "root-cert.pem": undefined }),
        /root-cert\.pem: missing/,
      ],
      [
        "a garbage key",
        () => variant("garbage", "c1", { "ca-key.pem": "not a key\n" }),
        /ca-key\.pem: not a usable private key/,
      ],
      [
        "no certificate in root-cert.pem",
        () => variant("emptyroot", "c1", { "root-cert.pem": "\n" }),
        /root-cert\.pem: no PEM certificate/,
      ],
      [
        "a corrupt certificate",
        () =>
          variant("corrupt", "c1", {
            "ca-cert.pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
          }),
        /ca-cert\.pem: certificate #1 is invalid/,
      ],
      [
        "a key of another CA",
        () => variant("mismatch", "ossl-ec-sec1", { "ca-key.pem": read("ossl-ec-pkcs8", "ca-key.pem") }),
        /ca-key\.pem: does not match the public key of ca-cert\.pem/,
      ],
      [
        "a root that did not sign the CA",
        () => variant("otherroot", "ossl-ec-sec1", { "root-cert.pem": read("c1", "root-cert.pem") }),
        /ca-cert\.pem: does not chain to root-cert\.pem/,
      ],
      [
        "an encrypted key",
        () =>
          variant("encrypted", "ossl-ec-sec1", {
            "ca-key.pem": openssl(
              "pkcs8",
              "-topk8",
              "-in",
              path("ossl-ec-sec1", "ca-key.pem"),
              "-passout",
              "pass:secret",
            ),
          }),
        /ca-key\.pem: not a usable private key/,
      ],
    ])("%s", async (_what, make, message) => {
      await expect(CertificateAuthority.load(make())).rejects.toThrow(message);
    });

    it("a leaf certificate as the CA", async () => {
      const leaf = await (await CertificateAuthority.load(path("c1"))).issue(ID);
      const d = variant("leaf", "c1", { "ca-cert.pem": leaf.certChainPem, "ca-key.pem": leaf.keyPem });
      await expect(CertificateAuthority.load(d)).rejects.toThrow(/ca-cert\.pem: not a CA certificate/);
    });

    it("an unsupported key type", async () => {
      const d = path("bad", "p384");
      opensslRoot(d, "ec-p384");
      copyFileSync(join(d, "root-cert.pem"), join(d, "ca-cert.pem"));
      copyFileSync(join(d, "root-key.pem"), join(d, "ca-key.pem"));
      await expect(CertificateAuthority.load(d)).rejects.toThrow(/ca-key\.pem: unsupported key type EC secp384r1/);
    });
  });
});

describe.skipIf(!HAVE_OPENSSL)("hbone certs", () => {
  /** Runs the command, capturing what it prints. */
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const [ow, ew] = [process.stdout.write, process.stderr.write];
    process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
    process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
    try {
      return { code: await certsCommand(args), out, err };
    } finally {
      [process.stdout.write, process.stderr.write] = [ow, ew];
    }
  }

  it("writes a CA dir, then a second cluster sharing its root", async () => {
    const r1 = await run(["--out", path("cli1"), "--trust-domain", "cluster.local", "--cluster", "east"]);
    expect(r1).toMatchObject({ code: 0, err: "" });
    for (const f of ["root-key.pem", "root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"]) {
      expect(r1.out).toContain(`wrote ${path("cli1", f)}\n`);
    }
    const r2 = await run([
      "--out",
      path("cli2"),
      "--trust-domain",
      "cluster.local",
      "--cluster",
      "west",
      "--root",
      path("cli1"),
    ]);
    expect(r2).toMatchObject({ code: 0, err: "" });
    expect(r2.out).not.toContain("root-key.pem");
    expect(existsSync(path("cli2", "root-key.pem"))).toBe(false);
    const ca = await CertificateAuthority.load(path("cli2"));
    expect(ca.rootsPem).toBe(readFileSync(path("cli1", "root-cert.pem"), "utf8"));
    expect(pemCerts(readFileSync(path("cli2", "ca-cert.pem"), "utf8"))[0].subject).toContain("L=west");
  });

  it.each([
    [[], 2, /missing --out and --trust-domain/],
    [["--out", "/tmp/x"], 2, /missing --trust-domain/],
    [["--out", "/tmp/x", "--trust-domain", "cluster.local", "--bogus"], 2, /Unknown option '--bogus'/],
    [["--out", "/tmp/x", "extra", "--trust-domain", "cluster.local"], 2, /positional/],
    [["--out"], 2, /argument missing/],
  ])("rejects %j", async (args, code, message) => {
    const r = await run(args as string[]);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(message);
    expect(r.err).toContain("usage: hbone certs");
  });

  it("reports a failure with exit code 1", async () => {
    const r = await run(["--out", path("cli3"), "--trust-domain", "Bad Domain"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/invalid trust domain "Bad Domain"/);
    const r2 = await run(["--out", path("cli1"), "--trust-domain", "cluster.local"]);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/already exists/);
  });

  it("prints usage on --help", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("usage: hbone certs");
  });
});
