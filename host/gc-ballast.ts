// A GC ballast for the proxy process: long-lived arrays in V8's old generation, taken in 6 MB steps when bulk
// traffic shows V8's mark-compact churn (at most HBONE_GC_BALLAST_MB, default 12), then held for the process's life.
//
// Why: a proxy's live heap is small (~8 MB once started). A bulk tunnel allocates a backing store per socket read,
// and the ones still in flight at a scavenge move to the old generation, where V8 counts their bytes against the
// old generation's limit until the next mark-compact: with a heap that small the limit is a few MB away, so V8
// started a full mark-compact after nearly every scavenge (25-60 per GiB, --trace-gc; ~25 ms of marking each),
// which cost ~30 % more CPU per byte and ~30 % of the throughput on a loopback pair. A larger live heap moves the
// limit further out (V8 sets it at a multiple of what a mark-compact leaves live); then it is ~1 per GiB. The same
// trick as Go's GC ballast.
//
// When: an idle proxy has no use for it (6-12 MB of its RSS), so a GC observer waits for the churn — ARM_MARK_COMPACTS
// mark-compacts within ARM_WINDOW_MS, which a bulk tunnel reaches in under a second — and takes a step; if the churn
// goes on, another, up to the maximum, then stops observing. Nothing runs per chunk of data. V8's memory reducer (an
// idle heap's own mark-compacts, flagged "all external memory") is not counted, nor a forced GC.

import { PerformanceObserver, constants } from "node:perf_hooks";
import { envInt } from "./env.js";
import { logger } from "./log.js";

const log = logger("gc");

/** A ballast is a few MB: more is a typo that would take the node's memory (refused at start, naming the variable). */
const MAX_MB = 1024;
/** What one step takes: 6 MB was enough for most processes measured, 12 MB for all. */
const STEP_MB = 6;
/** Mark-compacts within the window that take a step: bulk churn (a bulk tunnel runs several a second). */
const ARM_MARK_COMPACTS = 3;
const ARM_WINDOW_MS = 3_000;
const NOT_COUNTED =
  constants.NODE_PERFORMANCE_GC_FLAGS_FORCED | constants.NODE_PERFORMANCE_GC_FLAGS_ALL_EXTERNAL_MEMORY;

/** What a "gc" performance entry carries (its typings leave it out). */
interface GcDetail {
  kind: number;
  flags: number;
}

const ballast: number[][] = [];
let heldMb = 0;
let observer: PerformanceObserver | null = null;

/** The most the ballast may hold, from HBONE_GC_BALLAST_MB (default 12), validated: a bad value throws, naming it. */
export function gcBallastMb(): number {
  const mb = envInt("HBONE_GC_BALLAST_MB") ?? 12;
  if (mb > MAX_MB) throw new Error(`HBONE_GC_BALLAST_MB: at most ${MAX_MB} (MB), got ${mb}`);
  return mb;
}

/** MB the ballast holds now. */
export function gcBallastHeldMb(): number {
  return heldMb;
}

/** Takes `mb` more of ballast now. */
function take(mb: number): void {
  ballast.push(new Array<number>(Math.round((mb * 1024 * 1024) / 8)).fill(0.5));
  heldMb += mb;
}

/** Holds `mb` of ballast now, once (an embedding application or a bench peer decides for itself). */
export function holdGcBallast(mb = gcBallastMb()): void {
  if (heldMb === 0 && mb > 0) take(mb);
}

/** Takes the ballast step by step while bulk traffic makes V8 churn mark-compacts (the CLI's proxy does). */
export function armGcBallast(maxMb = gcBallastMb()): void {
  if (maxMb === 0 || heldMb >= maxMb || observer !== null) return;
  const recent: number[] = [];
  observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const { kind, flags } = (e as unknown as { detail: GcDetail }).detail;
      if (kind !== constants.NODE_PERFORMANCE_GC_MAJOR || flags & NOT_COUNTED) continue;
      recent.push(e.startTime);
      while (recent[0] < e.startTime - ARM_WINDOW_MS) recent.shift();
      if (recent.length < ARM_MARK_COMPACTS) continue;
      recent.length = 0;
      take(Math.min(STEP_MB, maxMb - heldMb));
      log.info("GC ballast taken: bulk traffic churned mark-compacts", { heldMb, maxMb });
      if (heldMb >= maxMb) {
        observer?.disconnect();
        observer = null;
        return;
      }
    }
  });
  observer.observe({ entryTypes: ["gc"] });
}
