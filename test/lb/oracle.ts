// The tests' oracle: ztunnel's endpoint rules in plain JS, the twin of the Wasm tables (assembly/lb/table.ts)
// that host/lb/balancer.ts drives. The rule tests, the fuzzer and the lb benchmark compare the two; production
// never calls this.

import type { RoutingPreference, Service, ServiceScopeConfig, Workload } from "../../host/model/index.js";
import { serviceKey } from "../../host/model/index.js";
import type { ProxyState } from "../../host/state/index.js";
import { isGlobalService } from "../../host/lb/scope.js";
import {
  SOURCE_FIELD,
  hasAddress,
  lbSourceOf,
  randomU32,
  rulesOf,
  targetPortOf,
  type LbSource,
  type Rules,
} from "../../host/lb/rules.js";
import type { LbChoice } from "../../host/lb/balancer.js";
import { LB_MODE_ALL, LB_MODE_STRICT } from "../../assembly/lb/layout.js";

function localityOf(w: Workload, scope: RoutingPreference): string {
  switch (scope) {
    case "NETWORK":
      return w.network;
    case "CLUSTER":
      return w.clusterId;
    case "REGION":
      return w.locality?.region ?? "";
    case "ZONE":
      return w.locality?.zone ?? "";
    case "SUBZONE":
      return w.locality?.subzone ?? "";
    case "NODE":
      return w.node;
  }
}

/** The twin of rankOf in assembly/lb/table.ts: the endpoint's rank, or -1 if it is filtered out. */
function rankOf(r: Rules, src: LbSource, w: Workload, target: number): number {
  if (target === 0 || w.capacity === 0) return -1;
  if (!r.allowAll && w.status !== "Healthy") return -1;
  const onNetwork = w.network === src.network;
  // On the source's network an endpoint needs an address; off it, a network gateway to reach it through.
  if (onNetwork ? !hasAddress(w) : !w.networkGateway) return -1;
  if (r.sameCluster && w.clusterId !== src.clusterId) return -1;
  if (r.mode === LB_MODE_ALL) return 0;
  const n = r.scopes.length;
  let rank = 0,
    i = 0,
    full = n;
  if (n > 0 && r.scopes[0] === "NETWORK") {
    // NETWORK first: a match counts n (above every off-network endpoint); a mismatch skips the scope.
    i = 1;
    full = 2 * n - 1;
    if (onNetwork) rank = n;
  }
  for (; i < n; i++) {
    const s = r.scopes[i]!;
    if (localityOf(w, s) !== src[SOURCE_FIELD[s]]) break;
    rank++;
  }
  return r.mode === LB_MODE_STRICT && rank !== full ? -1 : rank;
}

export interface PickOptions {
  /** [0, 1), as Math.random (the default). */
  random?: () => number;
  /** Default: the config's serviceScopeConfigs. */
  scopes?: ServiceScopeConfig[];
  namespaceLabels?: (ns: string) => Record<string, string> | undefined;
}

/**
 * Pure: the endpoint of `svc` on `port` a connection from `source` goes to under ztunnel's rules, or undefined.
 * Filter: the service must have the port and the endpoint a target for it; healthy unless ALLOW_ALL; on the
 * source's network only with an address, off it only with a network gateway; in the source's cluster unless the
 * service is global; capacity above 0. Rank (STRICT, FAILOVER): the matched prefix of the routing preferences,
 * NETWORK first counting as described in rankOf; STRICT keeps full matches only; the best rank wins. Then a
 * capacity-weighted draw. No outlier detection (LoadBalancer has it).
 */
export function pickEndpoint(
  state: ProxyState,
  source: Workload,
  svc: Service,
  port: number,
  opts: PickOptions = {},
): LbChoice | undefined {
  if (svc.ports[port] === undefined) return undefined;
  const global = isGlobalService(svc, opts.scopes ?? state.config.serviceScopeConfigs, opts.namespaceLabels);
  const rules = rulesOf(svc, global);
  const src = lbSourceOf(source);
  const key = serviceKey(svc);
  let best = -1;
  let chosen: LbChoice[] = [];
  for (const { workload } of state.endpoints(svc, port)) {
    const targetPort = targetPortOf(svc, workload.services[key], port);
    const rank = rankOf(rules, src, workload, targetPort);
    if (rank < 0 || rank < best) continue;
    if (rank > best) {
      best = rank;
      chosen = [];
    }
    chosen.push({ workload, targetPort, rank });
  }
  let total = 0;
  for (const c of chosen) total += c.workload.capacity;
  const r = (randomU32(opts.random ?? Math.random) / 4294967296) * total;
  let sum = 0;
  for (const c of chosen) {
    sum += c.workload.capacity;
    if (sum > r) return c;
  }
  return undefined;
}
