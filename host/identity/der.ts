// The X.509 structures of workload certificates, written and read with node-forge's ASN.1/DER codec (forge.asn1),
// keys and signatures from node:crypto. node-forge's own certificate and CSR code is RSA-only, and a full X.509
// library costs an idle proxy more memory than everything it does for a leaf: a workload leaf (ECDSA P-256, as
// ztunnel's) is one TBSCertificate and one signature, a CSR one CertificationRequestInfo and one signature.

import type forge from "node-forge";
import { sign, type KeyObject } from "node:crypto";
import { createRequire } from "node:module";

// forge's ASN.1 module alone (with its util and OID table): its index loads every cipher, TLS and PKCS#12 too.
const asn1 = createRequire(import.meta.url)("node-forge/lib/asn1") as typeof forge.asn1;
const T = asn1.Type;
const UNIVERSAL = asn1.Class.UNIVERSAL;
const CONTEXT = asn1.Class.CONTEXT_SPECIFIC;

const OID = {
  sha256WithRSAEncryption: "1.2.840.113549.1.1.11",
  ecdsaWithSHA256: "1.2.840.10045.4.3.2",
  extensionRequest: "1.2.840.113549.1.9.14",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  subjectAltName: "2.5.29.17",
} as const;

type Asn1 = forge.asn1.Asn1;

const bin = (b: Uint8Array): string => Buffer.from(b).toString("binary");
const seq = (items: Asn1[]): Asn1 => asn1.create(UNIVERSAL, T.SEQUENCE, true, items);
const oid = (o: string): Asn1 => asn1.create(UNIVERSAL, T.OID, false, asn1.oidToDer(o).getBytes());
const octets = (v: Asn1): Asn1 => asn1.create(UNIVERSAL, T.OCTETSTRING, false, asn1.toDer(v).getBytes());
const bits = (b: Uint8Array): Asn1 => asn1.create(UNIVERSAL, T.BITSTRING, false, "\x00" + bin(b));
const fromDer = (b: Uint8Array | string): Asn1 =>
  // Options object: node-forge reads it (strict DER, BIT STRINGs left as bytes); its typings only know `strict`.
  (asn1.fromDer as unknown as (b: string, o: object) => Asn1)(typeof b === "string" ? b : bin(b), {
    strict: true,
    decodeBitStrings: false,
  });

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END ${label}-----\n`;
}

function toDer(v: Asn1): Buffer {
  return Buffer.from(asn1.toDer(v).getBytes(), "binary");
}

/** One extension: extnID, critical (only when true, as DER wants defaults left out), extnValue. */
function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  return seq([oid(id), ...(critical ? [asn1.create(UNIVERSAL, T.BOOLEAN, false, "\xff")] : []), octets(value)]);
}

/** GeneralNames with one uniformResourceIdentifier [6]. */
function uriNames(uris: string[]): Asn1 {
  return seq(uris.map((u) => asn1.create(CONTEXT, 6, false, Buffer.from(u, "utf8").toString("binary"))));
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
function time(d: Date): Asn1 {
  return d.getUTCFullYear() < 2050
    ? asn1.create(UNIVERSAL, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(UNIVERSAL, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** The signature AlgorithmIdentifier of `key`, SHA-256: RSA PKCS#1 v1.5 (NULL parameters) or ECDSA (none). */
function algorithm(key: KeyObject): Asn1 {
  return key.asymmetricKeyType === "rsa"
    ? seq([oid(OID.sha256WithRSAEncryption), asn1.create(UNIVERSAL, T.NULL, false, "")])
    : seq([oid(OID.ecdsaWithSHA256)]);
}

/** `data`, its AlgorithmIdentifier and its signature by `key` (node:crypto gives EC signatures in DER, as X.509 has them). */
function signed(data: Asn1, key: KeyObject): Asn1 {
  return seq([data, algorithm(key), bits(sign("sha256", toDer(data), key))]);
}

export interface LeafTemplate {
  /** DER INTEGER content (positive, minimal). */
  serial: Buffer;
  /** The issuer's subject Name, DER, as in its certificate. */
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** SubjectPublicKeyInfo, DER. */
  spki: Buffer;
  /** The issuer's subjectKeyIdentifier, repeated as our authorityKeyIdentifier. */
  authorityKeyId?: Buffer;
  uri: string;
}

/** A workload leaf, DER: v3, empty subject, CA:FALSE, digitalSignature + keyEncipherment, serverAuth + clientAuth,
 *  AKI = the issuer's SKI, and the SPIFFE URI as the only (critical, as the subject is empty) SAN. */
export function leafCertificate(t: LeafTemplate, caKey: KeyObject): Buffer {
  const extensions = [
    extension(OID.basicConstraints, true, seq([])),
    // KeyUsage BIT STRING: digitalSignature (bit 0) | keyEncipherment (bit 2) = 0xa0, 5 unused bits.
    extension(OID.keyUsage, true, asn1.create(UNIVERSAL, T.BITSTRING, false, "\x05\xa0")),
    extension(OID.extKeyUsage, false, seq([oid(OID.serverAuth), oid(OID.clientAuth)])),
    ...(t.authorityKeyId
      ? [extension(OID.authorityKeyIdentifier, false, seq([asn1.create(CONTEXT, 0, false, bin(t.authorityKeyId))]))]
      : []),
    extension(OID.subjectAltName, true, uriNames([t.uri])),
  ];
  const tbs = seq([
    asn1.create(CONTEXT, 0, true, [asn1.create(UNIVERSAL, T.INTEGER, false, "\x02")]),
    asn1.create(UNIVERSAL, T.INTEGER, false, bin(t.serial)),
    algorithm(caKey),
    fromDer(t.issuer),
    seq([time(t.notBefore), time(t.notAfter)]),
    seq([]),
    fromDer(t.spki),
    asn1.create(CONTEXT, 3, true, [seq(extensions)]),
  ]);
  return toDer(signed(tbs, caKey));
}

/** A PKCS#10 CSR as ztunnel sends istiod, DER: empty subject, our key, one extensionRequest with the SPIFFE URI as
 *  the critical SAN, signed by that key. */
export function certificationRequest(uri: string, spki: Buffer, key: KeyObject): Buffer {
  const info = seq([
    asn1.create(UNIVERSAL, T.INTEGER, false, "\x00"),
    seq([]),
    fromDer(spki),
    asn1.create(CONTEXT, 0, true, [
      seq([
        oid(OID.extensionRequest),
        asn1.create(UNIVERSAL, T.SET, true, [seq([extension(OID.subjectAltName, true, uriNames([uri]))])]),
      ]),
    ]),
  ]);
  return toDer(signed(info, key));
}

// ---------------------------------------------------------------------------------------------------------
// Reading what a certificate says (node:crypto's X509Certificate has no raw subject, key identifier or exact URIs)

export interface CertificateFields {
  /** The subject Name, DER. */
  subject: Buffer;
  subjectKeyId: Buffer | undefined;
  /** Every uniformResourceIdentifier of the subjectAltName, in order. */
  uris: string[];
}

/** Subject, SKI and SAN URIs of a DER certificate; throws on anything that is not one. */
export function certificateFields(der: Uint8Array): CertificateFields {
  const cert = fromDer(der);
  const tbs = (cert.value as Asn1[])[0];
  if (!tbs || !Array.isArray(tbs.value)) throw new Error("not an X.509 certificate");
  const fields = tbs.value;
  // version [0] is optional: subject is the 5th field after it.
  const at = fields[0]?.tagClass === CONTEXT && fields[0].type === 0 ? 1 : 0;
  const subject = fields[at + 4];
  if (!subject) throw new Error("not an X.509 certificate");
  const out: CertificateFields = { subject: toDer(subject), subjectKeyId: undefined, uris: [] };
  const exts = fields.find((f) => f.tagClass === CONTEXT && f.type === 3);
  for (const ext of ((exts?.value as Asn1[] | undefined)?.[0]?.value as Asn1[] | undefined) ?? []) {
    const parts = ext.value as Asn1[];
    const id = asn1.derToOid(parts[0]!.value as string);
    const value = parts[parts.length - 1]!.value as string;
    if (id === OID.subjectKeyIdentifier) {
      out.subjectKeyId = Buffer.from(fromDer(value).value as string, "binary");
    } else if (id === OID.subjectAltName) {
      for (const name of fromDer(value).value as Asn1[]) {
        if (name.tagClass === CONTEXT && name.type === 6)
          out.uris.push(Buffer.from(name.value as string, "binary").toString("utf8"));
      }
    }
  }
  return out;
}
