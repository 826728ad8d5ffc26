// A workload identity in Istio's SPIFFE form: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// exactly those five path pieces (ztunnel's Identity::from_str). Characters follow the SPIFFE ID spec, so
// toString() always yields a URI that parse() accepts.

import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN } from "../model/workload.js";
import { IdentityError } from "../errors.js";

export { IdentityError } from "../errors.js";

const PREFIX = "spiffe://";
// SPIFFE ID spec §2.1: trust domains are lowercase; §2.2: path segments are [A-Za-z0-9._-], never "." or "..".
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** Throws IdentityError unless `td` is a valid (non-empty, lowercase) SPIFFE trust domain. */
export function checkTrustDomain(td: string): void {
  if (!TRUST_DOMAIN_RE.test(td)) throw new IdentityError(`invalid trust domain ${JSON.stringify(td)}`);
}

function checkSegment(what: string, value: string): void {
  if (!SEGMENT_RE.test(value) || value === "." || value === "..") {
    throw new IdentityError(`invalid ${what} ${JSON.stringify(value)}`);
  }
}

export class Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;

  /** An empty trust domain means cluster.local and an empty service account means default (as in xDS). */
  constructor(trustDomain: string, namespace: string, serviceAccount: string) {
    this.trustDomain = trustDomain || DEFAULT_TRUST_DOMAIN;
    this.namespace = namespace;
    this.serviceAccount = serviceAccount || DEFAULT_SERVICE_ACCOUNT;
    checkTrustDomain(this.trustDomain);
    checkSegment("namespace", this.namespace);
    checkSegment("service account", this.serviceAccount);
  }

  /** Parses spiffe://td/ns/N/sa/S; anything else throws IdentityError. */
  static parse(uri: string): Identity {
    if (!uri.startsWith(PREFIX)) throw new IdentityError(`not a spiffe:// URI: ${JSON.stringify(uri)}`);
    const parts = uri.slice(PREFIX.length).split("/");
    if (parts.length !== 5 || parts[1] !== "ns" || parts[3] !== "sa") {
      throw new IdentityError(`not of the form spiffe://<td>/ns/<ns>/sa/<sa>: ${JSON.stringify(uri)}`);
    }
    // Inside a URI an empty piece is malformed, not a request for the default.
    if (!parts[0] || !parts[4])
      throw new IdentityError(`empty trust domain or service account: ${JSON.stringify(uri)}`);
    return new Identity(parts[0], parts[2], parts[4]);
  }

  static tryParse(uri: string): Identity | undefined {
    try {
      return Identity.parse(uri);
    } catch {
      return undefined;
    }
  }

  toString(): string {
    return `${PREFIX}${this.trustDomain}/ns/${this.namespace}/sa/${this.serviceAccount}`;
  }

  equals(o: Identity): boolean {
    return (
      this.trustDomain === o.trustDomain && this.namespace === o.namespace && this.serviceAccount === o.serviceAccount
    );
  }
}
