// parseMeshConfig: the fixture parses into the model with ztunnel's defaults; every kind of bad input is
// refused with file, line, column and field path.

import fs from "node:fs";
import { describe, expect, test } from "vitest";
import { Identity } from "../../host/identity/identity.js";
import { canonicalIp, newWorkload, type MeshConfig, type Workload } from "../../host/model/index.js";
import { ConfigError, parseMeshConfig } from "../../host/xds/local-format.js";

const FIXTURE = new URL("../fixtures/mesh.yaml", import.meta.url);

function fixture(): MeshConfig {
  return parseMeshConfig(fs.readFileSync(FIXTURE, "utf8"), "mesh.yaml");
}

/** Parses `lines` (joined with newlines) expecting a ConfigError; returns it. */
function refuse(lines: string[], file = "mesh.yaml"): ConfigError {
  try {
    parseMeshConfig(lines.join("\n"), file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

// A valid workload and service to break one line at a time (line numbers are 1-based).
const WL = [
  "workloads:", //                              1
  "- uid: c1//Pod/default/a", //                2
  "  name: a", //                               3
  "  namespace: default", //                    4
  "  serviceAccount: sa-a", //                  5
  "  workloadIps: [127.0.0.2]", //              6
  "  services:", //                             7
  "    default/echo.default.svc.cluster.local:", // 8
  "      9000: 19000", //                       9
];
const SVC = [
  "services:", //                               1
  "- name: echo", //                            2
  "  namespace: default", //                    3
  "  hostname: echo.default.svc.cluster.local", // 4
  "  vips: [/10.96.0.10]", //                   5
  "  ports: {9000: 19000}", //                  6
];

function edit(base: string[], line: number, text: string | null): string[] {
  const out = [...base];
  if (text === null) out.splice(line - 1, 1);
  else out[line - 1] = text;
  return out;
}

describe("parseMeshConfig: the fixture", () => {
  test("workloads carry every field given, in the model's shape", () => {
    const cfg = fixture();
    expect(cfg.workloads.map((w) => w.name)).toEqual(["echo-1", "echo-2", "plain-1", "echo-remote"]);
    const [e1, e2, , remote] = cfg.workloads;
    expect(e1).toMatchObject({
      uid: "Kubernetes//Pod/default/echo-1",
      namespace: "default",
      serviceAccount: "echo",
      trustDomain: "cluster.local",
      workloadIps: ["127.0.0.2"],
      protocol: "HBONE",
      canonicalName: "echo",
      canonicalRevision: "v1",
      workloadName: "echo",
      workloadType: "deployment",
      clusterId: "Kubernetes",
      network: "",
      node: "node-a",
      locality: { region: "eu-west1", zone: "eu-west1-b", subzone: "rack1" },
      services: { "default/echo.default.svc.cluster.local": { 9000: 19000 } },
    });
    // A quoted "1.10" stays text; a plain 1.10 would too (serde_yaml reads plain scalars as strings for strings).
    expect(e2!.canonicalRevision).toBe("1.10");
    expect(e2!.status).toBe("Unhealthy");
    expect(e2!.capacity).toBe(3);
    expect(remote!.network).toBe("remote");
    expect(remote!.networkGateway).toEqual({
      destination: { network: "remote", address: "127.0.0.9" },
      hboneMtlsPort: 15008,
    });
    expect(remote!.waypoint).toEqual({
      destination: { namespace: "default", hostname: "waypoint.default.svc.cluster.local" },
      hboneMtlsPort: 15008,
    });
  });

  test("omitted workload fields take ztunnel's defaults", () => {
    const plain = fixture().workloads[2]!;
    expect(plain).toEqual({
      uid: "Kubernetes//Pod/legacy/plain-1",
      name: "plain-1",
      namespace: "legacy",
      serviceAccount: "default",
      trustDomain: "cluster.local",
      workloadIps: ["127.0.0.4", "fd00::4"], // IPv6 in canonical form
      hostname: "",
      protocol: "TCP",
      network: "",
      node: "",
      clusterId: "",
      canonicalName: "",
      canonicalRevision: "",
      workloadName: "",
      workloadType: "",
      status: "Healthy",
      capacity: 1,
      services: { "legacy/plain.legacy.svc.cluster.local": {} },
      authorizationPolicies: [],
    });
    const made = newWorkload({ uid: "u", name: "n", namespace: "ns" });
    expect(made).toEqual({ ...plain, uid: "u", name: "n", namespace: "ns", workloadIps: [], services: {} });
  });

  test("services: VIPs with networks, ports, SANs, labels, load balancing", () => {
    const [echo, plain, sharedA, sharedB] = fixture().services;
    expect(echo).toMatchObject({
      name: "echo",
      namespace: "default",
      hostname: "echo.default.svc.cluster.local",
      vips: [{ network: "", address: "10.96.0.10" }],
      ports: { 9000: 19000, 8080: 8081 },
      subjectAltNames: ["spiffe://cluster.local/ns/default/sa/echo"],
      labels: { app: "echo", "istio.io/global": "true" },
      // ztunnel's serde spelling (Failover, OnlyHealthy) and the proto's (FAILOVER, ONLY_HEALTHY) both read.
      loadBalancer: {
        routingPreferences: ["NETWORK", "REGION", "ZONE"],
        mode: "FAILOVER",
        healthPolicy: "ONLY_HEALTHY",
      },
      canonical: false,
      visibility: "PUBLIC",
    });
    expect(plain!.vips).toEqual([
      { network: "", address: "10.96.0.20" },
      { network: "net2", address: "fd00::20" },
    ]);
    expect(plain!.subjectAltNames).toEqual([]);
    expect(plain!.labels).toEqual({});
    expect(plain!.loadBalancer).toBeUndefined();
    expect([sharedA!.canonical, sharedB!.canonical]).toEqual([false, true]);
  });

  test("policies: both rule shapes, string match forms, CIDRs, dryRun", () => {
    const [allow, deny] = fixture().policies;
    expect(allow).toMatchObject({
      name: "deny-9999",
      namespace: "default",
      scope: "Namespace",
      action: "Allow",
      dryRun: false,
    });
    expect(allow!.rules).toHaveLength(1);
    expect(allow!.rules[0]).toHaveLength(1);
    expect(allow!.rules[0]![0]![0]!.notDestinationPorts).toEqual([9999]);
    expect(allow!.rules[0]![0]![0]!.namespaces).toEqual([]);

    expect(deny).toMatchObject({ scope: "Global", action: "Deny", dryRun: true });
    const m = deny!.rules[0]![0]![0]!;
    expect(m.principals).toEqual([
      { kind: "prefix", value: "cluster.local/ns/default/sa/" },
      { kind: "exact", value: "spiffe-less" },
    ]);
    expect(m.notNamespaces).toEqual([
      { kind: "presence", value: "" },
      { kind: "prefix", value: "kube-" },
    ]);
    expect(m.sourceIps).toEqual([
      { address: "10.0.0.0", prefixLength: 8 },
      { address: "127.0.0.1", prefixLength: 32 },
    ]);
    expect(m.destinationPorts).toEqual([9000]);
  });

  test("serviceScopeConfigs", () => {
    expect(fixture().serviceScopeConfigs).toEqual([
      {
        servicesSelector: {
          matchLabels: {},
          matchExpressions: [{ key: "istio.io/global", operator: "In", values: ["true"] }],
        },
        scope: "GLOBAL",
      },
    ]);
  });

  test("an empty file is an empty mesh; absent lists are empty", () => {
    expect(parseMeshConfig("")).toEqual({ workloads: [], services: [], policies: [], serviceScopeConfigs: [] });
    expect(parseMeshConfig("# nothing yet\nworkloads:\n")).toEqual({
      workloads: [],
      services: [],
      policies: [],
      serviceScopeConfigs: [],
    });
  });

  test("identity defaults and canonicalIp", () => {
    const [e1, , plain] = fixture().workloads;
    const uri = (w: Workload) => new Identity(w.trustDomain, w.namespace, w.serviceAccount).toString();
    expect(uri(e1!)).toBe("spiffe://cluster.local/ns/default/sa/echo");
    expect(uri(plain!)).toBe("spiffe://cluster.local/ns/legacy/sa/default");
    expect(canonicalIp("FD00:0:0:0::0001")).toBe("fd00::1");
    expect(canonicalIp("::ffff:127.0.0.2")).toBe("127.0.0.2");
    expect(canonicalIp("::ffff:7f00:2")).toBe("127.0.0.2");
    expect(canonicalIp("10.0.0.1")).toBe("10.0.0.1");
    expect(canonicalIp("10.0.0.256")).toBeUndefined();
    expect(canonicalIp("echo")).toBeUndefined();
  });
});

describe("parseMeshConfig: refusals name file, line, column and field", () => {
  test("unknown field, with the message format and a spelling hint", () => {
    const e = refuse(edit(WL, 5, "  serviceAcount: sa-a"));
    expect(e.message).toBe("mesh.yaml:5:3: workloads[0].serviceAcount: unknown field (did you mean serviceAccount?)");
    expect([e.file, e.line, e.column, e.field]).toEqual(["mesh.yaml", 5, 3, "workloads[0].serviceAcount"]);
  });

  test("unknown fields everywhere: top level, locality, gateway, load balancer, policy match", () => {
    expect(refuse(["workload: []"]).field).toBe("workload");
    const loc = refuse([...WL, "  locality: {region: r, zone: z, rack: x}"]);
    expect([loc.line, loc.field]).toEqual([10, "workloads[0].locality.rack"]);
    const gw = refuse([...WL, "  waypoint:", "    destination: default/wp", "    port: 15008"]);
    expect([gw.line, gw.column, gw.field]).toEqual([12, 5, "workloads[0].waypoint.port"]);
    const lb = refuse([...SVC, "  loadBalancer: {mode: STRICT, routing: [NODE]}"]);
    expect([lb.line, lb.field]).toEqual([7, "services[0].loadBalancer.routing"]);
    const pm = refuse([
      "policies:",
      "- {name: p, namespace: ns, scope: Global, action: Deny, rules: [[[{destinationPort: [80]}]]]}",
    ]);
    expect([pm.line, pm.field]).toEqual([2, "policies[0].rules[0][0][0].destinationPort"]);
  });

  test("ztunnel fields hbone-wasm does not implement are refused by name", () => {
    const e = refuse([...WL, "  nativeTunnel: true"]);
    expect(e.message).toBe("mesh.yaml:10:3: workloads[0].nativeTunnel: native tunnels are not supported by hbone-wasm");
  });

  test("wrong types", () => {
    const ips = refuse(edit(WL, 6, "  workloadIps: 127.0.0.2"));
    expect([ips.line, ips.column, ips.field, ips.reason]).toEqual([
      6,
      16,
      "workloads[0].workloadIps",
      "expected a list",
    ]);
    const cap = refuse([...WL, "  capacity: high"]);
    expect([cap.line, cap.field, cap.reason]).toEqual([
      10,
      "workloads[0].capacity",
      "expected a capacity 0..4294967295",
    ]);
    const name = refuse(edit(WL, 3, "  name: {first: a}"));
    expect([name.line, name.field, name.reason]).toEqual([3, "workloads[0].name", "expected a string"]);
    const wl = refuse(["workloads:", "- just-a-string"]);
    expect([wl.line, wl.field, wl.reason]).toEqual([2, "workloads[0]", "expected a workload mapping"]);
    const dry = refuse(["policies:", "- {name: p, namespace: ns, scope: Global, action: Deny, dryRun: yes}"]);
    expect([dry.field, dry.reason]).toEqual(["policies[0].dryRun", "expected true or false"]);
    // ztunnel's pre-1.0 format (a bare list of workloads) is not a mapping.
    expect(refuse(["- name: local"]).reason).toBe("expected a mapping with workloads, services and policies");
  });

  test("bad enum values", () => {
    const e = refuse([...WL, "  protocol: HTTP"]);
    expect(e.message).toBe('mesh.yaml:10:13: workloads[0].protocol: "HTTP" is not one of HBONE, TCP');
    expect(refuse([...SVC, "  loadBalancer: {routingPreferences: [RACK]}"]).field).toBe(
      "services[0].loadBalancer.routingPreferences[0]",
    );
    expect(refuse(["policies:", "- {name: p, namespace: ns, scope: Cluster, action: Deny}"]).field).toBe(
      "policies[0].scope",
    );
  });

  test("bad IP addresses", () => {
    const e = refuse(edit(WL, 6, "  workloadIps: [127.0.0.2, 127.0.0.300]"));
    expect(e.message).toBe('mesh.yaml:6:28: workloads[0].workloadIps[1]: "127.0.0.300" is not an IP address');
    const vip = refuse(edit(SVC, 5, "  vips: [/10.96.0.10, net1/echo]"));
    expect([vip.line, vip.column, vip.field]).toEqual([5, 23, "services[0].vips[1]"]);
    expect(vip.reason).toContain("is not network/IP");
    const gw = refuse([...WL, "  networkGateway: {destination: remote/, hboneMtlsPort: 15008}"]);
    expect(gw.field).toBe("workloads[0].networkGateway.destination");
    const cidr = refuse([
      "policies:",
      "- {name: p, namespace: ns, scope: Global, action: Deny, rules: [[[{sourceIps: [10.0.0.0/33]}]]]}",
    ]);
    expect([cidr.field, cidr.reason]).toEqual([
      "policies[0].rules[0][0][0].sourceIps[0]",
      '"10.0.0.0/33" is not an IP address or CIDR',
    ]);
  });

  test("bad ports: out of range values and keys, non-numeric keys", () => {
    const v = refuse(edit(SVC, 6, "  ports: {9000: 70000}"));
    expect(v.message).toBe("mesh.yaml:6:17: services[0].ports[9000]: 70000 is out of range (a port number 1..65535)");
    const k = refuse(edit(WL, 9, "      0: 19000"));
    expect([k.line, k.column, k.field]).toEqual([
      9,
      7,
      'workloads[0].services["default/echo.default.svc.cluster.local"][0]',
    ]);
    const named = refuse(edit(SVC, 6, "  ports: {http: 8080}"));
    expect([named.field, named.reason]).toEqual(["services[0].ports.http", '"http" is not a port number 1..65535']);
    const hbone = refuse([...WL, "  waypoint: {destination: default/wp, hboneMtlsPort: 0}"]);
    expect(hbone.field).toBe("workloads[0].waypoint.hboneMtlsPort");
    const pol = refuse([
      "policies:",
      "- {name: p, namespace: ns, scope: Global, action: Deny, rules: [[[{notDestinationPorts: [-1]}]]]}",
    ]);
    expect(pol.field).toBe("policies[0].rules[0][0][0].notDestinationPorts[0]");
  });

  test("missing required fields point at the item", () => {
    const ns = refuse(edit(WL, 4, null));
    expect(ns.message).toBe("mesh.yaml:2:3: workloads[0].namespace: missing required field");
    const uid = refuse(edit(WL, 2, "- uid: ''"));
    expect([uid.line, uid.field, uid.reason]).toEqual([2, "workloads[0].uid", "must not be empty"]);
    const host = refuse(edit(SVC, 4, null));
    expect([host.line, host.field]).toEqual([2, "services[0].hostname"]);
    const action = refuse(["policies:", "- name: p", "  namespace: ns", "  scope: Global"]);
    expect([action.line, action.field, action.reason]).toEqual([2, "policies[0].action", "missing required field"]);
  });

  test("duplicates: workload uid, service namespace/hostname, VIP", () => {
    const dup = refuse([...WL, ...WL.slice(1).map((l) => l.replace("127.0.0.2", "127.0.0.5"))]);
    expect(dup.message).toBe(
      'mesh.yaml:10:8: workloads[1].uid: duplicate uid "c1//Pod/default/a" (first at workloads[0].uid)',
    );
    const svc = refuse([...SVC, ...SVC.slice(1).map((l) => l.replace("10.96.0.10", "10.96.0.11"))]);
    expect([svc.line, svc.column, svc.field]).toEqual([9, 13, "services[1].hostname"]);
    const vip = refuse([...SVC, "- {name: other, namespace: default, hostname: other, vips: [/10.96.0.10]}"]);
    expect([vip.line, vip.field, vip.reason]).toEqual([
      7,
      "services[1].vips[0]",
      "VIP /10.96.0.10 is already used by service default/echo.default.svc.cluster.local",
    ]);
    // The same IP on another network is another VIP.
    const other = "- {name: other, namespace: default, hostname: other, vips: [net2/10.96.0.10]}";
    expect(parseMeshConfig([...SVC, other].join("\n")).services[1]!.vips).toEqual([
      { network: "net2", address: "10.96.0.10" },
    ]);
  });

  test("service keys, SANs, labels, hostnames", () => {
    const key = refuse(edit(WL, 8, "    echo.default.svc.cluster.local:"));
    expect([key.line, key.column, key.reason]).toEqual([8, 5, "service keys must be namespace/hostname"]);
    const san = refuse([...SVC, "  subjectAltNames: [cluster.local/ns/default/sa/echo]"]);
    expect([san.line, san.field]).toEqual([7, "services[0].subjectAltNames[0]"]);
    expect(san.reason).toContain("is not a SPIFFE URI");
    const label = refuse([...SVC, "  labels: {istio.io/global: true}"]);
    expect(label.field).toBe('services[0].labels["istio.io/global"]');
    expect(label.reason).toBe('label values must be strings (quote them: "true")');
  });

  test("empty values: a blank list item, a required field with no value", () => {
    const item = refuse(["workloads:", "- ", "- uid: b"]);
    expect([item.line, item.column, item.field, item.reason]).toEqual([
      2,
      3,
      "workloads[0]",
      "expected a workload mapping",
    ]);
    const uid = refuse(["workloads:", "- uid:", "  name: a", "  namespace: default"]);
    expect([uid.line, uid.field, uid.reason]).toEqual([2, "workloads[0].uid", "missing required field"]);
  });

  test("anchors and aliases resolve; tags other than the string-match ones are refused", () => {
    const cfg = parseMeshConfig(
      [
        "workloads:",
        "- {uid: a, name: a, namespace: ns, services: &echo {ns/echo: {80: 8080}}}",
        "- {uid: b, name: b, namespace: ns, services: *echo}",
      ].join("\n"),
    );
    expect(cfg.workloads[1]!.services).toEqual({ "ns/echo": { 80: 8080 } });
    const tag = refuse(["workloads:", "- {uid: a, name: !Exact a, namespace: ns}"]);
    expect([tag.line, tag.field, tag.reason]).toEqual([2, "workloads[0].name", "unexpected tag !Exact"]);
    const sm = refuse([
      "policies:",
      "- {name: p, namespace: ns, scope: Global, action: Deny, rules: [[[{principals: [!Regex a.*]}]]]}",
    ]);
    expect(sm.field).toBe("policies[0].rules[0][0][0].principals[0]");
    expect(sm.reason).toBe("unknown string match !Regex (Exact, Prefix, Suffix, Presence)");
  });

  test("invalid YAML is located too", () => {
    const e = refuse(["workloads:", "- uid: a", "  name: a", "  name: b"]);
    expect([e.line, e.field]).toEqual([4, undefined]);
    expect(e.message).toMatch(/^mesh\.yaml:4:3: invalid YAML: Map keys must be unique/);
    const tab = refuse(["workloads:", "- uid: [a"]);
    expect(tab.file).toBe("mesh.yaml");
    expect(tab.line).toBeGreaterThanOrEqual(2);
  });

  test("without a file name the location still reads", () => {
    try {
      parseMeshConfig("services:\n- {name: a, namespace: b}");
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toBe("<config>:2:3: services[0].hostname: missing required field");
    }
  });
});
