// The channel to istiod shared by the xDS client (host/xds/client.ts) and the CA client
// (host/identity/istio-ca.ts), as ztunnel's tls/control.rs: TLS verified against the mesh root with the name (or
// an alternative name, or istiod's SPIFFE identity) checked, the bearer token re-read per stream or call, and the
// `clusterid` header.

import { readFile } from "node:fs/promises";
import { nodeTls } from "./node-tls.js";
import { Metadata, credentials, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import { Identity } from "../identity/identity.js";
import { verifyServerIdentity } from "./verify.js";

/** How to reach an istiod endpoint (XDS_ADDRESS or CA_ADDRESS). */
export interface ControlPlaneConnection {
  /** `https://host:port` or `host:port` (TLS), or `http://host:port` (plaintext, local development only). */
  address: string;
  /** Trust anchors (PEM) istiod's serving certificate must chain to: the mesh root. Required for TLS. */
  rootsPem?: string;
  /** The TLS name sent (SNI) and checked against the certificate's DNS SANs. Default: the address's host. */
  serverName?: string;
  /** ztunnel's ALT_XDS_HOSTNAME / ALT_CA_HOSTNAME: a second DNS name the certificate may carry instead. */
  altServerName?: string;
  /** Also accepted: a certificate whose URI SAN is one of these SPIFFE identities (istiod serving with a mesh
   *  certificate, e.g. spiffe://cluster.local/ns/istio-system/sa/istiod). */
  serverIdentities?: (Identity | string)[];
  /** A file holding the bearer token (ztunnel: /var/run/secrets/tokens/istio-token), re-read for every stream and
   *  call, so a rotated token is picked up. No file: no authorization header. */
  tokenFile?: string;
  /** The `clusterid` header (ztunnel's CLUSTER_ID). */
  clusterId?: string;
}

export interface ChannelParams {
  /** gRPC target, `host:port`. */
  target: string;
  credentials: ChannelCredentials;
  options: ChannelOptions;
}

/** The gRPC target, credentials and channel options for a control plane connection. */
export function controlPlaneChannel(c: ControlPlaneConnection, extra: ChannelOptions = {}): ChannelParams {
  const m = /^(https?):\/\/(.*)$/.exec(c.address);
  const scheme = m ? m[1] : "https";
  const target = (m ? m[2]! : c.address).replace(/\/+$/, "");
  if (!/^(\[[^\]]+\]|[^:/[\]]+):\d+$/.test(target)) {
    throw new Error(`control plane address ${JSON.stringify(c.address)} is not [https://]host:port`);
  }
  const options: ChannelOptions = { ...extra };
  if (scheme === "http") return { target, credentials: credentials.createInsecure(), options };
  if (!c.rootsPem) throw new Error(`control plane ${c.address}: TLS needs the mesh root certificate`);
  const ids = (c.serverIdentities ?? []).map((x) => (typeof x === "string" ? Identity.parse(x) : x));
  const alt = c.altServerName;
  const creds = credentials.createSsl(Buffer.from(c.rootsPem), null, null, {
    // The chain is verified against rootsPem by OpenSSL before this runs; this checks the name.
    checkServerIdentity: (host, cert) => {
      const err = nodeTls.checkServerIdentity(host, cert);
      if (!err) return undefined;
      if (alt && !nodeTls.checkServerIdentity(alt, cert)) return undefined;
      if (ids.length > 0 && verifyServerIdentity(cert, ids) === null) return undefined;
      return err;
    },
  });
  if (c.serverName) options["grpc.ssl_target_name_override"] = c.serverName;
  return { target, credentials: creds, options };
}

/** `authorization: Bearer <token>` (token file read now) and `clusterid`, as ztunnel sends them to istiod. */
export async function controlPlaneMetadata(c: ControlPlaneConnection): Promise<Metadata> {
  const md = new Metadata();
  if (c.tokenFile) {
    let token: string;
    try {
      token = (await readFile(c.tokenFile, "utf8")).trim();
    } catch (e) {
      throw new Error(`cannot read the token file ${c.tokenFile}: ${(e as Error).message}`);
    }
    if (token === "") throw new Error(`the token file ${c.tokenFile} is empty`);
    md.set("authorization", `Bearer ${token}`);
  }
  if (c.clusterId) md.set("clusterid", c.clusterId);
  return md;
}
