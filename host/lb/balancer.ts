// The load balancer the proxy uses: which endpoint of a service a connection goes to. ztunnel's rules (rules.ts:
// filter, rank by the matched prefix of the routing preferences, capacity-weighted draw) run in Wasm tables
// (assembly/lb/table.ts) rebuilt on every ProxyState "updated", with outlier detection (outlier.ts) and, for the
// east-west gateway, a least-loaded two-choice pick.

import { serviceKey, type RoutingPreference, type Service, type Workload } from "../model/index.js";
import type { ProxyState } from "../state/index.js";
import { getCodec, type Codec } from "../wasm/codec.js";
import { logger } from "../log.js";
import {
  LB_ALLOW_ALL,
  LB_CAPACITY,
  LB_CLUSTER,
  LB_ENDPOINT_ID,
  LB_FLAGS,
  LB_HAS_ADDRESS,
  LB_HAS_GATEWAY,
  LB_HEALTHY,
  LB_MODE_ALL,
  LB_NETWORK,
  LB_NODE,
  LB_REGION,
  LB_SAME_CLUSTER,
  LB_SAME_NETWORK,
  LB_SUBZONE,
  LB_TARGETS,
  LB_ZONE,
} from "../../assembly/lb/layout.js";
import { OutlierDetector, type OutlierOptions } from "./outlier.js";
import type { LbExports } from "../wasm/exports.js";
import {
  SCOPE_WORD,
  SOURCE_FIELD,
  hasAddress,
  lbSourceOf,
  policyOf,
  randomU32,
  rulesOf,
  targetPortOf,
  type LbSource,
} from "./rules.js";
import { isGlobalService } from "./scope.js";

const log = logger("lb");

export interface LbChoice {
  workload: Workload;
  targetPort: number;
  /** The chosen endpoint's rank (0 when the service does not rank). */
  rank: number;
}

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

/**
 * ztunnel's endpoint rules over Wasm tables rebuilt on every ProxyState "updated", with outlier detection
 * (reportFailure / reportSuccess) and a power-of-two-choices pick for the gateway. A pick costs a few map lookups
 * and one Wasm call (a binary search over the cached candidate set).
 */
export class LoadBalancer {
  private readonly codec: Codec;
  private readonly ex: LbExports;
  private readonly outliers: OutlierDetector;
  private readonly random: () => number;
  private readonly local: { network: string; clusterId?: string };
  private readonly namespaceLabels?: (ns: string) => Record<string, string> | undefined;
  private tables = new Map<Service, Table>();
  private tablesByKey = new Map<string, Table>();
  /** Locality strings as small integers, per build. */
  private ids = new Map<string, number>();
  private sources = new WeakMap<Workload, Int32Array>();
  private localIds: Int32Array = new Int32Array(SCOPE_COUNT);
  private readonly onUpdated = () => this.rebuild();

  constructor(
    private readonly state: ProxyState,
    opts: LoadBalancerOptions = {},
  ) {
    this.codec = opts.codec ?? getCodec();
    this.ex = this.codec.ex;
    const now = opts.now ?? (() => performance.now());
    this.outliers = new OutlierDetector(this.ex, now, opts.outlier);
    this.random = opts.random ?? Math.random;
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
    return this.pickIn(t!, k, t!.policy, s);
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
    const a = this.draw(t!, k, t!.localPolicy, this.localIds);
    if (a < 0) return undefined;
    const b = this.ex.lb_pick_second(randomU32(this.random));
    const wa = t!.workloads[a]!;
    const wb = b < 0 ? undefined : t!.workloads[b]!;
    const lighter = wb && active(wb) * wa.capacity < active(wa) * wb.capacity;
    return this.choice(t!, k, lighter ? b : a);
  }

  /**
   * An instance of a network gateway named by its service (`networkGateway: {destination: ns/hostname}`): a
   * capacity-weighted draw among the healthy endpoints of `svc` on the gateway's `network` that have an address,
   * outlier detection applied, no locality ranking. The gateway is dialled on its HBONE port whether or not the
   * service lists it (`port`); a service without it draws over its first port's endpoints.
   */
  pickGateway(svc: Service, port: number, network: string): LbChoice | undefined {
    const t = this.tableOf(svc);
    if (!t) return undefined;
    const k = Math.max(0, t.ports.indexOf(port));
    const s = this.idsOf({ network, clusterId: "", region: "", zone: "", subzone: "", node: "" });
    return this.pickIn(t, k, LB_MODE_ALL | LB_SAME_NETWORK, s);
  }

  /** A dial to `w` failed. */
  reportFailure(w: Workload): void {
    this.outliers.reportFailure(w);
  }

  /** A dial to `w` succeeded: its failure count and ejection interval start over, and an ejection is lifted. */
  reportSuccess(w: Workload): void {
    this.outliers.reportSuccess(w);
  }

  /** Whether outlier detection currently ejects `w`. */
  isEjected(w: Workload): boolean {
    return this.outliers.isEjected(w);
  }

  /** Stops following the state and frees the Wasm tables. */
  close(): void {
    if (!this.outliers.ctx) return;
    this.state.off("updated", this.onUpdated);
    this.freeTables();
    this.outliers.close();
  }

  /** One Wasm pick over table `t` at port slot `k` under `policy`, from the source's locality ids `s`. */
  private pickIn(t: Table, k: number, policy: number, s: Int32Array): LbChoice | undefined {
    const i = this.draw(t, k, policy, s);
    return i < 0 ? undefined : this.choice(t, k, i);
  }

  /** The record index the Wasm pick draws, or -1. */
  private draw(t: Table, k: number, policy: number, s: Int32Array): number {
    return this.ex.lb_pick(
      t.ptr,
      k,
      policy,
      s[0]!,
      s[1]!,
      s[2]!,
      s[3]!,
      s[4]!,
      s[5]!,
      randomU32(this.random),
      this.outliers.pickTime(),
    );
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
    this.outliers.assign(cfg.workloads);
    for (const svc of cfg.services) {
      const t = this.buildTable(svc, isGlobalService(svc, cfg.serviceScopeConfigs, this.namespaceLabels));
      if (!t) continue;
      this.tables.set(svc, t);
      this.tablesByKey.set(serviceKey(svc), t);
    }
    const local = this.local;
    this.localIds = this.idsOf({
      network: local.network,
      clusterId: local.clusterId ?? "",
      region: "",
      zone: "",
      subzone: "",
      node: "",
    });
  }

  private buildTable(svc: Service, global: boolean): Table | undefined {
    const ports = Object.keys(svc.ports).map(Number);
    if (ports.length === 0) return undefined;
    const workloads = this.state.endpoints(svc, ports[0]!).map((e) => e.workload);
    const n = workloads.length,
      np = ports.length,
      stride = LB_TARGETS + np;
    if (n === 0) return undefined;
    const ptr = this.ex.lb_table_new(this.outliers.ctx, n, np) >>> 0;
    if (ptr === 0) {
      log.warn("service too large for a load-balancing table; it gets no endpoints", {
        service: serviceKey(svc),
        endpoints: n,
        ports: np,
      });
      return undefined;
    }
    const key = serviceKey(svc);
    this.codec.refresh();
    const m = this.codec.i32;
    const records = this.ex.lb_table_records(ptr) >>> 2;
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
      m[o + LB_ENDPOINT_ID] = this.outliers.slotOf(w)!;
      m[o + LB_FLAGS] =
        (w.status === "Healthy" ? LB_HEALTHY : 0) |
        (hasAddress(w) ? LB_HAS_ADDRESS : 0) |
        (w.networkGateway ? LB_HAS_GATEWAY : 0);
      m[o + LB_CAPACITY] = w.capacity; // u32: the Int32Array keeps its bits
      for (let k = 0; k < np; k++) m[o + LB_TARGETS + k] = targetPortOf(svc, own, ports[k]!);
    }
    const rules = rulesOf(svc, global);
    const localPolicy =
      LB_MODE_ALL |
      LB_SAME_NETWORK |
      (rules.allowAll ? LB_ALLOW_ALL : 0) |
      (this.local.clusterId !== undefined ? LB_SAME_CLUSTER : 0);
    return { ptr, records, stride, policy: policyOf(rules), localPolicy, ports, workloads };
  }
}
