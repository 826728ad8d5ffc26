// An L4 authorization policy (ztunnel's `Authorization`): rules of clauses of matches. state/policy.ts evaluates it.

/**
 * Istio string match. In YAML: `{Exact: x}`, `!Prefix x` (serde_yaml), or a plain string in Istio glob form
 * (`*` presence, `x*` prefix, `*x` suffix, else exact).
 */
export interface StringMatch {
  kind: "exact" | "prefix" | "suffix" | "presence";
  value: string;
}
/** An address or CIDR (`10.0.0.0/8`; a bare IP is a /32 or /128). */
export interface IpNet {
  address: string;
  prefixLength: number;
}
export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}
/** One match: field types are AND-ed, the values of one field OR-ed; `not*` means none may match. */
export interface PolicyMatch {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  sourceIps: IpNet[];
  notSourceIps: IpNet[];
  destinationIps: IpNet[];
  notDestinationIps: IpNet[];
  destinationPorts: number[];
  notDestinationPorts: number[];
}
/** Matches are OR-ed. */
export type PolicyClause = PolicyMatch[];
/** Clauses are AND-ed. */
export type PolicyRule = PolicyClause[];
export interface Policy {
  name: string;
  namespace: string;
  scope: "Global" | "Namespace" | "WorkloadSelector";
  action: "Allow" | "Deny";
  dryRun: boolean;
  /** Rules are OR-ed. YAML: `rules: [[[match, ...], ...], ...]` (ztunnel) or `[{clauses: [{matches: [...]}]}]`. */
  rules: PolicyRule[];
}
