// Load balancing: a pick among 10k endpoints of one service (FAILOVER [NETWORK, REGION, ZONE], capacities 1..4,
// a tenth remote behind a gateway, some unhealthy), the Wasm LoadBalancer vs the pure-JS pickEndpoint (the same
// rules, straightforwardly: one pass over ProxyState.endpoints per pick). The Wasm pick is timed with its
// candidate set cached (the steady state: a node's sources share a few localities) and rebuilt on every pick
// (more sources than cache ways). Then the LoadBalancer's table rebuild for 50k endpoints in 10k services.

import { newService, newWorkload, type MeshConfig, type Service, type Workload } from "../../host/model/index.js";
import { LoadBalancer } from "../../host/lb/index.js";
import { pickEndpoint } from "../../test/lb/oracle.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { type Figure, type RunOptions, type SuiteResult, newBench, figureOf, ratioOf } from "../harness.js";
import type { Task } from "tinybench";

const ENDPOINTS = 10_000;
const HOST = "bench.default.svc.cluster.local";
const LB_SOURCES = 5; // one more than the Wasm table's cache ways

function ip(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/** One service over ENDPOINTS workloads, and LB_SOURCES client workloads in different zones. */
function pickMesh(): { cfg: MeshConfig; sources: Workload[] } {
  const cfg: MeshConfig = { workloads: [], services: [], policies: [], serviceScopeConfigs: [] };
  cfg.services.push(
    newService({
      name: "bench",
      namespace: "default",
      hostname: HOST,
      ports: { 80: 8080 },
      labels: { "istio.io/global": "true" },
      loadBalancer: {
        routingPreferences: ["NETWORK", "REGION", "ZONE"],
        mode: "FAILOVER",
        healthPolicy: "ONLY_HEALTHY",
      },
    }),
  );
  for (let i = 0; i < ENDPOINTS; i++) {
    const remote = i % 10 === 0;
    cfg.workloads.push(
      newWorkload({
        uid: `c//Pod/default/ep-${i}`,
        name: `ep-${i}`,
        namespace: "default",
        protocol: "HBONE",
        network: remote ? "net2" : "net1",
        clusterId: remote ? "c2" : "c1",
        node: `node-${i % 200}`,
        locality: { region: `r${i % 3}`, zone: `r${i % 3}-z${(i >> 2) % 3}`, subzone: "" },
        workloadIps: remote ? [] : [ip(i)],
        ...(remote
          ? { networkGateway: { destination: { network: "net2", address: "172.16.0.1" }, hboneMtlsPort: 15008 } }
          : {}),
        status: i % 20 === 7 ? "Unhealthy" : "Healthy",
        capacity: 1 + (i % 4),
        services: { [`default/${HOST}`]: i % 5 === 0 ? { 80: 9080 } : {} },
      }),
    );
  }
  const sources = Array.from({ length: LB_SOURCES }, (_, k) =>
    newWorkload({
      uid: `c//Pod/default/client-${k}`,
      name: `client-${k}`,
      namespace: "default",
      network: "net1",
      clusterId: "c1",
      node: `node-${k}`,
      locality: { region: `r${k % 3}`, zone: `r${k % 3}-z${k % 3}`, subzone: "" },
      workloadIps: [ip(60_000 + k)],
    }),
  );
  cfg.workloads.push(...sources);
  return { cfg, sources };
}

/** 10k services of 5 endpoints each (50k records), every other endpoint with its own target port. */
function rebuildMesh(): MeshConfig {
  const cfg: MeshConfig = { workloads: [], services: [], policies: [], serviceScopeConfigs: [] };
  for (let s = 0; s < 10_000; s++) {
    const hostname = `svc-${s}.ns-${s % 100}.svc.cluster.local`;
    cfg.services.push(
      newService({ name: `svc-${s}`, namespace: `ns-${s % 100}`, hostname, ports: { 80: 8080, 443: 8443 } }),
    );
    for (let k = 0; k < 5; k++) {
      const n = s * 5 + k;
      cfg.workloads.push(
        newWorkload({
          uid: `c1//Pod/ns-${s % 100}/w-${n}`,
          name: `w-${n}`,
          namespace: `ns-${s % 100}`,
          workloadIps: [ip(n)],
          protocol: "HBONE",
          clusterId: "c1",
          node: `node-${n % 500}`,
          locality: { region: "r1", zone: `z${n % 3}`, subzone: "" },
          services: { [`ns-${s % 100}/${hostname}`]: k % 2 ? { 80: 9000 + k } : {} },
        }),
      );
    }
  }
  return cfg;
}

function loaded(cfg: MeshConfig): ProxyState {
  const state = new ProxyState();
  new ProxyStateUpdater(state).apply(cfg);
  return state;
}

/** Before timing: the Wasm tables and the pure-JS rules pick the same endpoints for the same draws. */
function sanityCheck(state: ProxyState, sources: Workload[], svc: Service): void {
  let u = 0;
  const lb = new LoadBalancer(state, { random: () => u });
  try {
    for (let i = 0; i < 500; i++) {
      u = (i + 0.5) / 500;
      const src = sources[i % sources.length]!;
      const a = lb.pick(src, svc, 80),
        b = pickEndpoint(state, src, svc, 80, { random: () => u });
      if (!a || a.workload !== b?.workload || a.targetPort !== b.targetPort || a.rank !== b.rank) {
        throw new Error(
          `lb bench: Wasm picked ${a?.workload.name}:${a?.targetPort} (rank ${a?.rank}), ` +
            `pure JS ${b?.workload.name}:${b?.targetPort} (rank ${b?.rank})`,
        );
      }
    }
  } finally {
    lb.close();
  }
}

/** A figure per pick from a task that makes `batch` picks per op. */
function perPick(task: Task, batch: number, baseline?: string): Figure {
  const f = figureOf(task, baseline ? { baseline } : {});
  return { ...f, opsPerSec: f.opsPerSec * batch };
}

const nsOf = (f: Figure) => 1e9 / f.opsPerSec;

export async function runLbBench(opts: RunOptions): Promise<SuiteResult> {
  const { cfg, sources } = pickMesh();
  const state = loaded(cfg);
  const svc = state.serviceByHost(HOST)!;
  sanityCheck(state, sources, svc);
  const lb = new LoadBalancer(state);
  const cached = sources.slice(0, LB_SOURCES - 1);

  const big = loaded(rebuildMesh());
  const rebuilding = new LoadBalancer(big);
  const records = big.config.workloads.length;

  const HOT = "lb pick, 10k endpoints: Wasm LoadBalancer (per pick)";
  const COLD = "lb pick, 10k endpoints, candidate set rebuilt each pick: Wasm (per pick)";
  const JS = "lb pick, 10k endpoints: pure-JS pickEndpoint (per pick)";
  const REBUILD = "lb table rebuild, 50k endpoints in 10k services: Wasm LoadBalancer";
  const HOT_BATCH = 1000,
    COLD_BATCH = 50,
    JS_BATCH = 5;
  const bench = newBench("lb", opts);
  // Every op checks that each pick found an endpoint, which also keeps the work observable.
  bench.add(HOT, () => {
    let n = 0;
    for (let i = 0; i < HOT_BATCH; i++) if (lb.pick(cached[i & 3]!, svc, 80)) n++;
    if (n !== HOT_BATCH) throw new Error(`Wasm LoadBalancer picked ${n} of ${HOT_BATCH}`);
  });
  bench.add(COLD, () => {
    let n = 0;
    for (let i = 0; i < COLD_BATCH; i++) if (lb.pick(sources[i % LB_SOURCES]!, svc, 80)) n++;
    if (n !== COLD_BATCH) throw new Error(`Wasm LoadBalancer picked ${n} of ${COLD_BATCH}`);
  });
  bench.add(JS, () => {
    let n = 0;
    for (let i = 0; i < JS_BATCH; i++) if (pickEndpoint(state, sources[i % LB_SOURCES]!, svc, 80)) n++;
    if (n !== JS_BATCH) throw new Error(`pickEndpoint picked ${n} of ${JS_BATCH}`);
  });
  // What a config update costs the load balancer: the listener ProxyStateUpdater.apply triggers.
  bench.add(REBUILD, () => {
    big.emit("updated", big.config);
  });
  await bench.run();
  lb.close();
  rebuilding.close();

  const js = perPick(bench.getTask(JS)!, JS_BATCH);
  const hot = perPick(bench.getTask(HOT)!, HOT_BATCH, JS);
  const cold = perPick(bench.getTask(COLD)!, COLD_BATCH, JS);
  const rebuild = figureOf(bench.getTask(REBUILD)!);
  const hotRatio = ratioOf("LB pick, 10k endpoints: Wasm (cached set) vs pure JS", hot, js);
  const rebuildMs = 1000 / rebuild.opsPerSec;
  return {
    suite: "lb",
    figures: [hot, cold, js, rebuild],
    ratios: [hotRatio, ratioOf("LB pick, 10k endpoints: Wasm (set rebuilt) vs pure JS", cold, js)],
    targets: [
      { name: "Wasm LB pick vs pure JS (10k endpoints)", value: hotRatio.value, goal: 10, met: hotRatio.value >= 10 },
      {
        name: "Wasm LB pick time (10k endpoints)",
        value: nsOf(hot),
        goal: 1000,
        unit: "ns",
        lowerIsBetter: true,
        met: nsOf(hot) <= 1000,
        task: HOT,
      },
      {
        name: "LB table rebuild (50k endpoints)",
        value: rebuildMs,
        goal: 200,
        unit: "ms",
        lowerIsBetter: true,
        met: rebuildMs <= 200,
        task: REBUILD,
      },
    ],
    notes: [
      `lb: one service of ${ENDPOINTS} endpoints (FAILOVER [NETWORK, REGION, ZONE]; 3 regions x 3 zones, 1/10 ` +
        `remote via a gateway, 1/20 unhealthy, capacity 1..4); per pick: Wasm ${nsOf(hot).toFixed(0)} ns (cached ` +
        `set), ${nsOf(cold).toFixed(0)} ns (set rebuilt), pure JS ${nsOf(js).toFixed(0)} ns.`,
      `lb: table rebuild of ${records} endpoint records in 10k services (2 ports each): ${rebuildMs.toFixed(1)} ms ` +
        `(the LoadBalancer's "updated" listener alone, not ProxyState's own indexes).`,
    ],
  };
}
