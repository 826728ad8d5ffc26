// The stateful LoadBalancer on both Wasm builds: outlier ejection and recovery on an injected clock, tables
// rebuilt on ProxyState "updated", memory kept bounded, and raw exports that answer bad input without trapping.

import { afterEach, describe, expect, test } from "vitest";
import type { Workload } from "../../host/model/index.js";
import { LoadBalancer, type LoadBalancerOptions } from "../../host/lb/index.js";
import { getCodec } from "../../host/wasm/codec.js";
import * as L from "../../assembly/lb/layout.js";
import { VARIANTS, apply, client, meshYaml, seeded, service, stateOf, sweep, type Ep } from "./fixture.js";
import type { ProxyState } from "../../host/state/index.js";

let lbs: LoadBalancer[] = [];
afterEach(() => {
  for (const lb of lbs) lb.close();
  lbs = [];
});

const FAILOVER = "{routingPreferences: [NETWORK, REGION, ZONE], mode: FAILOVER}";
const EPS: Ep[] = [
  { name: "a1", node: "k1" },
  { name: "a2", node: "k2" },
  { name: "b", zone: "z2" },
  { name: "remote", network: "n2", cluster: "c2", address: "none", gateway: true },
];

describe.each(VARIANTS)("%s", (variant) => {
  const codec = getCodec(variant);
  let now = 1_000;
  const make = (state: ProxyState, opts: LoadBalancerOptions = {}) => {
    const lb = new LoadBalancer(state, { codec, now: () => now, random: seeded(3), ...opts });
    lbs.push(lb);
    return lb;
  };
  const reached = (lb: LoadBalancer, state: ProxyState, svc = "all") =>
    Object.fromEntries(sweep(() => lb.pick(client(state), service(state, svc), 80), 200));
  const fail = (lb: LoadBalancer, w: Workload, times: number) => {
    for (let i = 0; i < times; i++) lb.reportFailure(w);
  };
  const wl = (state: ProxyState, name: string) => state.findWorkload("default", name)!;

  test("five failures in a row eject; FAILOVER moves to the next rank; the ejection ends after 30 s", () => {
    now = 1_000;
    const state = stateOf(meshYaml(EPS, { lb: FAILOVER, labels: `{istio.io/global: "true"}` }));
    const lb = make(state);
    const [a1, a2] = [wl(state, "a1"), wl(state, "a2")];
    expect(reached(lb, state)).toEqual({ a1: 5, a2: 5 });
    fail(lb, a1, 4);
    lb.reportSuccess(a1);
    fail(lb, a1, 4);
    expect(lb.isEjected(a1)).toBe(false); // a success reset the count
    lb.reportFailure(a1);
    expect(lb.isEjected(a1)).toBe(true);
    expect(reached(lb, state)).toEqual({ a2: 5 });
    fail(lb, a2, 5);
    expect(reached(lb, state)).toEqual({ b: 4 });
    fail(lb, wl(state, "b"), 5);
    expect(reached(lb, state)).toEqual({ remote: 2 });
    now += 29_999;
    expect(reached(lb, state)).toEqual({ remote: 2 });
    now += 1;
    expect(reached(lb, state)).toEqual({ a1: 5, a2: 5 });
    expect(lb.isEjected(a1)).toBe(false);
  });

  test("the interval doubles per ejection up to the cap; a success lifts it and starts over", () => {
    now = 5_000;
    const state = stateOf(meshYaml(EPS, { lb: FAILOVER, labels: `{istio.io/global: "true"}` }));
    const lb = make(state, { outlier: { failures: 2, baseEjectionMs: 1_000, maxEjectionMs: 5_000 } });
    const a1 = wl(state, "a1");
    const lengths: number[] = [];
    for (let k = 0; k < 5; k++) {
      fail(lb, a1, 2);
      const from = now;
      while (lb.isEjected(a1)) now += 250;
      lengths.push(now - from);
    }
    expect(lengths).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
    fail(lb, a1, 2);
    expect(lb.isEjected(a1)).toBe(true);
    lb.reportSuccess(a1);
    expect(lb.isEjected(a1)).toBe(false);
    expect(reached(lb, state)).toEqual({ a1: 5, a2: 5 });
    fail(lb, a1, 2);
    now += 999;
    expect(lb.isEjected(a1)).toBe(true);
    now += 1;
    expect(lb.isEjected(a1)).toBe(false);
  });

  test("when every candidate is ejected the pick ignores ejection (STRICT stays strict)", () => {
    now = 1_000;
    const state = stateOf(meshYaml(EPS, { lb: "{routingPreferences: [NETWORK, REGION, ZONE], mode: STRICT}" }));
    const lb = make(state);
    for (const e of EPS) fail(lb, wl(state, e.name), 5);
    expect(reached(lb, state)).toEqual({ a1: 5, a2: 5 });
    const plain = stateOf(meshYaml([{ name: "only" }]));
    const lb2 = make(plain);
    fail(lb2, wl(plain, "only"), 5);
    expect(lb2.isEjected(wl(plain, "only"))).toBe(true);
    expect(reached(lb2, plain)).toEqual({ only: 0 });
  });

  test("tables follow ProxyState updates; ejections survive them, removed workloads' slots start clean", () => {
    now = 1_000;
    const yaml = (eps: Ep[], lb = FAILOVER) => meshYaml(eps, { lb, labels: `{istio.io/global: "true"}` });
    const state = stateOf(yaml(EPS));
    const lb = make(state);
    const oldAll = service(state, "all");
    fail(lb, wl(state, "a1"), 5);
    expect(reached(lb, state)).toEqual({ a2: 5 });

    // a2 turns unhealthy, a new a3 joins: a1 stays ejected across the update.
    apply(
      state,
      yaml([...EPS.map((e) => (e.name === "a2" ? { ...e, unhealthy: true } : e)), { name: "a3", node: "k3" }]),
    );
    expect(reached(lb, state)).toEqual({ a3: 5 });
    expect(lb.isEjected(wl(state, "a1"))).toBe(true);
    // A Service object from the older config still finds its service.
    expect(lb.pick(client(state), oldAll, 80)?.workload.name).toBe("a3");

    // a1 leaves and comes back: a new workload, not ejected.
    apply(state, yaml(EPS.filter((e) => e.name !== "a1")));
    expect(reached(lb, state)).toEqual({ a2: 5 });
    apply(state, yaml(EPS, "{routingPreferences: [NODE], mode: STRICT}"));
    expect(lb.isEjected(wl(state, "a1"))).toBe(false);
    expect(reached(lb, state)).toEqual({ a1: 1, b: 1, remote: 1 }); // node k1

    // The service goes away.
    apply(state, "workloads: []\n");
    expect(lb.pick(client(stateOf(yaml(EPS))), oldAll, 80)).toBeUndefined();

    const listeners = state.listenerCount("updated");
    lb.close();
    expect(state.listenerCount("updated")).toBe(listeners - 1);
    apply(state, yaml(EPS));
    expect(lb.pick(client(state), service(state, "all"), 80)).toBeUndefined();
    lb.reportFailure(wl(state, "a1"));
    expect(lb.isEjected(wl(state, "a1"))).toBe(false);
  });

  test("memory stays bounded over rebuilds, sources and ejections; the allocator's lists stay sound", () => {
    const r = seeded(99);
    const state = stateOf("workloads: []\n");
    const lb = make(state, { outlier: { failures: 1, baseEjectionMs: 10 } });
    const cycle = () => {
      for (let k = 0; k < 10; k++) {
        const eps: Ep[] = Array.from({ length: 50 + Math.floor(r() * 150) }, (_, i) => ({
          name: `e${i}`,
          node: `k${i % 7}`,
          zone: `z${i % 3}`,
        }));
        apply(state, meshYaml(eps, { lb: "{routingPreferences: [ZONE, NODE], mode: FAILOVER}" }));
        const svc = service(state, "all");
        for (let i = 0; i < 200; i++) {
          const w = state.config.workloads[Math.floor(r() * state.config.workloads.length)]!;
          if (i % 10 === 0) lb.reportFailure(w);
          now += 1;
          expect(lb.pick(w, svc, 80)).toBeDefined();
        }
      }
    };
    cycle();
    const after = codec.ex.memory_bytes();
    cycle();
    cycle();
    expect(codec.ex.memory_bytes()).toBe(after);
    expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
  });

  test("raw exports answer bad input with return codes, never a trap", () => {
    const ex = codec.ex;
    const ctx = ex.lb_new(0, 1000, 0) >>> 0;
    expect(ex.lb_table_new(ctx, -1, 1)).toBe(0);
    expect(ex.lb_table_new(ctx, 1, -1)).toBe(0);
    expect(ex.lb_table_new(ctx, L.LB_MAX_ENDPOINTS + 1, 1)).toBe(0);
    expect(ex.lb_table_new(ctx, L.LB_MAX_ENDPOINTS, L.LB_MAX_PORTS)).toBe(0);
    expect(ex.lb_endpoints_reserve(ctx, -5)).toBe(-1);
    expect(ex.lb_report_failure(ctx, 12345, 0)).toBe(0);
    expect(ex.lb_ejected_until(ctx, -1)).toBe(0);
    ex.lb_report_success(ctx, 7, NaN);
    ex.lb_endpoint_reset(ctx, 1 << 30);

    const t = ex.lb_table_new(ctx, 3, 1) >>> 0;
    expect(t).not.toBe(0);
    codec.refresh();
    // Records as a hostile writer might leave them: ids out of range, a huge capacity, every flag.
    const base = ex.lb_table_records(t) >>> 2,
      stride = L.LB_TARGETS + 1;
    for (let i = 0; i < 3; i++) {
      codec.i32.fill(-1, base + i * stride, base + (i + 1) * stride);
    }
    const args = (port: number, policy: number): Parameters<typeof ex.lb_pick> => [
      t,
      port,
      policy,
      -1,
      -1,
      -1,
      -1,
      -1,
      -1,
      0xffffffff,
      NaN,
    ];
    expect(ex.lb_pick(...args(1, 0))).toBe(-1);
    expect(ex.lb_pick(...args(-1, 0))).toBe(-1);
    for (const policy of [
      0,
      -1,
      0x7fffffff,
      L.LB_MODE_STRICT | (7 << L.LB_PREFS_COUNT_SHIFT) | (0x3ffff << L.LB_PREFS_SHIFT),
    ]) {
      const i = ex.lb_pick(...args(0, policy));
      expect(i).toBeGreaterThanOrEqual(-1);
      expect(i).toBeLessThan(3);
      expect(ex.lb_pick(t, 0, policy, 0, 0, 0, 0, 0, 0, 1, 0)).toBeLessThan(3);
      expect(ex.lb_pick_second(2)).toBeLessThan(3);
    }
    ex.lb_table_free(t);
    expect(ex.lb_pick_second(3)).toBe(-1); // the last pick's table is gone: nothing to draw from
    ex.lb_free(ctx);
    expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
  });
});
