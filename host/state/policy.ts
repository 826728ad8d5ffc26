// L4 authorization with ztunnel's semantics (ztunnel src/rbac.rs, src/state.rs):
// a matching DENY rejects; no ALLOW policy means allow; else a matching ALLOW is needed.
// Rules are OR-ed, clauses AND-ed, matches OR-ed; inside a match the field kinds are AND-ed and
// their values OR-ed, `not*` fields mean "none of these"; an all-empty match is skipped.
// Principals compare without "spiffe://"; the port is the target port. Dry-run policies are
// only reported.

import net from "node:net";
import type { IpNet, Policy, PolicyMatch, ServiceAccountMatch, StringMatch } from "../model/index.js";
import { policyKey } from "../model/index.js";
import type { Identity } from "../identity/identity.js";

/** What a decision is about: the peer (TLS identity, if any) and the addresses after port mapping. */
export interface RbacConnection {
  source?: Identity;
  sourceIp: string;
  destinationIp: string;
  /** The target port (what the application listens on), not 15008. */
  destinationPort: number;
}

export interface RbacDecision {
  allowed: boolean;
  /** The policy that decided ("ns/name"), when one did. */
  policy?: string;
  reason: string;
  /** Dry-run policies that matched (they would have changed nothing, or something: logged either way). */
  dryRun: string[];
}

function stringMatches(m: StringMatch, v: string | undefined): boolean {
  if (v === undefined) return false;
  switch (m.kind) {
    case "exact":
      return v === m.value;
    case "prefix":
      return v.startsWith(m.value);
    case "suffix":
      return v.endsWith(m.value);
    case "presence":
      return v.length > 0;
  }
}

function ipToBigInt(ip: string): { v: bigint; bits: number } | undefined {
  const family = net.isIP(ip);
  if (family === 4) {
    return { v: ip.split(".").reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n), bits: 32 };
  }
  if (family === 6) {
    const [head, tail] = ip.split("::");
    const parse = (s: string | undefined) => (s ? s.split(":").filter(Boolean) : []);
    const h = parse(head),
      t = parse(tail);
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    return { v: groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n), bits: 128 };
  }
  return undefined;
}

function cidrContains(c: IpNet, ip: string): boolean {
  const a = ipToBigInt(c.address),
    b = ipToBigInt(ip);
  if (!a || !b || a.bits !== b.bits) return false;
  const shift = BigInt(a.bits - c.prefixLength);
  return a.v >> shift === b.v >> shift;
}

function saMatches(m: ServiceAccountMatch, id: Identity | undefined): boolean {
  return id !== undefined && id.namespace === m.namespace && id.serviceAccount === m.serviceAccount;
}

/** The principal as policies write it: the SPIFFE id without "spiffe://". */
function principalOf(id: Identity | undefined): string | undefined {
  return id ? String(id).slice("spiffe://".length) : undefined;
}

function isEmpty(m: PolicyMatch): boolean {
  return Object.values(m).every((v) => Array.isArray(v) && v.length === 0);
}

/** One field kind: empty means "no constraint"; else any value matches (or, for not*, none does). */
function field<T>(values: T[], test: (v: T) => boolean, negate = false): boolean {
  if (values.length === 0) return true;
  const any = values.some(test);
  return negate ? !any : any;
}

export function matchMatches(m: PolicyMatch, c: RbacConnection): boolean {
  const ns = c.source?.namespace,
    principal = principalOf(c.source);
  return (
    field(m.namespaces, (s) => stringMatches(s, ns)) &&
    field(m.notNamespaces, (s) => stringMatches(s, ns), true) &&
    field(m.serviceAccounts, (s) => saMatches(s, c.source)) &&
    field(m.notServiceAccounts, (s) => saMatches(s, c.source), true) &&
    field(m.principals, (s) => stringMatches(s, principal)) &&
    field(m.notPrincipals, (s) => stringMatches(s, principal), true) &&
    field(m.sourceIps, (n) => cidrContains(n, c.sourceIp)) &&
    field(m.notSourceIps, (n) => cidrContains(n, c.sourceIp), true) &&
    field(m.destinationIps, (n) => cidrContains(n, c.destinationIp)) &&
    field(m.notDestinationIps, (n) => cidrContains(n, c.destinationIp), true) &&
    field(m.destinationPorts, (p) => p === c.destinationPort) &&
    field(m.notDestinationPorts, (p) => p === c.destinationPort, true)
  );
}

export function policyMatches(p: Policy, c: RbacConnection): boolean {
  return p.rules.some((rule) => rule.every((clause) => clause.some((m) => !isEmpty(m) && matchMatches(m, c))));
}

/** Decides a connection against the policies that apply to the destination workload. */
export function authorize(policies: readonly Policy[], c: RbacConnection): RbacDecision {
  const dryRun = policies.filter((p) => p.dryRun && policyMatches(p, c)).map(policyKey);
  const live = policies.filter((p) => !p.dryRun);
  for (const p of live) {
    if (p.action === "Deny" && policyMatches(p, c)) {
      return { allowed: false, policy: policyKey(p), reason: `denied by DENY policy ${policyKey(p)}`, dryRun };
    }
  }
  const allows = live.filter((p) => p.action === "Allow");
  if (allows.length === 0) return { allowed: true, reason: "no ALLOW policy applies", dryRun };
  const hit = allows.find((p) => policyMatches(p, c));
  return hit
    ? { allowed: true, policy: policyKey(hit), reason: `allowed by ${policyKey(hit)}`, dryRun }
    : { allowed: false, reason: `no ALLOW policy matches (${allows.map(policyKey).join(", ")})`, dryRun };
}
