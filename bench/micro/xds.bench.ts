// xDS at scale: an XdsClient syncing 50k workloads, 10k services and 500 policies from the test control plane
// (test/helpers/control-plane.ts in a worker thread, resources pre-encoded, so the client's work and the transfer are
// what is timed) over
// gRPC + TLS on loopback: stream open, one ~15 MB Address response, decode (ts-proto static code), conversion to
// the config model, ProxyState indexes (ProxyStateUpdater.update), ACK. Then single-workload updates (one response
// each, indexes changed in place). Retained heap is measured after a forced GC. No LoadBalancer is attached: the
// proxy's one rebuilds its tables on every "updated" (about 80 ms at this size), which is its own cost.
//
// Standalone: `node dist/bench/micro/xds.bench.js [--quick]` (after `npx tsc -p tsconfig.json`).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import v8 from "node:v8";
import vm from "node:vm";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import {
  newService,
  newWorkload,
  policyKey,
  serviceKey,
  type Policy,
  type Service,
  type Workload,
} from "../../host/model/index.js";
import { CertificateAuthority, createPluginCa, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { setLevel, getLevel } from "../../host/log.js";
import { ProxyState, ProxyStateUpdater, type StateDelta } from "../../host/state/index.js";
import { XdsClient } from "../../host/xds/client.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from "../../host/xds/convert.js";
import { encodeAddress, encodePolicy } from "../../test/xds/encode.js";
import { TestControlPlane, policyMatch } from "../../test/helpers/control-plane.js";
import type { Figure, RunOptions, SuiteResult, Target } from "../harness.js";

export interface XdsBenchOptions extends RunOptions {
  workloads?: number;
  services?: number;
  policies?: number;
}

const GOAL_MS = 2000;

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

function heapMB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** A cluster-like population: services of 5 pods each, 3 zones, 100 nodes. */
function population(
  nw: number,
  ns: number,
  np: number,
): { workloads: Workload[]; services: Service[]; policies: Policy[] } {
  const services: Service[] = [];
  for (let i = 0; i < ns; i++) {
    const n = `svc-${i}`;
    const namespace = `ns-${i % 200}`;
    services.push(
      newService({
        name: n,
        namespace,
        hostname: `${n}.${namespace}.svc.cluster.local`,
        vips: [{ network: "", address: `10.96.${(i >> 8) & 255}.${i & 255}` }],
        ports: { 80: 8080, 443: 8443 },
        subjectAltNames: [`spiffe://cluster.local/ns/${namespace}/sa/${n}`],
      }),
    );
  }
  const workloads: Workload[] = [];
  for (let i = 0; i < nw; i++) {
    const s = services[i % ns]!;
    const zone = `zone-${i % 3}`;
    workloads.push(
      newWorkload({
        uid: `Kubernetes//Pod/${s.namespace}/${s.name}-${i.toString(36)}-x7k2p`,
        name: `${s.name}-${i.toString(36)}-x7k2p`,
        namespace: s.namespace,
        serviceAccount: s.name,
        workloadIps: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
        protocol: "HBONE",
        node: `node-${i % 100}`,
        clusterId: "Kubernetes",
        canonicalName: s.name,
        canonicalRevision: "v1",
        workloadName: s.name,
        workloadType: "deployment",
        locality: { region: "region-1", zone, subzone: "" },
        services: { [serviceKey(s)]: { 80: 8080, 443: 8443 } },
      }),
    );
  }
  const policies: Policy[] = [];
  for (let i = 0; i < np; i++) {
    policies.push({
      name: `allow-${i}`,
      namespace: `ns-${i % 200}`,
      scope: "Namespace",
      action: "Allow",
      dryRun: false,
      rules: [
        [
          [
            policyMatch({
              namespaces: [{ kind: "exact", value: `ns-${(i + 1) % 200}` }],
              principals: [{ kind: "prefix", value: "cluster.local/ns/" }],
              sourceIps: [{ address: "10.0.0.0", prefixLength: 8 }],
              destinationPorts: [8080],
            }),
          ],
        ],
      ],
    });
  }
  return { workloads, services, policies };
}

/** Times the state updates (index maintenance) inside a sync. */
class TimedUpdater extends ProxyStateUpdater {
  ms = 0;
  override update(delta: StateDelta): void {
    const t = performance.now();
    super.update(delta);
    this.ms += performance.now() - t;
  }
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Relative margin of error (95 %, normal approximation), percent. */
function rme(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
  return ((1.96 * sd) / Math.sqrt(xs.length) / m) * 100;
}

/** What the control plane worker is given. */
interface ServerData {
  xdsBenchServer: true;
  tls: { keyPem: string; certChainPem: string };
  workloads: number;
  services: number;
  policies: number;
}

type ToServer = { update: number } | { stop: true };
type FromServer = { port: number; bytes: number; first: Workload } | { updated: number } | { stopped: true };

/** The control plane runs in a worker thread (istiod is another process): its encoding does not share our core. */
async function serve(d: ServerData): Promise<void> {
  const port = parentPort!;
  const cp = await TestControlPlane.start({ tls: d.tls as WorkloadCertificate, token: TOKEN, recordResponses: false });
  const pop = population(d.workloads, d.services, d.policies);
  let bytes = 0;
  cp.batch(() => {
    for (const w of pop.workloads) {
      const b = encodeAddress({ kind: "workload", workload: w });
      bytes += b.length;
      cp.set(ADDRESS_TYPE_URL, w.uid, b);
    }
    for (const s of pop.services) {
      const b = encodeAddress({ kind: "service", service: s });
      bytes += b.length;
      cp.set(ADDRESS_TYPE_URL, serviceKey(s), b);
    }
    for (const p of pop.policies) {
      const b = encodePolicy(p);
      bytes += b.length;
      cp.set(AUTHORIZATION_TYPE_URL, policyKey(p), b);
    }
  });
  const first = pop.workloads[0]!;
  pop.workloads.length = 0;
  port.on("message", (m: ToServer) => {
    if ("update" in m) {
      cp.setWorkload({ ...first, capacity: m.update });
      port.postMessage({ updated: m.update } satisfies FromServer);
    } else {
      void cp.stop().then(() => {
        port.postMessage({ stopped: true } satisfies FromServer);
        port.close();
      });
    }
  });
  port.postMessage({ port: cp.port, bytes, first } satisfies FromServer);
}

const TOKEN = "bench-token";

function next<T extends FromServer>(w: Worker, pick: (m: FromServer) => m is T, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error("xds bench: the control plane worker did not answer")), timeoutMs);
    const onMsg = (m: FromServer) => {
      if (pick(m)) done(undefined, m);
    };
    const onErr = (e: Error) => done(e);
    const done = (e?: Error, m?: T) => {
      clearTimeout(timer);
      w.off("message", onMsg);
      w.off("error", onErr);
      if (e) reject(e);
      else resolve(m!);
    };
    w.on("message", onMsg);
    w.on("error", onErr);
  });
}

export async function runXdsBench(opts: XdsBenchOptions): Promise<SuiteResult> {
  // A quick run (the CI smoke run of every suite) syncs a fifth of the mesh; the target is for the full size.
  const nw = opts.workloads ?? (opts.quick ? 10_000 : 50_000);
  const ns = opts.services ?? (opts.quick ? 2_000 : 10_000);
  const np = opts.policies ?? (opts.quick ? 100 : 500);
  const rounds = opts.quick ? 2 : 5;
  const updates = opts.quick ? 10 : 50;
  const level = getLevel();
  setLevel("warn");
  const dir = mkdtempSync(join(tmpdir(), "hbone-bench-xds-"));
  const clients: XdsClient[] = [];
  let worker: Worker | undefined;
  try {
    const caDir = join(dir, "ca");
    await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "bench" });
    const ca = await CertificateAuthority.load(caDir);
    const istiod = new Identity("cluster.local", "istio-system", "istiod");
    const cert = await ca.issue(istiod);
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, TOKEN);
    const data: ServerData = {
      xdsBenchServer: true,
      tls: { keyPem: cert.keyPem, certChainPem: cert.certChainPem },
      workloads: nw,
      services: ns,
      policies: np,
    };
    worker = new Worker(new URL(import.meta.url), { workerData: data });
    const w = worker;
    const hello = await next(w, (m): m is Extract<FromServer, { port: number }> => "port" in m);
    const { bytes, first } = hello;

    const syncMs: number[] = [];
    const applyMs: number[] = [];
    const retainedMB: number[] = [];
    let state: ProxyState | undefined;
    let client: XdsClient | undefined;
    for (let r = 0; r < rounds; r++) {
      for (const c of clients.splice(0)) c.close();
      state = undefined;
      client = undefined;
      const base = heapMB();
      state = new ProxyState();
      const updater = new TimedUpdater(state);
      client = new XdsClient({
        address: `https://127.0.0.1:${hello.port}`,
        rootsPem: ca.rootsPem,
        serverName: "istiod.istio-system.svc",
        serverIdentities: [istiod],
        tokenFile,
        clusterId: "Kubernetes",
        updater,
        node: { ip: "10.0.0.1", podName: "bench", namespace: "default", env: {} },
      });
      clients.push(client);
      const t0 = performance.now();
      client.start();
      await client.waitReady(60_000);
      syncMs.push(performance.now() - t0);
      applyMs.push(updater.ms);
      const cfg = state.config;
      if (cfg.workloads.length !== nw || cfg.services.length !== ns || cfg.policies.length !== np) {
        throw new Error(`xds bench: synced ${cfg.workloads.length}/${cfg.services.length}/${cfg.policies.length}`);
      }
      retainedMB.push(heapMB() - base);
    }

    // Steady state: one workload changes, one response, one state update, one ACK.
    const updMs: number[] = [];
    for (let i = 1; i <= updates; i++) {
      const acked = new Promise<void>((resolve) => client!.once("ack", () => resolve()));
      const t0 = performance.now();
      w.postMessage({ update: 100 + i } satisfies ToServer);
      await acked;
      updMs.push(performance.now() - t0);
    }
    if (state!.workloadByUid(first.uid)?.capacity !== 100 + updates) throw new Error("xds bench: update not applied");

    const total = nw + ns + np;
    const sync = mean(syncMs);
    const figures: Figure[] = [
      {
        task: `xDS initial sync: ${nw / 1000}k workloads + ${ns / 1000}k services + ${np} policies (TLS, to ready)`,
        opsPerSec: 1000 / sync,
        rme: rme(syncMs),
        samples: syncMs.length,
        bytesPerOp: bytes,
        throughputUnit: "MB/s",
      },
      {
        task: `xDS one-workload update at ${nw / 1000}k workloads (push to ACK)`,
        opsPerSec: 1000 / mean(updMs),
        rme: rme(updMs),
        samples: updMs.length,
      },
    ];
    figures[0]!.throughputMBps = (bytes * figures[0]!.opsPerSec) / 1e6;
    const targets: Target[] =
      nw < 50_000
        ? []
        : [
            {
              name: "xDS initial sync (50k workloads + 10k services)",
              value: sync,
              goal: GOAL_MS,
              met: sync < GOAL_MS,
              unit: "ms",
              lowerIsBetter: true,
              task: figures[0]!.task,
            },
          ];
    const retained = mean(retainedMB);
    const stopped = next(w, (m): m is Extract<FromServer, { stopped: true }> => "stopped" in m, 10_000).catch(
      () => undefined,
    );
    w.postMessage({ stop: true } satisfies ToServer);
    await stopped;
    return {
      suite: "xds",
      figures,
      ratios: [],
      targets,
      notes: [
        `xds: initial sync ${sync.toFixed(0)} ms mean over ${rounds} (best ${Math.min(...syncMs).toFixed(0)} ms) for ` +
          `${total} resources, ${(bytes / 1e6).toFixed(1)} MB of resource bodies, control plane in a worker thread; ` +
          `ProxyState index updates ${mean(applyMs).toFixed(0)} ms of it; retained heap after GC ` +
          `${retained.toFixed(0)} MB (${((retained * 2 ** 20) / total).toFixed(0)} B per resource); one-workload update ` +
          `${mean(updMs).toFixed(1)} ms push to ACK (ProxyStateUpdater.update: in place, no LoadBalancer attached).`,
      ],
      details: {
        workloads: nw,
        services: ns,
        policies: np,
        bodyBytes: bytes,
        syncMs,
        applyMs,
        retainedMB,
        updateMs: updMs,
      },
    };
  } finally {
    for (const c of clients) c.close();
    await worker?.terminate();
    rmSync(dir, { recursive: true, force: true });
    setLevel(level);
  }
}

if (!isMainThread && (workerData as ServerData | undefined)?.xdsBenchServer) {
  await serve(workerData as ServerData);
} else if (isMainThread && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runXdsBench({ quick: process.argv.includes("--quick") });
  console.log(JSON.stringify({ figures: r.figures, targets: r.targets, notes: r.notes }, null, 2));
}
