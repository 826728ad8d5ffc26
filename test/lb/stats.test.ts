// Statistics of the draws: capacity weighting (chi-square over 20k seeded picks), the gateway's two-choice pick
// keeping active streams even, and the Wasm tables agreeing pick for pick with the pure-JS rules on random meshes.

import { afterEach, describe, expect, test } from "vitest";
import type { Workload } from "../../host/model/index.js";
import { LoadBalancer } from "../../host/lb/index.js";
import { getCodec } from "../../host/wasm/codec.js";
import {
  IMPLS,
  VARIANTS,
  client,
  meshYaml,
  pickerFor,
  seeded,
  service,
  stateOf,
  type Ep,
  type Picker,
} from "./fixture.js";

let closers: { close(): void }[] = [];
afterEach(() => {
  for (const c of closers) c.close();
  closers = [];
});

function chiSquare(counts: Map<string, number>, expected: Map<string, number>): number {
  let x = 0;
  for (const [name, e] of expected) x += ((counts.get(name) ?? 0) - e) ** 2 / e;
  return x;
}

describe("capacity-weighted draw", () => {
  const CAPS = [1, 2, 3, 4, 10];
  const eps: Ep[] = CAPS.map((capacity, i) => ({ name: `w${i}`, capacity }));
  // A capacity-0 endpoint is never picked.
  eps.push({ name: "drained", capacity: 0 });

  test.each(IMPLS)("%s: 20k picks follow capacity (chi-square, 4 df, p > 0.001)", (impl) => {
    const state = stateOf(meshYaml(eps));
    const p = pickerFor(impl, state);
    closers.push(p);
    const random = seeded(7);
    const counts = new Map<string, number>();
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const name = p.pick(client(state), service(state, "all"), 80, random())!.workload.name;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    expect(counts.has("drained")).toBe(false);
    const total = CAPS.reduce((a, b) => a + b, 0);
    const expected = new Map(CAPS.map((c, i) => [`w${i}`, (N * c) / total]));
    expect(chiSquare(counts, expected)).toBeLessThan(18.47);
  });
});

describe("power of two choices (gateway)", () => {
  // Local endpoints on n1 (two with double capacity), and what the gateway must not route to: another network,
  // an unhealthy pod, another cluster (when the gateway names its cluster).
  const local: Ep[] = Array.from({ length: 10 }, (_, i) => ({ name: `pod${i}`, capacity: i < 2 ? 2 : 1 }));
  const others: Ep[] = [
    { name: "remote", network: "n2", address: "none", gateway: true },
    { name: "sick", unhealthy: true },
    { name: "other-cluster", cluster: "c9" },
  ];

  test.each(VARIANTS)("%s: with active streams fed back, load per capacity stays even", (variant) => {
    const state = stateOf(meshYaml([...local, ...others], { labels: `{istio.io/global: "true"}` }));
    const lb = new LoadBalancer(state, {
      codec: getCodec(variant),
      random: seeded(11),
      local: { network: "n1", clusterId: "c1" },
    });
    closers.push(lb);
    const active = new Map<Workload, number>();
    const load = (w: Workload) => active.get(w) ?? 0;
    const svc = service(state, "all");
    for (let i = 0; i < 12_000; i++) {
      const c = lb.pickLeastLoaded(svc, 80, load)!;
      active.set(c.workload, load(c.workload) + 1);
    }
    const names = [...active.keys()].map((w) => w.name).sort();
    expect(names).toEqual(local.map((e) => e.name).sort());
    const perCapacity = [...active].map(([w, n]) => n / w.capacity);
    // 12k streams over 12 capacity units: 1000 each; two choices keep the spread to a handful.
    expect(Math.max(...perCapacity) - Math.min(...perCapacity)).toBeLessThanOrEqual(4);

    // Streams that end are fed back too: the pick refills the emptied pod first.
    const pod3 = state.findWorkload("default", "pod3")!;
    active.set(pod3, load(pod3) - 300);
    let refills = 0;
    for (let i = 0; i < 600; i++) {
      const c = lb.pickLeastLoaded(svc, 80, load)!;
      active.set(c.workload, load(c.workload) + 1);
      if (c.workload === pod3) refills++;
    }
    // It is refilled whenever drawn as a candidate: about 2/12 of the picks (a plain draw: 1/12, 50).
    expect(refills).toBeGreaterThan(80);
    expect(getCodec(variant).ex.heap_check()).toBeGreaterThanOrEqual(0);
  });

  test.each(VARIANTS)("%s: local means this network (and cluster, if named); one candidate is enough", (variant) => {
    const state = stateOf(
      meshYaml(
        [{ name: "a" }, { name: "b", cluster: "c2" }, { name: "gw", network: "n2", address: "none", gateway: true }],
        { labels: `{istio.io/global: "true"}` },
      ),
    );
    const svc = service(state, "all");
    const seen = (lb: LoadBalancer) => {
      closers.push(lb);
      const names = new Set<string>();
      for (let i = 0; i < 200; i++) names.add(lb.pickLeastLoaded(svc, 80, () => 0)?.workload.name ?? "none");
      return [...names].sort();
    };
    const codec = getCodec(variant);
    expect(seen(new LoadBalancer(state, { codec, local: { network: "n1" } }))).toEqual(["a", "b"]);
    expect(seen(new LoadBalancer(state, { codec, local: { network: "n1", clusterId: "c1" } }))).toEqual(["a"]);
    expect(seen(new LoadBalancer(state, { codec, local: { network: "n2" } }))).toEqual(["none"]);
    expect(seen(new LoadBalancer(state, { codec }))).toEqual(["none"]);
  });
});

describe("Wasm tables agree with the pure-JS rules", () => {
  const pick1 = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

  /** A random mesh: endpoints over a few networks, clusters and localities, and a random load-balancing config. */
  function randomMesh(r: () => number): string {
    const eps: Ep[] = Array.from({ length: 20 + Math.floor(r() * 60) }, (_, i) => {
      const network = pick1(r, ["n1", "n1", "n2"]);
      const remote = network !== "n1" && r() < 0.7;
      return {
        name: `e${i}`,
        network,
        cluster: pick1(r, ["c1", "c1", "c2"]),
        region: pick1(r, ["r1", "r2"]),
        zone: pick1(r, ["z1", "z2", "z3"]),
        subzone: pick1(r, ["s1", "s2"]),
        node: pick1(r, ["k1", "k2", "k3", "k4"]),
        address: remote ? "none" : pick1(r, ["ip", "ip", "ip", "hostname", "none"] as const),
        gateway: remote || r() < 0.2,
        unhealthy: r() < 0.15,
        capacity: pick1(r, [0, 1, 1, 1, 2, 5, 1000]),
        ports: r() < 0.3 ? { 80: 9000 + i } : undefined,
      };
    });
    const scopes = ["NETWORK", "CLUSTER", "REGION", "ZONE", "SUBZONE", "NODE"];
    const prefs = Array.from({ length: Math.floor(r() * 6) }, () => pick1(r, scopes));
    if (r() < 0.5) prefs.unshift("NETWORK");
    const mode = pick1(r, ["STRICT", "FAILOVER", "FAILOVER", "UNSPECIFIED"]);
    const health = pick1(r, ["ONLY_HEALTHY", "ALLOW_ALL"]);
    return meshYaml(eps, {
      lb:
        r() < 0.15 ? undefined : `{routingPreferences: [${prefs.join(", ")}], mode: ${mode}, healthPolicy: ${health}}`,
      labels: r() < 0.5 ? `{istio.io/global: "true"}` : undefined,
    });
  }

  test.each(VARIANTS)(
    "%s: 60 random meshes, 8 sources each, 40 draws each: the same endpoint, port and rank",
    (variant) => {
      const r = seeded(2024);
      let compared = 0,
        picked = 0;
      for (let m = 0; m < 60; m++) {
        const state = stateOf(randomMesh(r));
        const js = pickerFor("js", state);
        const wasm: Picker = pickerFor(variant, state);
        closers.push(wasm);
        const svc = service(state, "all");
        const ws = state.config.workloads;
        for (let s = 0; s < 8; s++) {
          const src = s === 0 ? client(state) : pick1(r, ws);
          for (let d = 0; d < 40; d++) {
            const u = r();
            const a = js.pick(src, svc, 80, u),
              b = wasm.pick(src, svc, 80, u);
            expect({ m, s, d, w: b?.workload.name, port: b?.targetPort, rank: b?.rank }).toEqual({
              m,
              s,
              d,
              w: a?.workload.name,
              port: a?.targetPort,
              rank: a?.rank,
            });
            compared++;
            if (a) picked++;
          }
        }
      }
      // The meshes are varied enough that both outcomes occur often.
      expect(picked).toBeGreaterThan(compared / 4);
      expect(compared - picked).toBeGreaterThan(compared / 100);
      expect(getCodec(variant).ex.heap_check()).toBeGreaterThanOrEqual(0);
    },
  );
});

describe("pickGateway: an instance of a gateway named by its service", () => {
  test.each(VARIANTS)(
    "%s: healthy instances on its network with an address, by capacity, ejected ones skipped",
    (variant) => {
      // The client is on n1; the gateway service's instances sit on n2 (the remote network), one elsewhere.
      const state = stateOf(
        meshYaml(
          [
            { name: "gw-a", network: "n2", cluster: "c2", capacity: 1 },
            { name: "gw-b", network: "n2", cluster: "c2", capacity: 3 },
            { name: "gw-sick", network: "n2", cluster: "c2", unhealthy: true },
            { name: "gw-noaddr", network: "n2", cluster: "c2", address: "none" },
            { name: "gw-other", network: "n3", cluster: "c3" },
          ],
          { ports: "{15008: 15008}" },
        ),
      );
      let now = 0;
      const lb = new LoadBalancer(state, { codec: getCodec(variant), random: seeded(5), now: () => now });
      closers.push(lb);
      const svc = service(state, "all");
      const counts = new Map<string, number>();
      for (let i = 0; i < 4000; i++) {
        const name = lb.pickGateway(svc, 15008, "n2")?.workload.name ?? "none";
        counts.set(name, (counts.get(name) ?? 0) + 1);
      }
      expect([...counts.keys()].sort()).toEqual(["gw-a", "gw-b"]);
      // Capacity 1 : 3 (4000 draws: gw-b within 3000 ± 150).
      expect(Math.abs(counts.get("gw-b")! - 3000)).toBeLessThan(150);
      // A port the service does not list still finds the instances (the gateway is dialled on its HBONE port).
      expect(lb.pickGateway(svc, 15009, "n2")).toBeDefined();
      expect(lb.pickGateway(svc, 15008, "n9")).toBeUndefined();
      // Outlier detection applies: gw-b ejected, every draw is gw-a.
      const gwB = state.config.workloads.find((w) => w.name === "gw-b")!;
      for (let i = 0; i < 5; i++) lb.reportFailure(gwB);
      for (let i = 0; i < 50; i++) expect(lb.pickGateway(svc, 15008, "n2")?.workload.name).toBe("gw-a");
      now += 31_000;
      const after = new Set(Array.from({ length: 200 }, () => lb.pickGateway(svc, 15008, "n2")?.workload.name));
      expect(after.has("gw-b")).toBe(true);
    },
  );
});
