// A GC ballast for the proxy process: long-lived arrays in V8's old generation, taken in 6 MB steps when bulk
// traffic shows V8's mark-compacts (at most HBONE_GC_BALLAST_MB, default 12), then held for the process's life.
//
// Why: a proxy's live heap is small (~8 MB once started). A bulk tunnel allocates a backing store per socket read,
// so its scavenges come from that external memory (one per ~32 MB of data), and with an old generation that small
// V8 started a full mark-compact after nearly every one of them (25-60 per GiB, --trace-gc; each started by the old
// generation's allocation limit, a few MB above the live heap, --trace-incremental-marking), which cost ~30 % more
// CPU per byte and ~30 % of the throughput on a loopback pair. With a larger live heap it is ~1 per GiB. The same
// trick as Go's GC ballast.
//
// When: an idle proxy has no use for it (6-12 MB of its RSS), so a GC observer, armed once the proxy is up, takes
// the first step when two mark-compacts run within FIRST_WINDOW_MS and leave the old generation small (under
// SMALL_OLD_MB besides the ballast) — a bulk tunnel's second, within its first ~100 MB. Not counted: an idle proxy's
// one mark-compact as start-up's garbage settles is alone; V8's memory reducer's flag themselves "all external
// memory"; a forced GC; and the mark-compacts of a heap that grows (thousands of tunnels opening), which a ballast
// would not help and whose bytes per tunnel it would inflate. If the churn goes on (three within CHURN_WINDOW_MS),
// another step, up to the maximum; then it stops observing. Nothing runs per chunk of data.

import { PerformanceObserver, constants } from "node:perf_hooks";
import v8 from "node:v8";
import { envInt } from "./env.js";
import { logger } from "./log.js";

const log = logger("gc");

/** A ballast is a few MB: more is a typo that would take the node's memory (refused at start, naming the variable). */
const MAX_MB = 1024;
/** What one step takes: 6 MB was enough for most processes measured, 12 MB for all. */
const STEP_MB = 6;
/** Two mark-compacts within this window take the first step. */
const FIRST_WINDOW_MS = 2_000;
/** Three within this window take each further step: the churn went on. */
const CHURN_WINDOW_MS = 3_000;
/** Old generation (without the ballast) past which a mark-compact does not count: that heap does not churn. */
const SMALL_OLD_MB = 16;
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

/** MB the old generation holds now (old and large-object spaces; read just after a mark-compact: what it left). */
function oldGenerationMb(): number {
  let bytes = 0;
  for (const sp of v8.getHeapSpaceStatistics())
    if (sp.space_name === "old_space" || sp.space_name === "large_object_space") bytes += sp.space_used_size;
  return bytes / (1024 * 1024);
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

/** Takes the ballast step by step while mark-compacts churn (the CLI's proxy calls it once it is up; see above). */
export function armGcBallast(maxMb = gcBallastMb()): void {
  if (maxMb === 0 || heldMb >= maxMb || observer !== null) return;
  const recent: number[] = [];
  observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const { kind, flags } = (e as unknown as { detail: GcDetail }).detail;
      if (kind !== constants.NODE_PERFORMANCE_GC_MAJOR || flags & NOT_COUNTED) continue;
      if (oldGenerationMb() - heldMb >= SMALL_OLD_MB) continue;
      const [count, windowMs] = heldMb === 0 ? [2, FIRST_WINDOW_MS] : [3, CHURN_WINDOW_MS];
      recent.push(e.startTime);
      while (recent[0] < e.startTime - windowMs) recent.shift();
      if (recent.length < count) continue;
      recent.length = 0;
      take(Math.min(STEP_MB, maxMb - heldMb));
      log.info("GC ballast taken: mark-compacts churn under load", { heldMb, maxMb });
      if (heldMb >= maxMb) {
        observer?.disconnect();
        observer = null;
        return;
      }
    }
  });
  observer.observe({ entryTypes: ["gc"] });
}
