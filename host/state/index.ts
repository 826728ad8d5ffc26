// ProxyState: the config in force and its lookup indexes, read by the proxy. ProxyStateUpdater is its only
// writer (as in ztunnel): the local file source uses it now, xDS will later. An update builds a whole new set of
// indexes and swaps it in one assignment, so a reader never sees a half-applied config.

import { EventEmitter } from "node:events";
import { canonicalIp, emptyMeshConfig, policyKey } from "../config.js";
import type { MeshConfig, Policy, Service, Workload } from "../config.js";

export interface Endpoint {
  workload: Workload;
  targetPort: number;
}

/** Everything derived from one MeshConfig. Keys are `network/ip`, `ns/hostname`, `ns/name`. */
class Indexes {
  readonly workloadsByUid = new Map<string, Workload>();
  readonly workloadsByAddr = new Map<string, Workload>();
  /** Any network; the first workload configured with the IP wins. */
  readonly workloadsByIp = new Map<string, Workload>();
  readonly workloadsByName = new Map<string, Workload>();
  readonly servicesByVip = new Map<string, Service>();
  readonly servicesByIp = new Map<string, Service>();
  readonly servicesByKey = new Map<string, Service>();
  /** One hostname may be defined in several namespaces (ServiceEntry). */
  readonly servicesByHost = new Map<string, Service[]>();
  /** `ns/hostname` -> workloads naming it in their `services`. */
  readonly backends = new Map<string, Workload[]>();
  readonly policiesByKey = new Map<string, Policy>();
  /** Namespace-scoped policies by namespace; Global ones under "" (ztunnel PolicyStore). */
  readonly policiesByNamespace = new Map<string, Policy[]>();

  constructor(readonly config: MeshConfig) {
    for (const w of config.workloads) {
      this.workloadsByUid.set(w.uid, w);
      setFirst(this.workloadsByName, `${w.namespace}/${w.name}`, w);
      for (const ip of w.workloadIps) {
        setFirst(this.workloadsByAddr, `${w.network}/${ip}`, w);
        setFirst(this.workloadsByIp, ip, w);
      }
      for (const key in w.services) push(this.backends, key, w);
    }
    for (const s of config.services) {
      this.servicesByKey.set(`${s.namespace}/${s.hostname}`, s);
      push(this.servicesByHost, s.hostname, s);
      for (const v of s.vips) {
        setFirst(this.servicesByVip, `${v.network}/${v.address}`, s);
        setFirst(this.servicesByIp, v.address, s);
      }
    }
    for (const p of config.policies) {
      this.policiesByKey.set(policyKey(p), p);
      if (p.scope === "Global") push(this.policiesByNamespace, "", p);
      else if (p.scope === "Namespace") push(this.policiesByNamespace, p.namespace, p);
      // WorkloadSelector policies apply only through a workload's authorizationPolicies.
    }
  }
}

function setFirst<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (!m.has(k)) m.set(k, v);
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** Lookups hit the canonical spelling parseMeshConfig stored; only IPv6 text needs rewriting (rare, so cheap). */
function norm(ip: string): string {
  return ip.includes(":") ? (canonicalIp(ip) ?? ip) : ip;
}

/** ProxyStateUpdater's private door into a ProxyState (kept off the public class). */
const install = new WeakMap<ProxyState, (ix: Indexes) => void>();

/**
 * The config in force, indexed. Emits "updated" (with the new MeshConfig) after each apply. Objects returned
 * are the config's own: treat them as read-only.
 */
export class ProxyState extends EventEmitter {
  private ix = new Indexes(emptyMeshConfig());

  constructor() {
    super();
    install.set(this, (ix) => {
      this.ix = ix;
      this.emit("updated", ix.config);
    });
  }

  /** The snapshot in force (for config_dump). */
  get config(): MeshConfig {
    return this.ix.config;
  }

  /** The workload at `ip` on `network` (undefined network: any network). */
  workloadByIp(ip: string, network?: string): Workload | undefined {
    const a = norm(ip);
    return network === undefined ? this.ix.workloadsByIp.get(a) : this.ix.workloadsByAddr.get(`${network}/${a}`);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.ix.workloadsByUid.get(uid);
  }

  /** By namespace and workload (pod) name. */
  findWorkload(namespace: string, name: string): Workload | undefined {
    return this.ix.workloadsByName.get(`${namespace}/${name}`);
  }

  /** The service with VIP `ip` on `network` (undefined network: any network). */
  serviceByVip(ip: string, network?: string): Service | undefined {
    const a = norm(ip);
    return network === undefined ? this.ix.servicesByIp.get(a) : this.ix.servicesByVip.get(`${network}/${a}`);
  }

  /** The service for `hostname`: the one in `preferNamespace` if any, else the canonical one, else the first. */
  serviceByHost(hostname: string, preferNamespace?: string): Service | undefined {
    const list = this.ix.servicesByHost.get(hostname);
    if (!list) return undefined;
    if (list.length === 1) return list[0];
    return (
      (preferNamespace !== undefined ? list.find((s) => s.namespace === preferNamespace) : undefined) ??
      list.find((s) => s.canonical) ??
      list[0]
    );
  }

  /** By `ns/hostname`, the key workloads use in their `services`. */
  serviceByKey(namespace: string, hostname: string): Service | undefined {
    return this.ix.servicesByKey.get(`${namespace}/${hostname}`);
  }

  /**
   * Workloads that back a service (their `services` map names "ns/hostname"), with the target port for svcPort
   * (the workload's own mapping wins, else the service's ports map, else svcPort itself). Unhealthy workloads
   * are included: the load balancer filters by the service's healthPolicy.
   */
  endpoints(svc: Service, svcPort: number): Endpoint[] {
    const key = `${svc.namespace}/${svc.hostname}`;
    const ws = this.ix.backends.get(key);
    if (!ws) return [];
    // A target of 0 means "unset" in xDS (a named targetPort istiod resolves per workload).
    const svcTarget = svc.ports[svcPort] || svcPort;
    return ws.map((workload) => ({ workload, targetPort: workload.services[key]?.[svcPort] || svcTarget }));
  }

  policyByKey(key: string): Policy | undefined {
    return this.ix.policiesByKey.get(key);
  }

  /**
   * The policies that apply to connections to `w` (ztunnel): Global ones, Namespace ones of w's namespace, and
   * those w names in authorizationPolicies.
   */
  policiesFor(w: Workload): Policy[] {
    const byNs = this.ix.policiesByNamespace;
    const out = [...(byNs.get("") ?? []), ...(byNs.get(w.namespace) ?? [])];
    for (const key of w.authorizationPolicies ?? []) {
      const p = this.ix.policiesByKey.get(key);
      if (p && !out.includes(p)) out.push(p);
    }
    return out;
  }
}

/** The only writer of ProxyState. */
export class ProxyStateUpdater {
  constructor(private readonly state: ProxyState) {}

  /** Replaces everything: rebuilds all indexes from `cfg`, swaps them in, emits "updated". */
  apply(cfg: MeshConfig): void {
    install.get(this.state)!(new Indexes(cfg));
  }
}
