// How a topology starts its proxy processes: a script (a peer from peers/, or the CLI) with the
// topology's extra node flags, recorded in the topology's proxy list.

import { fileURLToPath } from "node:url";
import { spawnNode, type Child } from "./procs.js";
import type { BuildContext, Proxy } from "./topologies.js";

/** A compiled peer script of peers/ (bench/topologies/peers/FILE). */
export const peer = (file: string) => fileURLToPath(new URL(`./peers/${file}`, import.meta.url));

/**
 * Starts `script args` as the topology's `role` proxy and puts it first in `proxies`: topologies start
 * from the server side out, so the list ends up outbound first. A `--workers N` proxy reports its
 * workers' pids in its ready line (CPU and RSS are summed over them).
 */
export async function startProxy(
  ctx: BuildContext,
  proxies: Proxy[],
  role: Proxy["role"],
  name: string,
  script: string,
  args: string[],
  /** The proxy's own node flags (an hbone build's NODE_FLAGS); [] for a peer, which runs with Node's defaults or
   *  HBONE_BENCH_PEER_NODE_FLAGS (space-separated: a peer measured under the same flags). */
  flags: readonly string[] = [],
): Promise<Child> {
  const own = flags.length > 0 ? flags : (process.env.HBONE_BENCH_PEER_NODE_FLAGS ?? "").split(" ").filter(Boolean);
  const nodeArgs = [...own, ...(ctx.spawn.nodeArgs ?? []), ...(ctx.proxyNodeArgs?.(role) ?? [])];
  const child = await spawnNode(name, script, args, { ...ctx.spawn, nodeArgs });
  proxies.unshift({ role, child, workers: child.ready.pids as number[] | undefined });
  return child;
}

/** A source `hbone proxy`'s own arguments: the bench's client workload, no inbound listener, HBONE to `hbonePort`. */
export function sourceProxyArgs(hbonePort: number): string[] {
  return ["--workload", "default/client/client", "--inbound-port", "off", "--hbone-port", String(hbonePort)];
}
