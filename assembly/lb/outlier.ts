// Passive outlier detection: a slot per endpoint id (the host's per-workload slot, kept across table rebuilds)
// holding consecutive failures, ejections since the last success and when the current ejection ends. Picks in
// table.ts skip an endpoint while it is ejected; `generation` tells them a cached candidate set is stale.

import { allocZeroed, free, grow } from "../memory";
import { LB_MAX_ENDPOINTS } from "./layout";

/** One LoadBalancer's outlier state: a slot per endpoint id. */
@unmanaged export class Ctx {
  slots: usize;
  slotCount: i32;
  /** Consecutive failures that eject. */
  threshold: i32;
  baseMs: f64;
  maxMs: f64;
  /** Bumped when an ejection starts or is lifted early: candidate sets cached before are stale. */
  generation: i32;
}

// A slot: consecutive failures (i32), ejections since the last success (i32), ejected until (f64, ms).
const SLOT_BYTES: i32 = 16;
const SLOT_FAILURES: usize = 0;
const SLOT_EJECTIONS: usize = 4;
const SLOT_UNTIL: usize = 8;

export function ctxNew(threshold: i32, baseMs: f64, maxMs: f64): Ctx {
  const c = changetype<Ctx>(allocZeroed(offsetof<Ctx>()));
  c.threshold = max(threshold, 1);
  c.baseMs = baseMs;
  c.maxMs = maxMs;
  // Zeroed cache ways carry generation 0, so they never pass for current.
  c.generation = 1;
  return c;
}

export function ctxFree(c: Ctx): void {
  free(c.slots, c.slotCount * SLOT_BYTES);
  free(changetype<usize>(c), offsetof<Ctx>());
}

/** Makes room for endpoint ids [0, count); new slots start clean. Returns 0, or -1 past the limit. */
export function ctxReserve(c: Ctx, count: i32): i32 {
  if (count < 0 || count > LB_MAX_ENDPOINTS) return -1;
  const had = c.slotCount * SLOT_BYTES;
  if (count * SLOT_BYTES <= had) return 0;
  c.slots = grow(c.slots, had, count * SLOT_BYTES, had, true); // operator data: not budgeted
  memory.fill(c.slots + <usize>had, 0, <usize>(count * SLOT_BYTES - had));
  c.slotCount = count;
  return 0;
}

@inline function slotOf(c: Ctx, id: i32): usize {
  return c.slots + <usize>id * SLOT_BYTES;
}

@inline function known(c: Ctx, id: i32): bool {
  return <u32>id < <u32>c.slotCount;
}

/** When the endpoint's ejection ends; 0 if it was never ejected (or the id is unknown). */
export function ejectedUntil(c: Ctx, id: i32): f64 {
  return known(c, id) ? load<f64>(slotOf(c, id), SLOT_UNTIL) : 0;
}

/** Clears a slot (its id is being given to another workload). */
export function slotReset(c: Ctx, id: i32): void {
  if (!known(c, id)) return;
  memory.fill(slotOf(c, id), 0, <usize>SLOT_BYTES);
  c.generation++;
}

/**
 * A failed dial. The threshold-th consecutive failure ejects the endpoint for base * 2^(ejections since its last
 * success), capped. Returns 1 if this failure ejected it.
 */
export function reportFailure(c: Ctx, id: i32, now: f64): i32 {
  if (!known(c, id)) return 0;
  const p = slotOf(c, id);
  const failures = load<i32>(p, SLOT_FAILURES) + 1;
  if (failures < c.threshold) {
    store<i32>(p, failures, SLOT_FAILURES);
    return 0;
  }
  const ejections = load<i32>(p, SLOT_EJECTIONS);
  let ms = c.baseMs;
  for (let k = 0; k < ejections && ms < c.maxMs; k++) ms *= 2;
  store<i32>(p, 0, SLOT_FAILURES);
  store<i32>(p, ejections + 1, SLOT_EJECTIONS);
  store<f64>(p, now + min(ms, c.maxMs), SLOT_UNTIL);
  c.generation++;
  return 1;
}

/** A successful dial: failures and the ejection interval start over, and an ejection in force is lifted. */
export function reportSuccess(c: Ctx, id: i32, now: f64): void {
  if (!known(c, id)) return;
  const p = slotOf(c, id);
  store<i32>(p, 0, SLOT_FAILURES);
  store<i32>(p, 0, SLOT_EJECTIONS);
  if (load<f64>(p, SLOT_UNTIL) > now) c.generation++;
  store<f64>(p, 0, SLOT_UNTIL);
}
