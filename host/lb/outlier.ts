// Passive outlier detection (what ztunnel lacks): an endpoint failing `failures` dials in a row is skipped for a
// growing interval unless every candidate is. The counts live in Wasm (assembly/lb/outlier.ts), one slot per
// workload; this side hands out the slots (kept across config updates, so ejections survive them) and knows when
// no ejection can be in force, so a pick need not read the clock.

import type { Workload } from "../model/index.js";
import { logger } from "../log.js";
import type { LbExports } from "../wasm/exports.js";

const log = logger("lb");

/** The outlier exports of assembly/lb/exports.ts. */
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

/** The time a pick passes when no ejection can be in force: after every ejection's end, with no clock read. */
const AFTER_EJECTIONS = Number.MAX_VALUE;

/** One load balancer's outlier state: the Wasm context (its tables are made in it) and the workload slots. */
export class OutlierDetector {
  /** The Wasm context; 0 once closed. */
  ctx: number;
  /** Workload uid -> outlier slot. */
  private readonly endpointIds = new Map<string, number>();
  private readonly freeIds: number[] = [];
  private nextId = 0;
  /** The build that last saw each slot's workload. */
  private readonly seenInBuild: number[] = [];
  private build = 0;
  /** When the last ejection started ends; 0 once that time has passed. */
  private ejectionsEnd = 0;

  constructor(
    private readonly ex: LbExports,
    private readonly now: () => number,
    opts?: OutlierOptions,
  ) {
    const o = { ...OUTLIER_DEFAULTS, ...opts };
    this.ctx = ex.lb_new(o.failures, o.baseEjectionMs, o.maxEjectionMs) >>> 0;
  }

  /** A workload's slot, or undefined if it was not in the last build. */
  slotOf(w: Workload): number | undefined {
    return this.endpointIds.get(w.uid);
  }

  /** Outlier slots for a new config: new workloads take one, workloads gone free theirs (cleared for reuse). */
  assign(workloads: Workload[]): void {
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

  /** Whether `w` is ejected now. */
  isEjected(w: Workload): boolean {
    const id = this.endpointIds.get(w.uid);
    return id !== undefined && this.ctx !== 0 && this.ex.lb_ejected_until(this.ctx, id) > this.now();
  }

  /** The clock, read only while an ejection may be in force (it is a quarter of a cached pick's cost). */
  pickTime(): number {
    if (this.ejectionsEnd === 0) return AFTER_EJECTIONS;
    const now = this.now();
    if (now >= this.ejectionsEnd) this.ejectionsEnd = 0;
    return now;
  }

  /** Frees the Wasm context (its tables must be freed first). */
  close(): void {
    if (!this.ctx) return;
    this.ex.lb_free(this.ctx);
    this.ctx = 0;
  }
}
