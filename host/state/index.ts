// ProxyState: the config in force and its lookup indexes, read by the proxy. ProxyStateUpdater is its only
// writer (as in ztunnel): the local file source replaces the whole config (apply: a whole new set of indexes swapped
// in one assignment), xDS sends deltas (update: the indexes are changed in place, within one synchronous call, so
// a reader still never sees a half-applied config). Both give the same lookups for the same resulting config.

import { EventEmitter } from "node:events";
import { canonicalIp, emptyMeshConfig, nsKey, policyKey, serviceKey } from "../model/index.js";
import type { MeshConfig, Policy, Service, Workload } from "../model/index.js";

export interface Endpoint {
  workload: Workload;
  targetPort: number;
}

/**
 * One index key's values in config order; a lookup gets the first ("the first workload configured with the IP
 * wins"). The rest are kept only for keys that have more than one value, so an incremental removal can promote
 * the next one.
 */
class FirstWins<T extends object> {
  readonly first = new Map<string, T>();
  private readonly rest = new Map<string, T[]>();

  /** During a full build values arrive in config order: a later one never beats the current first. */
  add(k: string, v: T, seq?: (x: T) => number): void {
    const cur = this.first.get(k);
    if (cur === undefined) {
      this.first.set(k, v);
    } else if (seq && seq(v) < seq(cur)) {
      this.first.set(k, v);
      insertInOrder(this.rest, k, cur, seq);
    } else {
      insertInOrder(this.rest, k, v, seq);
    }
  }

  remove(k: string, v: T): void {
    const list = this.rest.get(k);
    if (this.first.get(k) === v) {
      if (!list) {
        this.first.delete(k);
        return;
      }
      this.first.set(k, list.shift()!);
    } else if (list) {
      const i = list.indexOf(v);
      if (i >= 0) list.splice(i, 1);
    }
    if (list && list.length === 0) this.rest.delete(k);
  }

  get(k: string): T | undefined {
    return this.first.get(k);
  }
}

/** Appends v to m[k], or (with seq) inserts it where its config position says. */
function insertInOrder<T>(m: Map<string, T[]>, k: string, v: T, seq?: (x: T) => number): void {
  const list = m.get(k);
  if (!list) {
    m.set(k, [v]);
    return;
  }
  if (!seq || list.length === 0 || seq(list[list.length - 1]!) < seq(v)) {
    list.push(v);
    return;
  }
  const s = seq(v);
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seq(list[mid]!) < s) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, v);
}

function removeFrom<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (!list) return;
  const i = list.indexOf(v);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) m.delete(k);
}

/** Changes for ProxyStateUpdater.update: removals first, then additions and replacements. */
export interface StateDelta {
  /** Added, or replacing the workload with the same uid (which keeps its place in the config order). */
  workloads?: Workload[];
  /** uids. */
  removeWorkloads?: string[];
  /** Added, or replacing the service with the same namespace/hostname. */
  services?: Service[];
  /** `namespace/hostname` keys. */
  removeServices?: string[];
  /** Added, or replacing the policy with the same namespace/name. */
  policies?: Policy[];
  /** `namespace/name` keys (policyKey). */
  removePolicies?: string[];
}

/**
 * The config `delta` turns `cfg` into (what update() must index the same as apply() would): removed keys dropped,
 * replacements in place of the first item with their key (other items with that key dropped), additions appended.
 */
export function applyDelta(cfg: MeshConfig, delta: StateDelta): MeshConfig {
  const merge = <T>(items: T[], key: (t: T) => string, upserts: T[] = [], removes: string[] = []): T[] => {
    const gone = new Set(removes);
    const byKey = new Map<string, T>();
    for (const u of upserts) byKey.set(key(u), u);
    const out: T[] = [];
    const seen = new Set<string>();
    for (const it of items) {
      const k = key(it);
      if (gone.has(k) || seen.has(k)) continue;
      seen.add(k);
      out.push(byKey.get(k) ?? it);
      byKey.delete(k);
    }
    for (const u of byKey.values()) out.push(u);
    return out;
  };
  return {
    workloads: merge(cfg.workloads, (w) => w.uid, delta.workloads, delta.removeWorkloads),
    services: merge(cfg.services, serviceKey, delta.services, delta.removeServices),
    policies: merge(cfg.policies, policyKey, delta.policies, delta.removePolicies),
    serviceScopeConfigs: cfg.serviceScopeConfigs ?? [],
  };
}

/** Everything derived from one MeshConfig. Keys are `network/ip`, `ns/hostname`, `ns/name`. */
class Indexes {
  readonly workloadsByUid = new Map<string, Workload>();
  readonly workloadsByAddr = new FirstWins<Workload>();
  /** Any network; the first workload configured with the IP wins. */
  readonly workloadsByIp = new FirstWins<Workload>();
  readonly workloadsByName = new FirstWins<Workload>();
  readonly servicesByVip = new FirstWins<Service>();
  readonly servicesByIp = new FirstWins<Service>();
  readonly servicesByKey = new Map<string, Service>();
  /** One hostname may be defined in several namespaces (ServiceEntry). */
  readonly servicesByHost = new Map<string, Service[]>();
  /** `ns/hostname` -> workloads naming it in their `services`. */
  readonly backends = new Map<string, Workload[]>();
  readonly policiesByKey = new Map<string, Policy>();
  /** Namespace-scoped policies by namespace; Global ones under "" (ztunnel PolicyStore). */
  readonly policiesByNamespace = new Map<string, Policy[]>();
  /** The config as given to apply(), or (after an update) undefined until asked for again. */
  private snapshot: MeshConfig | undefined;
  private readonly scopes: MeshConfig["serviceScopeConfigs"];
  /** Config positions, set up by the first update(): each kind numbered in its own config order. */
  private order: Map<object, number> | undefined;
  private nextSeq = 0;
  private readonly seq = (x: object) => this.order!.get(x)!;

  constructor(config: MeshConfig) {
    this.snapshot = config;
    this.scopes = config.serviceScopeConfigs;
    for (const w of config.workloads) {
      this.workloadsByUid.set(w.uid, w);
      this.indexWorkload(w);
    }
    for (const s of config.services) {
      this.servicesByKey.set(serviceKey(s), s);
      this.indexService(s);
    }
    for (const p of config.policies) {
      this.policiesByKey.set(policyKey(p), p);
      this.indexPolicy(p);
    }
  }

  get config(): MeshConfig {
    return (this.snapshot ??= {
      workloads: [...this.workloadsByUid.values()],
      services: [...this.servicesByKey.values()],
      policies: [...this.policiesByKey.values()],
      serviceScopeConfigs: this.scopes ?? [],
    });
  }

  /**
   * Whether update() can work on these indexes: every workload, service and policy has its own key (apply() takes
   * any config; one with duplicate keys is rebuilt through applyDelta instead).
   */
  get incremental(): boolean {
    const c = this.snapshot;
    return (
      !c ||
      (c.workloads.length === this.workloadsByUid.size &&
        c.services.length === this.servicesByKey.size &&
        c.policies.length === this.policiesByKey.size)
    );
  }

  /** Workloads, services and policies indexed. */
  get size(): number {
    return this.workloadsByUid.size + this.servicesByKey.size + this.policiesByKey.size;
  }

  /** Applies a delta in place. */
  update(d: StateDelta): void {
    if (!this.order) {
      this.order = new Map();
      for (const m of [this.workloadsByUid, this.servicesByKey, this.policiesByKey] as Map<string, object>[]) {
        let i = 0;
        for (const v of m.values()) this.order.set(v, i++);
        this.nextSeq = Math.max(this.nextSeq, i);
      }
    }
    const order = this.order;
    const seq = this.seq;
    this.snapshot = undefined;
    const upsert = <T extends object>(
      byKey: Map<string, T>,
      k: string,
      v: T,
      index: (x: T, s?: (x: T) => number) => void,
      unindex: (x: T) => void,
    ) => {
      const old = byKey.get(k);
      if (old) {
        // The replacement takes the old one's place (v may be the very same object).
        const at = order.get(old)!;
        unindex(old);
        order.delete(old);
        order.set(v, at);
      } else {
        order.set(v, this.nextSeq++);
      }
      byKey.set(k, v);
      index(v, seq);
    };
    const remove = <T extends object>(byKey: Map<string, T>, k: string, unindex: (x: T) => void) => {
      const old = byKey.get(k);
      if (!old) return;
      unindex(old);
      byKey.delete(k);
      order.delete(old);
    };
    for (const k of d.removeWorkloads ?? []) remove(this.workloadsByUid, k, (w) => this.unindexWorkload(w));
    for (const k of d.removeServices ?? []) remove(this.servicesByKey, k, (s) => this.unindexService(s));
    for (const k of d.removePolicies ?? []) remove(this.policiesByKey, k, (p) => this.unindexPolicy(p));
    for (const w of d.workloads ?? []) {
      upsert(
        this.workloadsByUid,
        w.uid,
        w,
        (x, s) => this.indexWorkload(x, s),
        (x) => this.unindexWorkload(x),
      );
    }
    for (const sv of d.services ?? []) {
      upsert(
        this.servicesByKey,
        serviceKey(sv),
        sv,
        (x, s) => this.indexService(x, s),
        (x) => this.unindexService(x),
      );
    }
    for (const p of d.policies ?? []) {
      upsert(
        this.policiesByKey,
        policyKey(p),
        p,
        (x, s) => this.indexPolicy(x, s),
        (x) => this.unindexPolicy(x),
      );
    }
  }

  private indexWorkload(w: Workload, seq?: (x: Workload) => number): void {
    this.workloadsByName.add(nsKey(w.namespace, w.name), w, seq);
    for (const ip of w.workloadIps) {
      this.workloadsByAddr.add(`${w.network}/${ip}`, w, seq);
      this.workloadsByIp.add(ip, w, seq);
    }
    for (const key in w.services) insertInOrder(this.backends, key, w, seq);
  }

  private unindexWorkload(w: Workload): void {
    this.workloadsByName.remove(nsKey(w.namespace, w.name), w);
    for (const ip of w.workloadIps) {
      this.workloadsByAddr.remove(`${w.network}/${ip}`, w);
      this.workloadsByIp.remove(ip, w);
    }
    for (const key in w.services) removeFrom(this.backends, key, w);
  }

  private indexService(s: Service, seq?: (x: Service) => number): void {
    insertInOrder(this.servicesByHost, s.hostname, s, seq);
    for (const v of s.vips) {
      this.servicesByVip.add(`${v.network}/${v.address}`, s, seq);
      this.servicesByIp.add(v.address, s, seq);
    }
  }

  private unindexService(s: Service): void {
    removeFrom(this.servicesByHost, s.hostname, s);
    for (const v of s.vips) {
      this.servicesByVip.remove(`${v.network}/${v.address}`, s);
      this.servicesByIp.remove(v.address, s);
    }
  }

  private indexPolicy(p: Policy, seq?: (x: Policy) => number): void {
    if (p.scope === "Global") insertInOrder(this.policiesByNamespace, "", p, seq);
    else if (p.scope === "Namespace") insertInOrder(this.policiesByNamespace, p.namespace, p, seq);
    // WorkloadSelector policies apply only through a workload's authorizationPolicies.
  }

  private unindexPolicy(p: Policy): void {
    if (p.scope === "Global") removeFrom(this.policiesByNamespace, "", p);
    else if (p.scope === "Namespace") removeFrom(this.policiesByNamespace, p.namespace, p);
  }
}

/** Lookups hit the canonical spelling parseMeshConfig stored; only IPv6 text needs rewriting (rare, so cheap). */
function norm(ip: string): string {
  return ip.includes(":") ? (canonicalIp(ip) ?? ip) : ip;
}

/** ProxyStateUpdater's private door into a ProxyState (kept off the public class). */
interface Door {
  indexes(): Indexes;
  install(ix: Indexes, delta?: StateDelta): void;
}
const doors = new WeakMap<ProxyState, Door>();

/**
 * The config in force, indexed. Emits "updated" (the new MeshConfig; after update(), also the StateDelta) after each
 * change. Objects returned are the config's own: treat them as read-only. A MeshConfig once handed out never
 * changes: update() makes a new one (lazily, when `config` is next read).
 */
export class ProxyState extends EventEmitter {
  private ix = new Indexes(emptyMeshConfig());

  constructor() {
    super();
    doors.set(this, {
      indexes: () => this.ix,
      install: (ix, delta) => {
        this.ix = ix;
        if (delta) this.emit("updated", ix.config, delta);
        else this.emit("updated", ix.config);
      },
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
    return this.ix.workloadsByName.get(nsKey(namespace, name));
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
    return this.ix.servicesByKey.get(nsKey(namespace, hostname));
  }

  /**
   * Workloads that back a service (their `services` map names "ns/hostname"), with the target port for svcPort
   * (the workload's own mapping wins, else the service's ports map, else svcPort itself). Unhealthy workloads
   * are included: the load balancer filters by the service's healthPolicy.
   */
  endpoints(svc: Service, svcPort: number): Endpoint[] {
    const key = serviceKey(svc);
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
    doors.get(this.state)!.install(new Indexes(cfg));
  }

  /**
   * Changes part of the config in place (xDS deltas): the cost follows the size of the delta, not of the config.
   * Lookups afterwards are those apply(applyDelta(state.config, delta)) would give. Emits "updated" (config, delta).
   */
  update(delta: StateDelta): void {
    const door = doors.get(this.state)!;
    const ix = door.indexes();
    const n = (a?: unknown[]) => a?.length ?? 0;
    const changes =
      n(delta.workloads) +
      n(delta.removeWorkloads) +
      n(delta.services) +
      n(delta.removeServices) +
      n(delta.policies) +
      n(delta.removePolicies);
    // A first sync, or a delta touching a good part of the config, is cheaper as one build in config order.
    if (!ix.incremental || ix.size === 0 || (changes > 1000 && changes * 4 >= ix.size)) {
      door.install(new Indexes(applyDelta(ix.config, delta)), delta);
      return;
    }
    ix.update(delta);
    door.install(ix, delta);
  }
}
