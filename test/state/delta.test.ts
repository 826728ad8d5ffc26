// ProxyStateUpdater.update (in-place deltas, what xDS uses) against the reference: apply() of the config the delta
// describes (applyDelta). Random delta sequences over small pools of keys, IPs and hostnames, so "first configured
// wins" conflicts, replacements that move a workload between IPs and services, and removals of winners all happen;
// every lookup must return the very same object as the reference.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  newService,
  newWorkload,
  type MeshConfig,
  type Policy,
  type Service,
  type Workload,
} from "../../host/model/index.js";
import { ProxyState, ProxyStateUpdater, applyDelta, type StateDelta } from "../../host/state/index.js";

const UIDS = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
const NAMES = ["a", "b", "c"];
const NSS = ["ns1", "ns2"];
const NETS = ["", "n1"];
const IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"];
const HOSTS = ["h1.example", "h2.example", "h3.example"];
const VIPS = ["10.96.0.1", "10.96.0.2", "fd00::96"];
const SVC_KEYS = NSS.flatMap((ns) => HOSTS.map((h) => `${ns}/${h}`));
const PORTS = [80, 443];

const workload = fc
  .record({
    uid: fc.constantFrom(...UIDS),
    name: fc.constantFrom(...NAMES),
    namespace: fc.constantFrom(...NSS),
    network: fc.constantFrom(...NETS),
    ips: fc.subarray(IPS),
    services: fc.subarray(SVC_KEYS, { maxLength: 3 }),
    target: fc.constantFrom(0, 8080, 9090),
  })
  .map((r): Workload =>
    newWorkload({
      uid: r.uid,
      name: r.name,
      namespace: r.namespace,
      network: r.network,
      workloadIps: r.ips,
      services: Object.fromEntries(
        r.services.map((k): [string, Record<number, number>] => [k, r.target ? { 80: r.target } : {}]),
      ),
      authorizationPolicies: ["ns1/p0", "ns2/p1"],
    }),
  );

const service = fc
  .record({
    namespace: fc.constantFrom(...NSS),
    hostname: fc.constantFrom(...HOSTS),
    vips: fc.subarray(
      VIPS.flatMap((a) => NETS.map((network) => ({ network, address: a }))),
      { maxLength: 2 },
    ),
    canonical: fc.boolean(),
    tag: fc.nat(9),
  })
  .map((r): Service =>
    newService({
      name: `s${r.tag}`,
      namespace: r.namespace,
      hostname: r.hostname,
      vips: r.vips,
      canonical: r.canonical,
      ports: { 80: 8000 + r.tag },
    }),
  );

const policy = fc
  .record({
    name: fc.constantFrom("p0", "p1", "p2"),
    namespace: fc.constantFrom(...NSS),
    scope: fc.constantFrom("Global", "Namespace", "WorkloadSelector") as fc.Arbitrary<Policy["scope"]>,
    action: fc.constantFrom("Allow", "Deny") as fc.Arbitrary<Policy["action"]>,
  })
  .map((r): Policy => ({ ...r, dryRun: false, rules: [] }));

const delta: fc.Arbitrary<StateDelta> = fc.record(
  {
    workloads: fc.array(workload, { maxLength: 4 }),
    removeWorkloads: fc.subarray(UIDS, { maxLength: 3 }),
    services: fc.array(service, { maxLength: 3 }),
    removeServices: fc.subarray(SVC_KEYS, { maxLength: 2 }),
    policies: fc.array(policy, { maxLength: 2 }),
    removePolicies: fc.subarray(
      NSS.flatMap((ns) => ["p0", "p1", "p2"].map((n) => `${ns}/${n}`)),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);

/** A starting config; with `dupes`, keys may repeat (apply() takes that; update() must then rebuild). */
const start = (dupes: boolean): fc.Arbitrary<MeshConfig> =>
  fc
    .record({
      workloads: dupes
        ? fc.array(workload, { maxLength: 8 })
        : fc.uniqueArray(workload, { selector: (w) => w.uid, maxLength: 8 }),
      services: dupes
        ? fc.array(service, { maxLength: 5 })
        : fc.uniqueArray(service, { selector: (s) => `${s.namespace}/${s.hostname}`, maxLength: 5 }),
      policies: dupes
        ? fc.array(policy, { maxLength: 4 })
        : fc.uniqueArray(policy, { selector: (p) => `${p.namespace}/${p.name}`, maxLength: 4 }),
    })
    .map((c) => ({ ...c, serviceScopeConfigs: [] }));

/** Every lookup of `got` returns the same object as `want`'s. */
function sameLookups(got: ProxyState, want: ProxyState): void {
  expect(got.config).toEqual(want.config);
  for (const ip of [...IPS, ...VIPS]) {
    for (const net of [undefined, ...NETS]) {
      expect(got.workloadByIp(ip, net), `workloadByIp ${ip} ${net}`).toBe(want.workloadByIp(ip, net));
      expect(got.serviceByVip(ip, net), `serviceByVip ${ip} ${net}`).toBe(want.serviceByVip(ip, net));
    }
  }
  for (const uid of UIDS) expect(got.workloadByUid(uid)).toBe(want.workloadByUid(uid));
  for (const ns of NSS) {
    for (const n of NAMES) expect(got.findWorkload(ns, n), `findWorkload ${ns}/${n}`).toBe(want.findWorkload(ns, n));
    for (const p of ["p0", "p1", "p2"]) expect(got.policyByKey(`${ns}/${p}`)).toBe(want.policyByKey(`${ns}/${p}`));
  }
  for (const h of HOSTS) {
    for (const ns of [undefined, ...NSS])
      expect(got.serviceByHost(h, ns), `serviceByHost ${h} ${ns}`).toBe(want.serviceByHost(h, ns));
  }
  for (const key of SVC_KEYS) {
    const [ns, h] = key.split("/") as [string, string];
    const svc = want.serviceByKey(ns, h);
    expect(got.serviceByKey(ns, h)).toBe(svc);
    // Endpoints of a service (also one absent from the config: workloads may name it).
    const probe = svc ?? newService({ name: "x", namespace: ns, hostname: h });
    for (const port of PORTS)
      expect(got.endpoints(probe, port), `endpoints ${key}:${port}`).toEqual(want.endpoints(probe, port));
  }
  for (const w of want.config.workloads) expect(got.policiesFor(w)).toEqual(want.policiesFor(w));
}

describe("ProxyStateUpdater.update", () => {
  for (const dupes of [false, true]) {
    it(`indexes like apply(applyDelta(...)) after any delta sequence (${dupes ? "start with duplicate keys" : "unique keys"})`, () => {
      fc.assert(
        fc.property(start(dupes), fc.array(delta, { minLength: 1, maxLength: 6 }), (cfg, deltas) => {
          const state = new ProxyState();
          const updater = new ProxyStateUpdater(state);
          updater.apply(cfg);
          let ref = cfg;
          for (const d of deltas) {
            updater.update(d);
            ref = applyDelta(ref, d);
            const want = new ProxyState();
            new ProxyStateUpdater(want).apply(ref);
            sameLookups(state, want);
          }
        }),
        { numRuns: 400 },
      );
    });
  }

  it("emits updated with a new config snapshot and the delta; old snapshots do not change", () => {
    const state = new ProxyState();
    const updater = new ProxyStateUpdater(state);
    const seen: [MeshConfig, StateDelta | undefined][] = [];
    state.on("updated", (c: MeshConfig, d?: StateDelta) => seen.push([c, d]));
    const a = newWorkload({ uid: "a", name: "a", namespace: "n", workloadIps: ["10.0.0.1"] });
    const b = newWorkload({ uid: "b", name: "b", namespace: "n", workloadIps: ["10.0.0.1"] });
    const first: MeshConfig = { workloads: [a, b], services: [], policies: [] };
    updater.apply(first);
    expect(state.config).toBe(first);
    expect(state.workloadByIp("10.0.0.1")).toBe(a);

    const d: StateDelta = { removeWorkloads: ["a"] };
    updater.update(d);
    expect(seen[1]![1]).toBe(d);
    expect(seen[1]![0].workloads).toEqual([b]);
    expect(state.config).toBe(seen[1]![0]);
    expect(first.workloads).toEqual([a, b]); // the snapshot apply() was given is untouched
    expect(state.workloadByIp("10.0.0.1")).toBe(b); // the next one configured with the IP takes over

    // a comes back: appended, so b (now first in order) keeps the IP.
    updater.update({ workloads: [a] });
    expect(state.config.workloads).toEqual([b, a]);
    expect(state.workloadByIp("10.0.0.1")).toBe(b);
    // b replaced in place keeps its position, and so the IP.
    const b2 = { ...b, node: "x" };
    updater.update({ workloads: [b2] });
    expect(state.workloadByIp("10.0.0.1")).toBe(b2);
    expect(state.config.workloads).toEqual([b2, a]);
    // The same object sent again (twice in one delta, even) changes nothing.
    updater.update({ workloads: [b2, b2] });
    expect(state.workloadByIp("10.0.0.1")).toBe(b2);
    updater.update({ workloads: [a] });
    expect(state.config.workloads).toEqual([b2, a]);
    expect(state.workloadByIp("10.0.0.1")).toBe(b2);
    updater.update({ removeWorkloads: ["b"] });
    expect(state.workloadByIp("10.0.0.1")).toBe(a);
  });
});
