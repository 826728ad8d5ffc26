// Shared by the load-balancing tests: meshes written as ztunnel YAML (parsed for real), a seeded random, and one
// way to drive the three implementations of a pick (pure JS, Wasm release, Wasm debug).

import { type MeshConfig, type Service, type Workload } from "../../host/model/index.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { LoadBalancer, type LbChoice, type LoadBalancerOptions } from "../../host/lb/index.js";
import { pickEndpoint } from "./oracle.js";
import { getCodec } from "../../host/wasm/codec.js";
import type { Variant } from "../../host/wasm/instance.js";

export const VARIANTS: Variant[] = ["release", "debug"];
export type Impl = "js" | Variant;
export const IMPLS: Impl[] = ["js", ...VARIANTS];

/** mulberry32: a small seeded [0, 1) generator. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A ProxyState of the parsed YAML; `edit` may first change what YAML cannot say (xDS can). */
export function stateOf(yaml: string, edit?: (cfg: MeshConfig) => void): ProxyState {
  const cfg = parseMeshConfig(yaml, "lb-test.yaml");
  edit?.(cfg);
  const state = new ProxyState();
  new ProxyStateUpdater(state).apply(cfg);
  return state;
}

export function apply(state: ProxyState, yaml: string): void {
  new ProxyStateUpdater(state).apply(parseMeshConfig(yaml, "lb-test.yaml"));
}

/** One endpoint of a test mesh. */
export interface Ep {
  name: string;
  network?: string;
  cluster?: string;
  region?: string;
  zone?: string;
  subzone?: string;
  node?: string;
  /** Default: a workload IP. "hostname": a hostname only; "none": neither. */
  address?: "ip" | "hostname" | "none";
  gateway?: boolean;
  unhealthy?: boolean;
  capacity?: number;
  /** The workload's own port map for the services (default none). */
  ports?: Record<number, number>;
}

export const NS = "default";
export const hostOf = (svc: string) => `${svc}.${NS}.svc.cluster.local`;

export interface MeshOptions {
  /** The services' loadBalancer, as a YAML flow mapping. */
  lb?: string;
  /** The services' ports (default {80: 8080}). */
  ports?: string;
  labels?: string;
  /** serviceScopeConfigs, as YAML list items. */
  scopes?: string;
  /** Also one service per endpoint, "one-<name>", so each endpoint's own rank can be read. */
  perEndpoint?: boolean;
  /** The source workload's locality, if not the default one. */
  client?: Omit<Ep, "name">;
}

/**
 * A mesh: a source workload "client" (n1, c1, r1/z1/s1, node k1) and the endpoints, all behind service "all"
 * (and "one-<name>" each), every service with the same ports, labels and loadBalancer.
 */
export function meshYaml(eps: Ep[], o: MeshOptions = {}): string {
  const svcNames = ["all", ...(o.perEndpoint ? eps.map((e) => `one-${e.name}`) : [])];
  const lines = ["workloads:"];
  const workload = (e: Ep, i: number, services: string[]) => {
    lines.push(
      `- uid: c//Pod/${NS}/${e.name}`,
      `  name: ${e.name}`,
      `  namespace: ${NS}`,
      `  network: "${e.network ?? "n1"}"`,
      `  clusterId: "${e.cluster ?? "c1"}"`,
      `  node: "${e.node ?? "k1"}"`,
      `  locality: {region: "${e.region ?? "r1"}", zone: "${e.zone ?? "z1"}", subzone: "${e.subzone ?? "s1"}"}`,
      `  protocol: HBONE`,
      `  status: ${e.unhealthy ? "Unhealthy" : "Healthy"}`,
      `  capacity: ${e.capacity ?? 1}`,
    );
    const address = e.address ?? "ip";
    if (address === "ip") lines.push(`  workloadIps: [10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}]`);
    if (address === "hostname") lines.push(`  hostname: ${e.name}.example.com`);
    if (e.gateway)
      lines.push(`  networkGateway: {destination: "${e.network ?? "n1"}/172.16.0.1", hboneMtlsPort: 15008}`);
    if (services.length) {
      lines.push("  services:");
      for (const s of services) lines.push(`    "${NS}/${hostOf(s)}": ${JSON.stringify(e.ports ?? {})}`);
    }
  };
  workload({ ...o.client, name: "client" }, 0, []);
  eps.forEach((e, i) => workload(e, i + 1, o.perEndpoint ? ["all", `one-${e.name}`] : ["all"]));
  lines.push("services:");
  for (const s of svcNames) {
    lines.push(
      `- {name: ${s}, namespace: ${NS}, hostname: ${hostOf(s)}, ports: ${o.ports ?? "{80: 8080}"}` +
        (o.labels ? `, labels: ${o.labels}` : "") +
        (o.lb ? `, loadBalancer: ${o.lb}` : "") +
        "}",
    );
  }
  if (o.scopes) lines.push("serviceScopeConfigs:", o.scopes);
  return lines.join("\n") + "\n";
}

/** Picks through one implementation, with the [0, 1) draw given per pick. */
export interface Picker {
  pick(source: Workload, svc: Service, port: number, u: number): LbChoice | undefined;
  close(): void;
}

export function pickerFor(impl: Impl, state: ProxyState, opts: LoadBalancerOptions = {}): Picker {
  if (impl === "js") {
    return { pick: (src, svc, port, u) => pickEndpoint(state, src, svc, port, { random: () => u }), close() {} };
  }
  let u = 0;
  const lb = new LoadBalancer(state, { ...opts, codec: getCodec(impl), random: () => u });
  return {
    pick(src, svc, port, draw) {
      u = draw;
      return lb.pick(src, svc, port);
    },
    close: () => lb.close(),
  };
}

/** Every endpoint a sweep of the draw reaches, by name, with its rank (picks are deterministic in the draw). */
export function sweep(pick: (u: number) => LbChoice | undefined, steps = 997): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < steps; i++) {
    const c = pick((i + 0.5) / steps);
    if (c) out.set(c.workload.name, c.rank);
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export function client(state: ProxyState): Workload {
  return state.findWorkload(NS, "client")!;
}

export function service(state: ProxyState, name: string): Service {
  return state.serviceByKey(NS, hostOf(name))!;
}
