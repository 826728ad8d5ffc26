// The Node/V8 flags a proxy process runs with: the `hbone` bin's shebang, `npm start`, the gateways the demo
// spawns, the benchmark's proxies, and `--workers` (cluster workers inherit them).
//
// --min-semi-space-size=8: V8 starts the young generation at 1 MiB and grows it only when it fills. A bulk tunnel
// fills it rarely: its scavenges come from the socket buffers' external memory instead, so it stays at 1 MiB, and
// in about half of the processes that settles into a full mark-compact after nearly every scavenge (25–40 per GiB
// instead of 1; measured with --trace-gc), ~15 % more CPU per byte and 5–30 ms pauses. Starting at 8 MiB ended
// that in every run measured, for ~9 MB more resident memory at idle.

import v8 from "node:v8";

export const PROXY_NODE_FLAGS: readonly string[] = ["--min-semi-space-size=8"];

/** False when this process started without PROXY_NODE_FLAGS' young generation (e.g. `node dist/host/cli.js`). */
export function startedWithProxyFlags(): boolean {
  const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  return young === undefined || young.space_size >= 8 * 1024 * 1024;
}
