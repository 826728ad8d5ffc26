// ProxyState lookups over the fixture, replacement on apply, and a mesh of 50k workloads / 10k services.

import fs from "node:fs";
import { describe, expect, test } from "vitest";
import { newService, newWorkload, type MeshConfig, type Workload } from "../../host/model/index.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";

const FIXTURE = new URL("../fixtures/mesh.yaml", import.meta.url);

function loaded(cfg: MeshConfig = parseMeshConfig(fs.readFileSync(FIXTURE, "utf8"), "mesh.yaml")): ProxyState {
  const state = new ProxyState();
  new ProxyStateUpdater(state).apply(cfg);
  return state;
}

const ECHO = "echo.default.svc.cluster.local";

describe("ProxyState over the fixture", () => {
  test("workloads by IP: a network picks one, no network takes the first", () => {
    const s = loaded();
    expect(s.workloadByIp("127.0.0.2", "")?.name).toBe("echo-1");
    // 127.0.0.2 exists on two networks.
    expect(s.workloadByIp("127.0.0.2", "remote")?.name).toBe("echo-remote");
    expect(s.workloadByIp("127.0.0.2")?.name).toBe("echo-1");
    expect(s.workloadByIp("127.0.0.3")?.name).toBe("echo-2");
    expect(s.workloadByIp("127.0.0.4", "remote")).toBeUndefined();
    expect(s.workloadByIp("127.0.0.99")).toBeUndefined();
    // IPv6 is matched in any spelling; so is an IPv4-mapped socket address.
    expect(s.workloadByIp("FD00:0::4")?.name).toBe("plain-1");
    expect(s.workloadByIp("::ffff:127.0.0.4", "")?.name).toBe("plain-1");
  });

  test("workloads by uid and by namespace/name", () => {
    const s = loaded();
    expect(s.workloadByUid("Kubernetes//Pod/legacy/plain-1")?.workloadIps).toEqual(["127.0.0.4", "fd00::4"]);
    expect(s.workloadByUid("nope")).toBeUndefined();
    expect(s.findWorkload("default", "echo-2")?.uid).toBe("Kubernetes//Pod/default/echo-2");
    expect(s.findWorkload("legacy", "echo-2")).toBeUndefined();
  });

  test("services by VIP (with and without network) and by hostname with namespace preference", () => {
    const s = loaded();
    expect(s.serviceByVip("10.96.0.10", "")?.hostname).toBe(ECHO);
    expect(s.serviceByVip("10.96.0.10")?.hostname).toBe(ECHO);
    expect(s.serviceByVip("10.96.0.10", "remote")).toBeUndefined();
    expect(s.serviceByVip("fd00::20", "net2")?.name).toBe("plain");
    expect(s.serviceByVip("fd00:0::20", "")).toBeUndefined();

    expect(s.serviceByHost(ECHO)?.name).toBe("echo");
    expect(s.serviceByHost("shared.example.com", "team-a")?.namespace).toBe("team-a");
    expect(s.serviceByHost("shared.example.com", "team-b")?.namespace).toBe("team-b");
    // Elsewhere (or no preference), the canonical one.
    expect(s.serviceByHost("shared.example.com", "default")?.namespace).toBe("team-b");
    expect(s.serviceByHost("shared.example.com")?.namespace).toBe("team-b");
    expect(s.serviceByHost("missing.example.com")).toBeUndefined();
    expect(s.serviceByKey("team-a", "shared.example.com")?.vips[0]?.address).toBe("10.96.1.1");
  });

  test("endpoints: the workload's mapping wins, then the service's ports, then the port itself", () => {
    const s = loaded();
    const echo = s.serviceByHost(ECHO)!;
    const at = (port: number) =>
      s
        .endpoints(echo, port)
        .map((e) => [e.workload.name, e.targetPort])
        .sort();
    // echo-1 and echo-remote map 9000 themselves; echo-2 only maps 8080, so it takes the service's 9000 -> 19000.
    expect(at(9000)).toEqual([
      ["echo-1", 19000],
      ["echo-2", 19000],
      ["echo-remote", 29000],
    ]);
    expect(at(8080)).toEqual([
      ["echo-1", 8081],
      ["echo-2", 18080],
      ["echo-remote", 8081],
    ]);
    // Neither maps 7000.
    expect(at(7000)).toEqual([
      ["echo-1", 7000],
      ["echo-2", 7000],
      ["echo-remote", 7000],
    ]);
    // Unhealthy endpoints are listed with their status; the LB applies the health policy.
    expect(s.endpoints(echo, 9000).find((e) => e.workload.name === "echo-2")?.workload.status).toBe("Unhealthy");
    expect(s.endpoints(s.serviceByHost("shared.example.com")!, 443)).toEqual([]);
    expect(s.endpoints(s.serviceByHost("plain.legacy.svc.cluster.local")!, 80).map((e) => e.targetPort)).toEqual([
      8080,
    ]);
  });

  test("policies that apply to a workload: Global, its namespace's, and its own WorkloadSelector ones", () => {
    const cfg = parseMeshConfig(
      [
        "workloads:",
        "- {uid: a, name: a, namespace: default, authorizationPolicies: [default/selected]}",
        "- {uid: b, name: b, namespace: other}",
        "policies:",
        "- {name: global, namespace: istio-system, scope: Global, action: Deny}",
        "- {name: ns, namespace: default, scope: Namespace, action: Allow}",
        "- {name: selected, namespace: default, scope: WorkloadSelector, action: Allow}",
        "- {name: unbound, namespace: default, scope: WorkloadSelector, action: Deny}",
      ].join("\n"),
    );
    const s = loaded(cfg);
    const names = (w: Workload) => s.policiesFor(w).map((p) => p.name);
    expect(names(s.workloadByUid("a")!)).toEqual(["global", "ns", "selected"]);
    expect(names(s.workloadByUid("b")!)).toEqual(["global"]);
    expect(s.policyByKey("default/unbound")?.action).toBe("Deny");
  });

  test("apply replaces everything, swaps the snapshot, and emits updated", () => {
    const state = new ProxyState();
    const updater = new ProxyStateUpdater(state);
    expect(state.config.workloads).toEqual([]);
    const seen: MeshConfig[] = [];
    state.on("updated", (c: MeshConfig) => seen.push(c));

    const first = parseMeshConfig(fs.readFileSync(FIXTURE, "utf8"));
    updater.apply(first);
    expect(seen).toEqual([first]);
    expect(state.config).toBe(first);
    const oldEcho1 = state.workloadByIp("127.0.0.2", "")!;

    const second: MeshConfig = {
      workloads: [newWorkload({ uid: "new", name: "new", namespace: "default", workloadIps: ["127.0.0.50"] })],
      services: [
        newService({
          name: "n",
          namespace: "default",
          hostname: "n.example",
          vips: [{ network: "", address: "10.96.9.9" }],
        }),
      ],
      policies: [],
    };
    updater.apply(second);
    expect(seen).toEqual([first, second]);
    expect(state.config).toBe(second);
    expect(state.workloadByIp("127.0.0.2")).toBeUndefined();
    expect(state.serviceByVip("10.96.0.10")).toBeUndefined();
    expect(state.serviceByHost(ECHO)).toBeUndefined();
    expect(state.workloadByIp("127.0.0.50")?.uid).toBe("new");
    expect(state.serviceByVip("10.96.9.9")?.hostname).toBe("n.example");
    // A reader holding an old object keeps a consistent (old) view.
    expect(oldEcho1.name).toBe("echo-1");
  });
});

describe("ProxyState at scale", () => {
  test("50k workloads / 10k services: every index answers correctly", () => {
    const SERVICES = 10_000;
    const PER = 5;
    const ip = (n: number) => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    const vip = (n: number) => `172.16.${n >> 8}.${n & 255}`;
    const cfg: MeshConfig = { workloads: [], services: [], policies: [] };
    for (let s = 0; s < SERVICES; s++) {
      const hostname = `svc-${s}.ns-${s % 100}.svc.cluster.local`;
      const vips = [{ network: "", address: vip(s) }];
      cfg.services.push(
        newService({ name: `svc-${s}`, namespace: `ns-${s % 100}`, hostname, vips, ports: { 80: 8080 } }),
      );
      for (let k = 0; k < PER; k++) {
        const n = s * PER + k;
        cfg.workloads.push(
          newWorkload({
            uid: `c1//Pod/ns-${s % 100}/w-${n}`,
            name: `w-${n}`,
            namespace: `ns-${s % 100}`,
            workloadIps: [ip(n)],
            protocol: "HBONE",
            // Every other endpoint overrides the target port.
            services: { [`ns-${s % 100}/${hostname}`]: k % 2 ? { 80: 9000 + k } : {} },
          }),
        );
      }
    }
    expect(cfg.workloads).toHaveLength(50_000);

    const state = new ProxyState();
    new ProxyStateUpdater(state).apply(cfg);

    for (const n of [0, 1, 12_345, 49_999]) {
      const w = state.workloadByIp(ip(n), "")!;
      expect(w.name).toBe(`w-${n}`);
      expect(state.workloadByUid(w.uid)).toBe(w);
      expect(state.findWorkload(w.namespace, w.name)).toBe(w);
    }
    for (const s of [0, 4_321, 9_999]) {
      const svc = state.serviceByVip(vip(s), "")!;
      expect(svc.name).toBe(`svc-${s}`);
      expect(state.serviceByHost(svc.hostname, svc.namespace)).toBe(svc);
      const eps = state.endpoints(svc, 80);
      expect(eps.map((e) => e.workload.name)).toEqual([0, 1, 2, 3, 4].map((k) => `w-${s * PER + k}`));
      expect(eps.map((e) => e.targetPort)).toEqual([8080, 9001, 8080, 9003, 8080]);
    }
    expect(state.workloadByIp(ip(50_000))).toBeUndefined();
  });
});
