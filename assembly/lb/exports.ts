// Load-balancing exports (table.ts, outlier.ts). Re-exported by assembly/index.ts. Flat calls: pointers are the
// handles lb_new and lb_table_new returned; endpoint ids are the host's outlier slots; times are ms (f64).

import { Ctx, ctxNew, ctxFree, ctxReserve, slotReset, reportFailure, reportSuccess, ejectedUntil } from "./outlier";
import { Table, tableNew, tableFree, setKey, pick, pickSecond, forgetPick, lastRank } from "./table";

/** A load balancer's outlier state: eject after `failures` consecutive failures for base ms, doubling, capped. */
export function lb_new(failures: i32, baseEjectionMs: f64, maxEjectionMs: f64): usize {
  return changetype<usize>(ctxNew(failures, baseEjectionMs, maxEjectionMs));
}
/** Frees the outlier state (the host frees its tables first). */
export function lb_free(ctx: usize): void {
  ctxFree(changetype<Ctx>(ctx));
}
/** Room for endpoint ids [0, count): 0, or -1 past the limit. May grow memory. */
export function lb_endpoints_reserve(ctx: usize, count: i32): i32 {
  return ctxReserve(changetype<Ctx>(ctx), count);
}
export function lb_endpoint_reset(ctx: usize, id: i32): void {
  slotReset(changetype<Ctx>(ctx), id);
}
/** 1 if this failure ejected the endpoint. */
export function lb_report_failure(ctx: usize, id: i32, now: f64): i32 {
  return reportFailure(changetype<Ctx>(ctx), id, now);
}
export function lb_report_success(ctx: usize, id: i32, now: f64): void {
  reportSuccess(changetype<Ctx>(ctx), id, now);
}
/** When the endpoint's current or last ejection ends (0: none since its last success). */
export function lb_ejected_until(ctx: usize, id: i32): f64 {
  return ejectedUntil(changetype<Ctx>(ctx), id);
}

/** A table of `count` endpoint records with `ports` target words each, zeroed; 0 past the limits. May grow memory. */
export function lb_table_new(ctx: usize, count: i32, ports: i32): usize {
  return tableNew(changetype<Ctx>(ctx), count, ports);
}
/** Where the host writes the records (layout.ts). */
export function lb_table_records(t: usize): usize {
  return changetype<Table>(t).records;
}
export function lb_table_free(t: usize): void {
  tableFree(changetype<Table>(t));
}

/**
 * Picks an endpoint of table `t` for service port `port` (an index into the host's port list) under `policy`
 * (layout.ts) from a source with the given locality ids, drawing with `rand` (uniform u32). Returns the record
 * index, or -1 if no endpoint qualifies. May grow memory (a candidate set is cached on first use).
 */
export function lb_pick(t: usize, port: i32, policy: i32, network: i32, cluster: i32, region: i32, zone: i32,
                        subzone: i32, node: i32, rand: u32, now: f64): i32 {
  const table = changetype<Table>(t);
  if (<u32>port >= <u32>table.ports) {
    forgetPick();
    return -1;
  }
  setKey(port, policy, network, cluster, region, zone, subzone, node);
  return pick(table, rand, now);
}
/** The rank of the last successful pick's candidates. */
export function lb_pick_rank(): i32 {
  return lastRank;
}
/**
 * For a two-choice pick: a second, distinct candidate of the last lb_pick drawn with `rand2` (uniform u32), or -1
 * if that pick had no other candidate (or found none). Call it right after the pick.
 */
export function lb_pick_second(rand2: u32): i32 {
  return pickSecond(rand2);
}
