// Certificates and TLS settings of the benchmark's peer proxies (tls-pipe, node-http2): a workload
// certificate issued by the same Istio plug-in CA directory as the hbone proxies use, and the same
// TLS as HBONE (TLS 1.3 only, ztunnel's AES-GCM suites, client certificates required, SPIFFE URI
// SAN of the peer checked).

import { contextOptions } from "../../../host/tls/contexts.js";
import type tls from "node:tls";
import { CertificateAuthority } from "../../../host/identity/ca.js";
import { Identity } from "../../../host/identity/identity.js";

export const TRUST_DOMAIN = "cluster.local";

export function spiffe(sa: string, ns = "default"): string {
  return `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`;
}

/** TLS options carrying our certificate for service account `sa` (namespace default). */
export async function tlsOptions(caDir: string, sa: string): Promise<tls.SecureContextOptions> {
  const ca = await CertificateAuthority.load(caDir);
  const cert = await ca.issue(new Identity(TRUST_DOMAIN, "default", sa));
  return contextOptions(cert);
}

/** Whether a verified peer certificate names `id` as a URI SAN (null: yes, else the reason). */
export function checkPeer(cert: tls.PeerCertificate | undefined, id: string): string | null {
  const sans = (cert?.subjectaltname ?? "").split(", ");
  return sans.includes(`URI:${id}`) ? null : `peer is not ${id} (${cert?.subjectaltname ?? "no certificate"})`;
}

/** Parses "ip:port" (IPv4). */
export function parseAuthority(a: string): { host: string; port: number } | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(a);
  if (!m) return null;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : null;
}
