// A GC ballast for the proxy process: one long-lived 6 MB array in V8's old generation, held for the process's life.
//
// Why: a proxy's live heap is small (~8 MB once started). A bulk tunnel allocates a backing store per socket read,
// so its scavenges come from that external memory (one per ~32 MB of data), and with an old generation that small V8
// starts a full mark-compact after nearly every one of them (25-60 per GiB, --trace-gc; ~25 ms of marking each),
// which cost ~30 % more CPU per byte and ~30 % of the throughput on a loopback pair. From ~12 MB of old generation
// on it does not (1 per GiB). The ballast costs its 6 MB of resident memory; HBONE_GC_BALLAST_MB sets it (0: none).
// The same trick as Go's GC ballast.

import { envInt } from "./env.js";

let ballast: number[] | null = null;

/** A ballast is a few MB: more is a typo that would take the node's memory (refused at start, naming the variable). */
const MAX_MB = 1024;

/** Allocates the ballast once (the CLI's proxy does; an embedding application decides for itself). */
export function holdGcBallast(mb = envInt("HBONE_GC_BALLAST_MB") ?? 6): void {
  if (mb > MAX_MB) throw new Error(`HBONE_GC_BALLAST_MB: at most ${MAX_MB} (MB), got ${mb}`);
  if (ballast === null && mb > 0) ballast = new Array<number>(Math.round((mb * 1024 * 1024) / 8)).fill(0.5);
}
