// ztunnel's endpoint rules as the Wasm tables (assembly/lb/table.ts) read them: a service's load-balancing config
// resolved to a policy word, an endpoint's target port and address test, and where a connection comes from.

import type { RoutingPreference, Service, Workload } from "../model/index.js";
import {
  LB_ALLOW_ALL,
  LB_CLUSTER,
  LB_MAX_PREFS,
  LB_MODE_ALL,
  LB_MODE_FAILOVER,
  LB_MODE_STRICT,
  LB_NETWORK,
  LB_NODE,
  LB_PREFS_COUNT_SHIFT,
  LB_PREFS_SHIFT,
  LB_REGION,
  LB_SAME_CLUSTER,
  LB_SUBZONE,
  LB_ZONE,
} from "../../assembly/lb/layout.js";

/** Where a connection comes from, as the ranking compares it. */
export interface LbSource {
  network: string;
  region: string;
  zone: string;
  subzone: string;
  node: string;
  clusterId: string;
}

export function lbSourceOf(w: Workload): LbSource {
  const l = w.locality;
  return {
    network: w.network,
    region: l?.region ?? "",
    zone: l?.zone ?? "",
    subzone: l?.subzone ?? "",
    node: w.node,
    clusterId: w.clusterId,
  };
}

/** How a service's endpoints are chosen, resolved once per service. */
export interface Rules {
  mode: number;
  allowAll: boolean;
  sameCluster: boolean;
  /** At most LB_MAX_PREFS (a longer list necessarily repeats a scope; the rest is dropped). */
  scopes: RoutingPreference[];
}

export const SCOPE_WORD: Record<RoutingPreference, number> = {
  NETWORK: LB_NETWORK,
  CLUSTER: LB_CLUSTER,
  REGION: LB_REGION,
  ZONE: LB_ZONE,
  SUBZONE: LB_SUBZONE,
  NODE: LB_NODE,
};

export function rulesOf(svc: Service, global: boolean): Rules {
  const lb = svc.loadBalancer;
  // UNSPECIFIED, STANDARD and PASSTHROUGH do not rank (the proxy handles PASSTHROUGH before picking).
  const mode = lb?.mode === "STRICT" ? LB_MODE_STRICT : lb?.mode === "FAILOVER" ? LB_MODE_FAILOVER : LB_MODE_ALL;
  return {
    mode,
    allowAll: lb?.healthPolicy === "ALLOW_ALL",
    sameCluster: !global,
    scopes: mode === LB_MODE_ALL ? [] : lb!.routingPreferences.slice(0, LB_MAX_PREFS),
  };
}

export function policyOf(r: Rules): number {
  let p = r.mode | (r.allowAll ? LB_ALLOW_ALL : 0) | (r.sameCluster ? LB_SAME_CLUSTER : 0);
  p |= r.scopes.length << LB_PREFS_COUNT_SHIFT;
  r.scopes.forEach((s, i) => {
    p |= SCOPE_WORD[s] << (LB_PREFS_SHIFT + 3 * i);
  });
  return p;
}

/**
 * An endpoint's target port for service port `port` given its own port map for the service, or 0 if it has none
 * (ztunnel: the workload's own mapping, else the service's; a service target of 0 is a named port only workloads
 * resolve).
 */
export function targetPortOf(svc: Service, own: Record<number, number> | undefined, port: number): number {
  return own?.[port] || svc.ports[port] || 0;
}

export function hasAddress(w: Workload): boolean {
  return w.workloadIps.length > 0 || w.hostname !== "";
}

export const SOURCE_FIELD: Record<RoutingPreference, keyof LbSource> = {
  NETWORK: "network",
  CLUSTER: "clusterId",
  REGION: "region",
  ZONE: "zone",
  SUBZONE: "subzone",
  NODE: "node",
};

/** A uniform u32 from a [0, 1) source: both implementations draw with it, so equal sequences give equal picks. */
export function randomU32(random: () => number): number {
  return (random() * 4294967296) >>> 0;
}
