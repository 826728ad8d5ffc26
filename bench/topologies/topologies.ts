// The four topologies of the proxy benchmarks, each a set of real processes on loopback:
//
//   direct      client app -> server app (TCP): the floor
//   tls-pipe    client app -> TLS relay -> TLS terminator -> server app (no HTTP/2): the ceiling
//   node-http2  client app -> node:http2 outbound -> CONNECT over mTLS -> node:http2 inbound -> server app
//   hbone-wasm  client app -> `hbone proxy` (forward listeners) -> HBONE -> `hbone proxy` (inbound) -> server app
//   hbone-double, node-http2-double   cross-network through an east-west gateway (topologies-double.ts),
//               with tls-pipe-double their floor (TLS inside TLS, the gateway a TLS terminator, no HTTP/2)
//   hbone-wasm-w2  hbone-wasm with `--workers 2` on both proxies (on request: 1 vs 2 workers)
//   hbone-wasm-base  hbone-wasm from another build (env HBONE_BENCH_BASE: a checkout with dist/ built; on request):
//                 a before/after comparison measured in one run, for a machine too busy for two runs to compare
//
// The server app listens on 127.0.0.3 (the server workload); TLS hops land on 127.0.0.3 too and
// the client-side proxies listen on 127.0.0.1. Certificates come from one plug-in CA.

import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { freePort, type Child, type SpawnOptions } from "./procs.js";
import { repoRoot } from "../harness.js";
import { buildDouble } from "./topologies-double.js";
import { peer, sourceProxyArgs, startProxy } from "./peer-spawn.js";
import { NODE_FLAGS } from "../../host/runtime-config.js";

export const TOPOLOGIES = [
  "direct",
  "tls-pipe",
  "node-http2",
  "hbone-wasm",
  "tls-pipe-double",
  "node-http2-double",
  "hbone-double",
  "hbone-wasm-w2",
  "hbone-wasm-base",
] as const;
/** What the proxies suite runs unless told (`--topologies`): hbone-wasm-w2 and hbone-wasm-base only on request. */
export const DEFAULT_TOPOLOGIES: readonly TopologyName[] = TOPOLOGIES.filter(
  (t) => t !== "hbone-wasm-w2" && t !== "hbone-wasm-base",
);
/** The cross-network topologies: measured in the rr and throughput workloads only. */
export const DOUBLE_TOPOLOGIES: readonly TopologyName[] = ["tls-pipe-double", "node-http2-double", "hbone-double"];
export type TopologyName = (typeof TOPOLOGIES)[number];

export const SERVER_IP = "127.0.0.3";
export const CLIENT_IP = "127.0.0.2";

export interface AppPorts {
  sink: number;
  rr: number;
  ping: number;
}
export const APP_MODES = ["sink", "rr", "ping"] as const;
export type AppMode = (typeof APP_MODES)[number];

export interface Endpoint {
  host: string;
  port: number;
}

export interface Proxy {
  /** "outbound" (client side), "inbound" (server side) or "gateway" (east-west, between the two). */
  role: "outbound" | "inbound" | "gateway";
  child: Child;
  /** Worker processes of a `--workers N` proxy (the child is their primary). */
  workers?: number[];
}

export interface Topology {
  name: TopologyName;
  /** Where the client app connects to reach each app listener. */
  entry: Record<AppMode, Endpoint>;
  /** The proxy processes (none for direct), outbound first. */
  proxies: Proxy[];
  stop(): Promise<void>;
}

export interface BuildContext {
  /** Scratch directory (config file). */
  dir: string;
  caDir: string;
  app: AppPorts;
  spawn: SpawnOptions;
  /** Extra node flags for the proxies of this topology (e.g. --cpu-prof). */
  proxyNodeArgs?: (role: Proxy["role"]) => string[];
}

function hostPort(s: string): Endpoint {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

function entries(ports: number[], host = "127.0.0.1"): Record<AppMode, Endpoint> {
  if (ports.length !== APP_MODES.length || ports.some((p) => !(p > 0))) throw new Error(`bad ports ${ports.join(",")}`);
  return { sink: { host, port: ports[0] }, rr: { host, port: ports[1] }, ping: { host, port: ports[2] } };
}

const appPortList = (a: AppPorts) => APP_MODES.map((m) => a[m]);

async function stopAll(proxies: Proxy[]): Promise<void> {
  await Promise.all(proxies.map((p) => p.child.stop()));
}

export function meshConfig(): string {
  // Both workloads speak HBONE and declare no services: the inbound accepts any port of 127.0.0.3.
  return `workloads:
  - uid: bench//v1/Pod/default/client
    name: client
    namespace: default
    serviceAccount: client
    workloadIps: [${CLIENT_IP}]
    protocol: HBONE
    clusterId: bench
  - uid: bench//v1/Pod/default/server
    name: server
    namespace: default
    serviceAccount: server
    workloadIps: [${SERVER_IP}]
    protocol: HBONE
    clusterId: bench
`;
}

/** The other build hbone-wasm-base runs (HBONE_BENCH_BASE). */
function baseCheckout(): string {
  const dir = process.env.HBONE_BENCH_BASE;
  if (!dir || !existsSync(join(dir, "dist", "host", "cli.js")))
    throw new Error("hbone-wasm-base: set HBONE_BENCH_BASE to a checkout with dist/ built (npm run build there)");
  return dir;
}

/** The node flags the base build's own bin runs with (its runtime-config's NODE_FLAGS; none before it had them). */
async function baseNodeFlags(): Promise<readonly string[]> {
  const file = join(baseCheckout(), "dist", "host", "runtime-config.js");
  if (!existsSync(file)) return [];
  const mod = (await import(pathToFileURL(file).href)) as { NODE_FLAGS?: readonly string[] };
  return mod.NODE_FLAGS ?? [];
}

export async function buildTopology(name: TopologyName, ctx: BuildContext): Promise<Topology> {
  const proxies: Proxy[] = [];
  try {
    switch (name) {
      case "direct":
        return { name, entry: entries(appPortList(ctx.app), SERVER_IP), proxies, stop: async () => {} };

      case "tls-pipe": {
        const term = await startProxy(ctx, proxies, "inbound", "tls-pipe terminator", peer("tls-pipe.js"), [
          "terminator",
          ctx.caDir,
          SERVER_IP,
          ...appPortList(ctx.app).map(String),
        ]);
        const termPorts = term.ready.ports as number[];
        const relay = await startProxy(ctx, proxies, "outbound", "tls-pipe relay", peer("tls-pipe.js"), [
          "relay",
          ctx.caDir,
          ...termPorts.map((p) => `${SERVER_IP}:${p}`),
        ]);
        return { name, entry: entries(relay.ready.ports as number[]), proxies, stop: () => stopAll(proxies) };
      }

      case "node-http2": {
        const h2 = peer("node-http2-proxy.js");
        const inb = await startProxy(ctx, proxies, "inbound", "node-http2 inbound", h2, [
          "inbound",
          ctx.caDir,
          SERVER_IP,
        ]);
        const out = await startProxy(ctx, proxies, "outbound", "node-http2 outbound", h2, [
          "outbound",
          ctx.caDir,
          `${SERVER_IP}:${inb.ready.port as number}`,
          ...appPortList(ctx.app).map((p) => `${SERVER_IP}:${p}`),
        ]);
        return { name, entry: entries(out.ready.ports as number[]), proxies, stop: () => stopAll(proxies) };
      }

      case "hbone-wasm":
      case "hbone-wasm-w2":
      case "hbone-wasm-base": {
        const config = join(ctx.dir, "mesh.yaml");
        writeFileSync(config, meshConfig());
        const cli = join(name === "hbone-wasm-base" ? baseCheckout() : repoRoot(), "dist", "host", "cli.js");
        const common = [
          "proxy",
          "--config",
          config,
          "--ca-dir",
          ctx.caDir,
          "--socks5-port",
          "off",
          "--admin-port",
          "off",
          "--metrics-port",
          "off",
          "--readiness-port",
          "off",
          "--drain-timeout",
          "1",
          ...(name === "hbone-wasm-w2" ? ["--workers", "2"] : []),
        ];
        // Each build with the flags its own bin and image run with.
        const flags = name === "hbone-wasm-base" ? await baseNodeFlags() : NODE_FLAGS;
        const inb = await startProxy(
          ctx,
          proxies,
          "inbound",
          "hbone inbound",
          cli,
          [...common, "--workload", "default/server/server", "--inbound-port", "0"],
          flags,
        );
        const hbonePort = hostPort(inb.ready.inbound as string).port;
        // `--forward` refuses listen port 0 (host/proxy/authority.ts validPort), so pick free ports here.
        const listen: number[] = [];
        for (let k = 0; k < APP_MODES.length; k++) listen.push(await freePort("127.0.0.1"));
        const out = await startProxy(
          ctx,
          proxies,
          "outbound",
          "hbone outbound",
          cli,
          [
            ...common,
            ...sourceProxyArgs(hbonePort),
            ...appPortList(ctx.app).flatMap((p, k) => ["--forward", `127.0.0.1:${listen[k]}=${SERVER_IP}:${p}`]),
          ],
          flags,
        );
        const fwd = (out.ready.forward as string[]).map((f) => hostPort(f).port);
        return { name, entry: entries(fwd), proxies, stop: () => stopAll(proxies) };
      }

      case "tls-pipe-double":
      case "node-http2-double":
      case "hbone-double": {
        const kind = name === "hbone-double" ? "hbone" : name === "node-http2-double" ? "node-http2" : "tls-pipe";
        const eps = await buildDouble(kind, ctx, proxies);
        return { name, entry: entries(eps.map((e) => e.port)), proxies, stop: () => stopAll(proxies) };
      }
    }
  } catch (err) {
    await stopAll(proxies);
    throw err;
  }
}
