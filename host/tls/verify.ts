// Identity checks on a verified peer certificate (the chain is checked by OpenSSL against the mesh roots first).
// Only URI SANs count; DNS SANs and the subject are ignored, as in ztunnel.

import type tls from "node:tls";
import { Identity } from "../identity/identity.js";

type PeerCert = tls.PeerCertificate | tls.DetailedPeerCertificate;

/** The URI entries of Node's `subjectaltname` string ("DNS:a, URI:b, ..."). Node JSON-quotes any value holding
 *  a comma, quote or control character, so a value can never forge an extra entry. */
function uriSans(san: string | undefined): string[] {
  const out: string[] = [];
  if (!san) return out;
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(":", i);
    if (colon < 0) break;
    const type = san.slice(i, colon);
    let value: string;
    let end: number;
    if (san[colon + 1] === '"') {
      end = colon + 2;
      while (end < san.length && san[end] !== '"') end += san[end] === "\\" ? 2 : 1;
      end++;
      try {
        value = JSON.parse(san.slice(colon + 1, end)) as string;
      } catch {
        break; // not Node's format: trust nothing after it
      }
    } else {
      end = san.indexOf(", ", colon);
      if (end < 0) end = san.length;
      value = san.slice(colon + 1, end);
    }
    if (type === "URI") out.push(value);
    i = end + 2;
  }
  return out;
}

function hasCert(cert: PeerCert | undefined): cert is PeerCert {
  // getPeerCertificate() returns {} when the peer sent none.
  return !!cert && !!cert.raw;
}

/** The peer's SPIFFE identities: its URI SANs that parse. */
export function peerIdentities(cert: PeerCert): Identity[] {
  if (!hasCert(cert)) return [];
  return uriSans(cert.subjectaltname).flatMap((uri) => Identity.tryParse(uri) ?? []);
}

/** Outbound: one URI SAN of the server leaf must equal one of the expected identities. null = ok, else the reason. */
export function verifyServerIdentity(cert: PeerCert, expected: Identity[]): string | null {
  if (!hasCert(cert)) return "server sent no certificate";
  if (expected.length === 0) return "no expected server identity to verify against";
  const ids = peerIdentities(cert);
  if (ids.some((id) => expected.some((e) => e.equals(id)))) return null;
  return `server identity ${ids.length ? ids.join(", ") : "(no SPIFFE URI SAN)"} is not the expected ${expected.join(" or ")}`;
}

/** Inbound: the client must have an identity in our trust domain (ztunnel's TrustDomainVerifier). */
export function verifyClientTrustDomain(cert: PeerCert, trustDomain: string): { identity?: Identity; reason?: string } {
  if (!hasCert(cert)) return { reason: "client sent no certificate" };
  const ids = peerIdentities(cert);
  const identity = ids.find((id) => id.trustDomain === trustDomain);
  if (identity) return { identity };
  if (ids.length === 0) return { reason: "client certificate has no SPIFFE URI SAN" };
  return { reason: `client identity ${ids.join(", ")} is outside trust domain ${trustDomain}` };
}
