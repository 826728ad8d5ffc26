// ztunnel's endpoint rules, on every implementation (pure JS pickEndpoint, LoadBalancer on both Wasm builds):
// filters, ranks per mode and routing preference (NETWORK first), health policy, ports, gateways, service scope.

import { afterEach, describe, expect, test } from "vitest";
import type { MeshConfig } from "../../host/model/index.js";
import {
  IMPLS,
  client,
  meshYaml,
  pickerFor,
  service,
  stateOf,
  sweep,
  type Ep,
  type MeshOptions,
  type Picker,
} from "./fixture.js";

// Source: network n1, cluster c1, region r1, zone z1, subzone s1, node k1.
const EPS: Ep[] = [
  { name: "node", node: "k1", ports: { 80: 18080 } },
  { name: "subzone", node: "k2" },
  { name: "zone", subzone: "s2", node: "k3" },
  { name: "region", zone: "z2", subzone: "s3", node: "k4" },
  { name: "far", cluster: "c2", region: "r2", zone: "z3", subzone: "s4", node: "k5" },
  // Remote placeholders, reached through their network's gateway.
  { name: "gw-zone", network: "n2", cluster: "c3", address: "none", gateway: true },
  {
    name: "gw-region",
    network: "n2",
    cluster: "c3",
    zone: "z2",
    subzone: "s9",
    node: "k9",
    address: "none",
    gateway: true,
  },
  {
    name: "gw-far",
    network: "n2",
    cluster: "c3",
    region: "r2",
    zone: "z3",
    node: "k9",
    address: "none",
    gateway: true,
  },
  // Never reachable: off-network without a gateway, on-network without an address.
  { name: "off-no-gw", network: "n2", cluster: "c3" },
  { name: "no-address", address: "none", gateway: true },
];
const GLOBAL = `{istio.io/global: "true"}`;

let pickers: Picker[] = [];
afterEach(() => {
  for (const p of pickers) p.close();
  pickers = [];
});

/** For each implementation: the reachable endpoints of "all" and each endpoint's own rank (via "one-<name>"). */
function run(o: MeshOptions, eps: Ep[] = EPS, port = 80, edit?: (cfg: MeshConfig) => void) {
  const state = stateOf(meshYaml(eps, { perEndpoint: true, ...o }), edit);
  return IMPLS.map((impl) => {
    const p = pickerFor(impl, state);
    pickers.push(p);
    const pick = (svc: string) => (u: number) => p.pick(client(state), service(state, svc), port, u);
    const ranks: Record<string, number | undefined> = {};
    for (const e of eps) ranks[e.name] = pick(`one-${e.name}`)(0.5)?.rank;
    return { impl, top: sweep(pick("all")), ranks };
  });
}

/** The same answer from every implementation, returned once. */
function agreed(o: MeshOptions, eps?: Ep[], port?: number, edit?: (cfg: MeshConfig) => void) {
  const [first, ...rest] = run(o, eps, port, edit);
  for (const r of rest) {
    expect({ impl: r.impl, top: r.top, ranks: r.ranks }).toEqual({
      impl: r.impl,
      top: first!.top,
      ranks: first!.ranks,
    });
  }
  return { top: Object.fromEntries(first!.top), ranks: first!.ranks };
}

const UNREACHABLE = { "off-no-gw": undefined, "no-address": undefined };

describe("filters and ranks (every implementation)", () => {
  test("no loadBalancer: spread over every reachable endpoint, local and remote", () => {
    const { top, ranks } = agreed({ labels: GLOBAL });
    expect(top).toEqual({ far: 0, "gw-far": 0, "gw-region": 0, "gw-zone": 0, node: 0, region: 0, subzone: 0, zone: 0 });
    expect(ranks).toMatchObject(UNREACHABLE);
  });

  test("UNSPECIFIED mode does not rank, whatever the preferences", () => {
    const { top } = agreed({ labels: GLOBAL, lb: "{routingPreferences: [NODE], mode: UNSPECIFIED}" });
    expect(Object.keys(top)).toHaveLength(8);
  });

  test("FAILOVER [NETWORK, REGION, ZONE]: 5/4/3 on the network, 2/1/0 off it; the best rank wins", () => {
    const { top, ranks } = agreed({
      labels: GLOBAL,
      lb: "{routingPreferences: [NETWORK, REGION, ZONE], mode: FAILOVER}",
    });
    expect(ranks).toEqual({
      node: 5,
      subzone: 5,
      zone: 5,
      region: 4,
      far: 3,
      "gw-zone": 2,
      "gw-region": 1,
      "gw-far": 0,
      ...UNREACHABLE,
    });
    expect(top).toEqual({ node: 5, subzone: 5, zone: 5 });
  });

  test("without NETWORK first, the prefix counts across networks", () => {
    const { top, ranks } = agreed({
      labels: GLOBAL,
      lb: "{routingPreferences: [REGION, ZONE, SUBZONE, NODE], mode: FAILOVER}",
    });
    expect(ranks).toEqual({
      node: 4,
      subzone: 3,
      zone: 2,
      region: 1,
      far: 0,
      "gw-zone": 4,
      "gw-region": 1,
      "gw-far": 0,
      ...UNREACHABLE,
    });
    expect(top).toEqual({ node: 4, "gw-zone": 4 });
  });

  test("FAILOVER [NETWORK] alone and [CLUSTER]", () => {
    expect(agreed({ labels: GLOBAL, lb: "{routingPreferences: [NETWORK], mode: FAILOVER}" }).ranks).toEqual({
      node: 1,
      subzone: 1,
      zone: 1,
      region: 1,
      far: 1,
      "gw-zone": 0,
      "gw-region": 0,
      "gw-far": 0,
      ...UNREACHABLE,
    });
    expect(agreed({ labels: GLOBAL, lb: "{routingPreferences: [CLUSTER], mode: FAILOVER}" }).top).toEqual({
      node: 1,
      subzone: 1,
      zone: 1,
      region: 1,
    });
  });

  test("STRICT keeps full matches only (NETWORK first: the on-network top rank)", () => {
    const { top, ranks } = agreed({
      labels: GLOBAL,
      lb: "{routingPreferences: [NETWORK, REGION, ZONE], mode: STRICT}",
    });
    expect(ranks).toEqual({
      node: 5,
      subzone: 5,
      zone: 5,
      region: undefined,
      far: undefined,
      "gw-zone": undefined,
      "gw-region": undefined,
      "gw-far": undefined,
      ...UNREACHABLE,
    });
    expect(top).toEqual({ node: 5, subzone: 5, zone: 5 });
    // internalTrafficPolicy: Local (STRICT [NODE]): node k1 only, on any network.
    expect(agreed({ labels: GLOBAL, lb: "{routingPreferences: [NODE], mode: STRICT}" }).top).toEqual({
      node: 1,
      "gw-zone": 1,
    });
    // STRICT with no preferences matches everything.
    expect(Object.keys(agreed({ labels: GLOBAL, lb: "{mode: STRICT}" }).top)).toHaveLength(8);
  });

  test("STRICT with no full match: no endpoint", () => {
    const eps = EPS.filter((e) => !["node", "subzone", "zone"].includes(e.name));
    expect(
      agreed({ labels: GLOBAL, lb: "{routingPreferences: [NETWORK, REGION, ZONE], mode: STRICT}" }, eps).top,
    ).toEqual({});
  });

  test("ONLY_HEALTHY skips unhealthy endpoints, ALLOW_ALL keeps them", () => {
    const eps = EPS.map((e) => (e.name === "subzone" || e.name === "gw-zone" ? { ...e, unhealthy: true } : e));
    const lb = (health: string) =>
      `{routingPreferences: [NETWORK, REGION, ZONE], mode: FAILOVER, healthPolicy: ${health}}`;
    const healthy = agreed({ labels: GLOBAL, lb: lb("ONLY_HEALTHY") }, eps);
    expect(healthy.top).toEqual({ node: 5, zone: 5 });
    expect(healthy.ranks.subzone).toBeUndefined();
    const all = agreed({ labels: GLOBAL, lb: lb("ALLOW_ALL") }, eps);
    expect(all.top).toEqual({ node: 5, subzone: 5, zone: 5 });
    expect(all.ranks["gw-zone"]).toBe(2);
    // With no loadBalancer the default health policy applies.
    expect(agreed({ labels: GLOBAL }, eps).top).not.toHaveProperty("subzone");
  });

  test("ports: the service must have the port; the endpoint needs a target for it (its own, or the service's)", () => {
    const eps = EPS.map((e) => (e.name === "zone" ? { ...e, ports: { 80: 8080, 90: 9090 } } : e));
    const o = { labels: GLOBAL, ports: "{80: 8080, 90: 90}" };
    // xDS sends a named target port as 0 (each workload resolves it); the YAML refuses 0, so set it here.
    const named = (cfg: MeshConfig) => cfg.services.forEach((s) => (s.ports[90] = 0));
    expect(agreed(o, eps, 90, named).top).toEqual({ zone: 0 });
    expect(Object.keys(agreed(o, eps, 90).top)).toHaveLength(8);
    expect(agreed(o, eps, 91).top).toEqual({});
    expect(Object.keys(agreed(o, eps, 80, named).top)).toHaveLength(8);
  });

  test("a source whose network and locality no endpoint shares: every endpoint is off-network", () => {
    const { top, ranks } = agreed({
      labels: GLOBAL,
      lb: "{routingPreferences: [NETWORK, REGION, ZONE], mode: FAILOVER}",
      client: { network: "n9", region: "r9", zone: "z9", node: "k9" },
    });
    // Reachable only through a gateway, "no-address" included (its n1 is another network now); none ranks.
    expect(top).toEqual({ "gw-far": 0, "gw-region": 0, "gw-zone": 0, "no-address": 0 });
    expect(ranks.node).toBeUndefined();
  });

  test("non-global services never leave the source's cluster; serviceScopeConfigs decide what is global", () => {
    expect(agreed({}).top).toEqual({ node: 0, subzone: 0, zone: 0, region: 0 });
    const scopes = [
      "- servicesSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}",
      "  scope: GLOBAL",
    ].join("\n");
    expect(Object.keys(agreed({ scopes, labels: "{tier: web}" }).top)).toHaveLength(8);
    // Configs replace the default: the istio.io/global label alone no longer makes a service global.
    expect(agreed({ scopes, labels: GLOBAL }).top).toEqual({ node: 0, subzone: 0, zone: 0, region: 0 });
  });
});

describe("the chosen endpoint", () => {
  test("target port: the workload's own mapping wins over the service's", () => {
    const state = stateOf(meshYaml(EPS, { labels: GLOBAL, lb: "{routingPreferences: [NODE], mode: STRICT}" }));
    for (const impl of IMPLS) {
      const p = pickerFor(impl, state);
      pickers.push(p);
      const got = new Map<string, number>();
      for (let i = 0; i < 50; i++) {
        const c = p.pick(client(state), service(state, "all"), 80, i / 50)!;
        got.set(c.workload.name, c.targetPort);
      }
      expect([impl, Object.fromEntries(got)]).toEqual([impl, { node: 18080, "gw-zone": 8080 }]);
    }
  });

  test("an unknown service or one without endpoints: none", () => {
    const state = stateOf(meshYaml([{ name: "only", unhealthy: true }], { perEndpoint: true }));
    for (const impl of IMPLS) {
      const p = pickerFor(impl, state);
      pickers.push(p);
      expect(p.pick(client(state), service(state, "all"), 80, 0.5)).toBeUndefined();
      const stranger = { ...service(state, "all"), hostname: "stranger.example.com" };
      expect(p.pick(client(state), stranger, 80, 0.5)).toBeUndefined();
    }
  });
});
