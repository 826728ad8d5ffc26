// Load balancing: which endpoint of a service a connection goes to. ztunnel's rules (filter, rank by the matched
// prefix of the routing preferences, capacity-weighted draw), run in Wasm tables (assembly/lb/) that the
// LoadBalancer rebuilds on every config update, plus what ztunnel lacks: passive outlier detection and a
// least-loaded two-choice pick for the east-west gateway. Also istiod's two inputs to it: the load-balancing config
// of a Kubernetes Service, and whether a service is global (meshConfig serviceScopeConfigs).

import { serviceKey } from "./model/index.js";
import type { LabelSelector, LoadBalancing, RoutingPreference, Service, ServiceScopeConfig, Workload } from "./model/index.js";
import type { ProxyState } from "./state/index.js";
import { getCodec, type Codec } from "./wasm/codec.js";
import { logger } from "./log.js";
import {
  LB_ALLOW_ALL, LB_CAPACITY, LB_CLUSTER, LB_ENDPOINT_ID, LB_FLAGS, LB_HAS_ADDRESS, LB_HAS_GATEWAY, LB_HEALTHY,
  LB_MAX_PREFS, LB_MODE_ALL, LB_MODE_FAILOVER, LB_MODE_STRICT, LB_NETWORK, LB_NODE, LB_PREFS_COUNT_SHIFT,
  LB_PREFS_SHIFT, LB_REGION, LB_SAME_CLUSTER, LB_SAME_NETWORK, LB_SUBZONE, LB_TARGETS, LB_ZONE,
} from "../assembly/lb/layout.js";

const log = logger("lb");

/** Where a connection comes from, as the ranking compares it. */
export interface LbSource {
  network: string;
  region: string;
  zone: string;
  subzone: string;
  node: string;
  clusterId: string;
}

export interface LbChoice {
  workload: Workload;
  targetPort: number;
  /** The chosen endpoint's rank (0 when the service does not rank). */
  rank: number;
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

// ---------------------------------------------------------------------------------------------------------------
// Service scope (istiod: matchServiceScope)

/** Without serviceScopeConfigs, a service is global when labelled istio.io/global=true. */
const DEFAULT_SCOPES: ServiceScopeConfig[] = [
  { servicesSelector: { matchLabels: { "istio.io/global": "true" }, matchExpressions: [] }, scope: "GLOBAL" },
];

/**
 * ServiceScope: whether `svc` is global, so clients see endpoints in other clusters (a service that is not
 * global never leaves its cluster). As istiod: global if any GLOBAL config selects it (LOCAL ones decide
 * nothing); a config selects when both its selectors match (absent or empty selectors match all); inside a
 * selector matchLabels and every matchExpression must hold. A config with an invalid selector (In/NotIn without
 * values, Exists/DoesNotExist with values) is skipped. No configs (or an empty list): the istio.io/global=true
 * label. `namespaceLabels` gives a namespace's labels; when it does not know the namespace, configs with a
 * namespaceSelector do not select (istiod skips a config whose namespace it cannot find).
 */
export function isGlobalService(
  svc: Service,
  scopes: ServiceScopeConfig[] | undefined,
  namespaceLabels?: (ns: string) => Record<string, string> | undefined,
): boolean {
  for (const c of scopes?.length ? scopes : DEFAULT_SCOPES) {
    if (c.scope !== "GLOBAL" || !selects(c.servicesSelector, svc.labels)) continue;
    if (isEmptySelector(c.namespaceSelector)) return true;
    const nsLabels = namespaceLabels?.(svc.namespace);
    if (nsLabels && selects(c.namespaceSelector, nsLabels)) return true;
  }
  return false;
}

function isEmptySelector(s: LabelSelector | undefined): boolean {
  return !s || (Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0);
}

/** Kubernetes label selector semantics; false for an invalid selector. */
function selects(s: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!s) return true;
  for (const [k, v] of Object.entries(s.matchLabels)) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  for (const e of s.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    switch (e.operator) {
      case "In":
        if (e.values.length === 0 || !has || !e.values.includes(labels[e.key]!)) return false;
        break;
      case "NotIn":
        if (e.values.length === 0 || (has && e.values.includes(labels[e.key]!))) return false;
        break;
      case "Exists":
        if (e.values.length > 0 || !has) return false;
        break;
      case "DoesNotExist":
        if (e.values.length > 0 || has) return false;
        break;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// istiod's load-balancing config of a Kubernetes Service (ambient constructService)

/** The Kubernetes Service fields istiod reads for load balancing. */
export interface KubeServiceTraffic {
  /** spec.trafficDistribution: PreferClose, PreferSameZone, PreferSameNode. */
  trafficDistribution?: string;
  /** spec.internalTrafficPolicy: Local wins over trafficDistribution. */
  internalTrafficPolicy?: string;
  /** spec.publishNotReadyAddresses: unready endpoints count (ALLOW_ALL). */
  publishNotReadyAddresses?: boolean;
  /** networking.istio.io/traffic-distribution is read when trafficDistribution names nothing istiod knows. */
  annotations?: Record<string, string>;
}

const TRAFFIC_DISTRIBUTION_ANNOTATION = "networking.istio.io/traffic-distribution";
const PREFER_SAME_ZONE: RoutingPreference[] = ["NETWORK", "REGION", "ZONE"];
const PREFER_SAME_NODE: RoutingPreference[] = ["NETWORK", "REGION", "ZONE", "SUBZONE", "NODE"];

function preferredScopes(svc: KubeServiceTraffic): RoutingPreference[] | undefined {
  switch (svc.trafficDistribution) {
    case "PreferClose":
    case "PreferSameZone":
      return PREFER_SAME_ZONE;
    case "PreferSameNode":
      return PREFER_SAME_NODE;
  }
  switch (svc.annotations?.[TRAFFIC_DISTRIBUTION_ANNOTATION]?.toLowerCase()) {
    case "preferclose":
    case "prefersamezone":
      return PREFER_SAME_ZONE;
    case "prefersamenode":
      return PREFER_SAME_NODE;
  }
  return undefined;
}

/**
 * The `loadBalancer` istiod gives a Kubernetes Service: internalTrafficPolicy Local → STRICT [NODE]; else
 * PreferClose / PreferSameZone → FAILOVER [NETWORK, REGION, ZONE], PreferSameNode → FAILOVER [NETWORK, REGION,
 * ZONE, SUBZONE, NODE]; publishNotReadyAddresses → ALLOW_ALL. Undefined: none (spread over all endpoints).
 */
export function loadBalancerFromKubeService(svc: KubeServiceTraffic): LoadBalancing | undefined {
  let lb: LoadBalancing | undefined;
  if (svc.internalTrafficPolicy === "Local") {
    lb = { routingPreferences: ["NODE"], mode: "STRICT", healthPolicy: "ONLY_HEALTHY" };
  } else {
    const scopes = preferredScopes(svc);
    if (scopes) lb = { routingPreferences: [...scopes], mode: "FAILOVER", healthPolicy: "ONLY_HEALTHY" };
  }
  if (svc.publishNotReadyAddresses) {
    lb = { ...(lb ?? { routingPreferences: [], mode: "UNSPECIFIED" }), healthPolicy: "ALLOW_ALL" };
  }
  return lb;
}

// ---------------------------------------------------------------------------------------------------------------
// The rules, shared by the Wasm tables and the pure-JS pickEndpoint

/** How a service's endpoints are chosen, resolved once per service. */
interface Rules {
  mode: number;
  allowAll: boolean;
  sameCluster: boolean;
  /** At most LB_MAX_PREFS (a longer list necessarily repeats a scope; the rest is dropped). */
  scopes: RoutingPreference[];
}

const SCOPE_WORD: Record<RoutingPreference, number> = {
  NETWORK: LB_NETWORK,
  CLUSTER: LB_CLUSTER,
  REGION: LB_REGION,
  ZONE: LB_ZONE,
  SUBZONE: LB_SUBZONE,
  NODE: LB_NODE,
};

function rulesOf(svc: Service, global: boolean): Rules {
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

function policyOf(r: Rules): number {
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
function targetPortOf(svc: Service, own: Record<number, number> | undefined, port: number): number {
  return own?.[port] || svc.ports[port] || 0;
}

function hasAddress(w: Workload): boolean {
  return w.workloadIps.length > 0 || w.hostname !== "";
}

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

const SOURCE_FIELD: Record<RoutingPreference, keyof LbSource> = {
  NETWORK: "network",
  CLUSTER: "clusterId",
  REGION: "region",
  ZONE: "zone",
  SUBZONE: "subzone",
  NODE: "node",
};

/** The pure-JS twin of rankOf in assembly/lb/table.ts: the endpoint's rank, or -1 if it is filtered out. */
function rankOf(r: Rules, src: LbSource, w: Workload, target: number): number {
  if (target === 0 || w.capacity === 0) return -1;
  if (!r.allowAll && w.status !== "Healthy") return -1;
  const onNetwork = w.network === src.network;
  // On the source's network an endpoint needs an address; off it, a network gateway to reach it through.
  if (onNetwork ? !hasAddress(w) : !w.networkGateway) return -1;
  if (r.sameCluster && w.clusterId !== src.clusterId) return -1;
  if (r.mode === LB_MODE_ALL) return 0;
  const n = r.scopes.length;
  let rank = 0, i = 0, full = n;
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

/** A uniform u32 from a [0, 1) source: both implementations draw with it, so equal sequences give equal picks. */
function randomU32(random: () => number): number {
  return (random() * 4294967296) >>> 0;
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

// ---------------------------------------------------------------------------------------------------------------
// The stateful load balancer (Wasm tables)

/** The lb_* exports of assembly/lb/exports.ts. */
interface LbExports {
  lb_new(failures: number, baseEjectionMs: number, maxEjectionMs: number): number;
  lb_free(ctx: number): void;
  lb_endpoints_reserve(ctx: number, count: number): number;
  lb_endpoint_reset(ctx: number, id: number): void;
  lb_report_failure(ctx: number, id: number, now: number): number;
  lb_report_success(ctx: number, id: number, now: number): void;
  lb_ejected_until(ctx: number, id: number): number;
  lb_table_new(ctx: number, count: number, ports: number): number;
  lb_table_records(t: number): number;
  lb_table_free(t: number): void;
  lb_pick(t: number, port: number, policy: number, network: number, cluster: number, region: number, zone: number,
    subzone: number, node: number, rand: number, now: number): number;
  lb_pick_pair(t: number, port: number, policy: number, network: number, cluster: number, region: number,
    zone: number, subzone: number, node: number, rand: number, rand2: number, now: number): number;
  lb_pick_rank(): number;
  lb_pick_second(): number;
}

export interface OutlierOptions {
  /** Consecutive dial failures that eject an endpoint. */
  failures?: number;
  /** The first ejection's length; each further one (without a success between) doubles it. */
  baseEjectionMs?: number;
  maxEjectionMs?: number;
}

export const OUTLIER_DEFAULTS: Required<OutlierOptions> = {
  failures: 5,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
};

export interface LoadBalancerOptions {
  /** Default: this thread's codec. */
  codec?: Codec;
  /** [0, 1); default Math.random. */
  random?: () => number;
  /** A monotonic clock in ms; default performance.now. */
  now?: () => number;
  outlier?: OutlierOptions;
  /**
   * Where this proxy runs, for pickLeastLoaded: endpoints on this network (default "", the default network), and
   * in this cluster if given.
   */
  local?: { network: string; clusterId?: string };
  namespaceLabels?: (ns: string) => Record<string, string> | undefined;
}

/** One service's table: the Wasm handle, and what maps a record back to an endpoint. */
interface Table {
  ptr: number;
  /** Where record 0's words start in the codec's i32 view, and words per record. */
  records: number;
  stride: number;
  /** The service's rules, for pick. */
  policy: number;
  /** pickLeastLoaded's: local endpoints, no ranking. */
  localPolicy: number;
  ports: number[];
  workloads: Workload[];
}

const SCOPE_COUNT = 6;
/** The time a pick passes when no ejection can be in force: after every ejection's end, with no clock read. */
const AFTER_EJECTIONS = Number.MAX_VALUE;

/**
 * The load balancer the proxy uses: pickEndpoint's rules over Wasm tables rebuilt on every ProxyState "updated",
 * with outlier detection (reportFailure / reportSuccess: an endpoint failing `failures` dials in a row is skipped
 * for a growing interval unless every candidate is) and a power-of-two-choices pick for the gateway. A pick costs
 * a few map lookups and one Wasm call (a binary search over the cached candidate set).
 */
export class LoadBalancer {
  private readonly codec: Codec;
  private readonly ex: LbExports;
  private ctx: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly local: { network: string; clusterId?: string };
  private readonly namespaceLabels?: (ns: string) => Record<string, string> | undefined;
  private tables = new Map<Service, Table>();
  private tablesByKey = new Map<string, Table>();
  /** Locality strings as small integers, per build. */
  private ids = new Map<string, number>();
  private sources = new WeakMap<Workload, Int32Array>();
  private localIds: Int32Array = new Int32Array(SCOPE_COUNT);
  /** Workload uid -> outlier slot; kept across builds so ejections survive config updates. */
  private readonly endpointIds = new Map<string, number>();
  private readonly freeIds: number[] = [];
  private nextId = 0;
  /** The build that last saw each slot's workload. */
  private readonly seenInBuild: number[] = [];
  private build = 0;
  /** When the last ejection started ends; 0 once that time has passed. */
  private ejectionsEnd = 0;
  private readonly onUpdated = () => this.rebuild();

  constructor(private readonly state: ProxyState, opts: LoadBalancerOptions = {}) {
    this.codec = opts.codec ?? getCodec();
    this.ex = this.codec.ex as unknown as LbExports;
    const o = { ...OUTLIER_DEFAULTS, ...opts.outlier };
    this.ctx = this.ex.lb_new(o.failures, o.baseEjectionMs, o.maxEjectionMs);
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? (() => performance.now());
    this.local = opts.local ?? { network: "" };
    this.namespaceLabels = opts.namespaceLabels;
    this.rebuild();
    state.on("updated", this.onUpdated);
  }

  /** The endpoint for a connection from `source` to `svc`:`port`, or undefined if none qualifies. */
  pick(source: Workload, svc: Service, port: number): LbChoice | undefined {
    const t = this.tableOf(svc);
    const k = t ? t.ports.indexOf(port) : -1;
    if (k < 0) return undefined;
    const s = this.sourceIds(source);
    const i = this.ex.lb_pick(t!.ptr, k, t!.policy, s[0]!, s[1]!, s[2]!, s[3]!, s[4]!, s[5]!,
      randomU32(this.random), this.pickTime());
    return i < 0 ? undefined : this.choice(t!, k, i);
  }

  /**
   * For the east-west gateway: of two candidates drawn by capacity among the local endpoints (see
   * LoadBalancerOptions.local), the one with fewer active streams per unit of capacity, so long-lived pooled
   * connections do not pin load to a few pods. `active` gives an endpoint's active stream count.
   */
  pickLeastLoaded(svc: Service, port: number, active: (w: Workload) => number): LbChoice | undefined {
    const t = this.tableOf(svc);
    const k = t ? t.ports.indexOf(port) : -1;
    if (k < 0) return undefined;
    const s = this.localIds;
    const a = this.ex.lb_pick_pair(t!.ptr, k, t!.localPolicy, s[0]!, s[1]!, s[2]!, s[3]!, s[4]!, s[5]!,
      randomU32(this.random), randomU32(this.random), this.pickTime());
    if (a < 0) return undefined;
    const b = this.ex.lb_pick_second();
    const wa = t!.workloads[a]!;
    const wb = b < 0 ? undefined : t!.workloads[b]!;
    const lighter = wb && active(wb) * wa.capacity < active(wa) * wb.capacity;
    return this.choice(t!, k, lighter ? b : a);
  }

  /** A dial to `w` failed. */
  reportFailure(w: Workload): void {
    const id = this.endpointIds.get(w.uid);
    if (id === undefined || !this.ctx || !this.ex.lb_report_failure(this.ctx, id, this.now())) return;
    this.ejectionsEnd = Math.max(this.ejectionsEnd, this.ex.lb_ejected_until(this.ctx, id));
  }

  /** A dial to `w` succeeded: its failure count and ejection interval start over, and an ejection is lifted. */
  reportSuccess(w: Workload): void {
    const id = this.endpointIds.get(w.uid);
    if (id !== undefined && this.ctx) this.ex.lb_report_success(this.ctx, id, this.now());
  }

  /** Whether outlier detection currently ejects `w`. */
  isEjected(w: Workload): boolean {
    const id = this.endpointIds.get(w.uid);
    return id !== undefined && this.ctx !== 0 && this.ex.lb_ejected_until(this.ctx, id) > this.now();
  }

  /** Stops following the state and frees the Wasm tables. */
  close(): void {
    if (!this.ctx) return;
    this.state.off("updated", this.onUpdated);
    this.freeTables();
    this.ex.lb_free(this.ctx);
    this.ctx = 0;
  }

  /** The clock, read only while an ejection may be in force (it is a quarter of a cached pick's cost). */
  private pickTime(): number {
    if (this.ejectionsEnd === 0) return AFTER_EJECTIONS;
    const now = this.now();
    if (now >= this.ejectionsEnd) this.ejectionsEnd = 0;
    return now;
  }

  private choice(t: Table, k: number, i: number): LbChoice {
    this.codec.refresh(); // the pick may have grown memory (a candidate set cached)
    const targetPort = this.codec.i32[t.records + i * t.stride + LB_TARGETS + k]!;
    return { workload: t.workloads[i]!, targetPort, rank: this.ex.lb_pick_rank() };
  }

  private tableOf(svc: Service): Table | undefined {
    // A Service object from an older config still finds its service.
    return this.tables.get(svc) ?? this.tablesByKey.get(serviceKey(svc));
  }

  private sourceIds(w: Workload): Int32Array {
    let s = this.sources.get(w);
    if (!s) {
      s = this.idsOf(lbSourceOf(w));
      this.sources.set(w, s);
    }
    return s;
  }

  /** A source's locality ids by scope word; a string no endpoint has is -1 (matches nothing). */
  private idsOf(src: LbSource): Int32Array {
    const s = new Int32Array(SCOPE_COUNT);
    for (const scope of Object.keys(SCOPE_WORD) as RoutingPreference[]) {
      s[SCOPE_WORD[scope]] = this.ids.get(src[SOURCE_FIELD[scope]]) ?? -1;
    }
    return s;
  }

  private intern(s: string): number {
    let id = this.ids.get(s);
    if (id === undefined) this.ids.set(s, (id = this.ids.size));
    return id;
  }

  private freeTables(): void {
    for (const t of this.tablesByKey.values()) this.ex.lb_table_free(t.ptr);
    this.tables = new Map();
    this.tablesByKey = new Map();
  }

  private rebuild(): void {
    const cfg = this.state.config;
    this.freeTables();
    this.ids = new Map();
    this.sources = new WeakMap();
    this.assignEndpointIds(cfg.workloads);
    for (const svc of cfg.services) {
      const t = this.buildTable(svc, isGlobalService(svc, cfg.serviceScopeConfigs, this.namespaceLabels));
      if (!t) continue;
      this.tables.set(svc, t);
      this.tablesByKey.set(serviceKey(svc), t);
    }
    const local = this.local;
    this.localIds = this.idsOf({ network: local.network, clusterId: local.clusterId ?? "", region: "", zone: "",
      subzone: "", node: "" });
  }

  /** Outlier slots: new workloads take one, workloads gone free theirs (cleared for reuse). */
  private assignEndpointIds(workloads: Workload[]): void {
    const build = ++this.build;
    for (const w of workloads) {
      let id = this.endpointIds.get(w.uid);
      if (id === undefined) this.endpointIds.set(w.uid, (id = this.freeIds.pop() ?? this.nextId++));
      this.seenInBuild[id] = build;
    }
    for (const [uid, id] of this.endpointIds) {
      if (this.seenInBuild[id] === build) continue;
      this.endpointIds.delete(uid);
      this.freeIds.push(id);
      this.ex.lb_endpoint_reset(this.ctx, id);
    }
    if (this.ex.lb_endpoints_reserve(this.ctx, this.nextId) < 0) {
      log.warn("too many workloads for outlier detection; the excess is never ejected", { workloads: this.nextId });
    }
  }

  private buildTable(svc: Service, global: boolean): Table | undefined {
    const ports = Object.keys(svc.ports).map(Number);
    if (ports.length === 0) return undefined;
    const workloads = this.state.endpoints(svc, ports[0]!).map((e) => e.workload);
    const n = workloads.length, np = ports.length, stride = LB_TARGETS + np;
    if (n === 0) return undefined;
    const ptr = this.ex.lb_table_new(this.ctx, n, np);
    if (ptr === 0) {
      log.warn("service too large for a load-balancing table; it gets no endpoints",
        { service: serviceKey(svc), endpoints: n, ports: np });
      return undefined;
    }
    const key = serviceKey(svc);
    this.codec.refresh();
    const m = this.codec.i32;
    const records = this.ex.lb_table_records(ptr) >> 2;
    for (let i = 0, o = records; i < n; i++, o += stride) {
      const w = workloads[i]!;
      const own = w.services[key];
      const l = w.locality;
      m[o + LB_NETWORK] = this.intern(w.network);
      m[o + LB_CLUSTER] = this.intern(w.clusterId);
      m[o + LB_REGION] = this.intern(l?.region ?? "");
      m[o + LB_ZONE] = this.intern(l?.zone ?? "");
      m[o + LB_SUBZONE] = this.intern(l?.subzone ?? "");
      m[o + LB_NODE] = this.intern(w.node);
      m[o + LB_ENDPOINT_ID] = this.endpointIds.get(w.uid)!;
      m[o + LB_FLAGS] = (w.status === "Healthy" ? LB_HEALTHY : 0) | (hasAddress(w) ? LB_HAS_ADDRESS : 0) |
        (w.networkGateway ? LB_HAS_GATEWAY : 0);
      m[o + LB_CAPACITY] = w.capacity; // u32: the Int32Array keeps its bits
      for (let k = 0; k < np; k++) m[o + LB_TARGETS + k] = targetPortOf(svc, own, ports[k]!);
    }
    const rules = rulesOf(svc, global);
    const localPolicy = LB_MODE_ALL | LB_SAME_NETWORK | (rules.allowAll ? LB_ALLOW_ALL : 0) |
      (this.local.clusterId !== undefined ? LB_SAME_CLUSTER : 0);
    return { ptr, records, stride, policy: policyOf(rules), localPolicy, ports, workloads };
  }
}
