// istio.workload / istio.security resources <-> the config model: every field survives the wire both ways, ztunnel's
// defaults apply to unset fields, IPs come out in the model's one spelling, and what the model cannot hold is an
// XdsConvertError naming the field.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { canonicalIp, newService, newWorkload, type MeshConfig } from "../../host/model/index.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import {
  XdsConvertError,
  decodeAddress,
  decodeAuthorization,
  ipFromBytes,
  policyFromXds,
  serviceFromXds,
  workloadFromXds,
} from "../../host/xds/convert.js";
import { encodeAddress, encodePolicy, ipToBytes, policyToXds, serviceToXds, workloadToXds } from "./encode.js";
import { Address, TunnelProtocol, WorkloadType } from "../../host/xds/gen/istio/workload/workload.js";
import { Authorization, type Match } from "../../host/xds/gen/istio/security/authorization.js";

// Every field the local format has, so the round trip covers them all.
const FULL = `
workloads:
  - uid: c1//Pod/default/sleep-1
    name: sleep-1
    namespace: default
    serviceAccount: sleep
    trustDomain: td.example
    workloadIps: [10.0.0.1, "2001:db8::1"]
    hostname: sleep.example
    protocol: HBONE
    network: net1
    node: node-a
    clusterId: c1
    canonicalName: sleep
    canonicalRevision: v1
    workloadName: sleep
    workloadType: deployment
    locality: { region: r1, zone: z1, subzone: s1 }
    waypoint: { destination: net1/10.0.0.100, hboneMtlsPort: 15008 }
    networkGateway: { destination: istio-system/eastwest.example, hboneMtlsPort: 15009 }
    status: Unhealthy
    capacity: 3
    services: { default/echo.default.svc.cluster.local: { 80: 8080, 443: 8443 } }
    authorizationPolicies: [default/allow-sleep]
  - { uid: c1//Pod/default/min, name: min, namespace: default }
services:
  - name: echo
    namespace: default
    hostname: echo.default.svc.cluster.local
    vips: [/10.96.0.10, "net1/fd00::10"]
    ports: { 80: 8080, 443: 8443 }
    subjectAltNames: [spiffe://td.example/ns/default/sa/echo]
    waypoint: { destination: default/waypoint.default.svc.cluster.local, hboneMtlsPort: 15008 }
    loadBalancer: { routingPreferences: [NETWORK, REGION, ZONE, SUBZONE, NODE, CLUSTER], mode: FAILOVER, healthPolicy: ALLOW_ALL }
    canonical: true
    visibility: NAMESPACE
  - { name: min, namespace: other, hostname: min.other.svc.cluster.local }
policies:
  - name: allow-sleep
    namespace: default
    scope: WorkloadSelector
    action: Allow
    dryRun: true
    rules:
      - - - namespaces: [{Exact: default}, "prefix*", "*suffix", "*"]
            notNamespaces: [kube-system]
            serviceAccounts: [{ namespace: default, serviceAccount: sleep }]
            notServiceAccounts: [{ namespace: default, serviceAccount: bad }]
            principals: [cluster.local/ns/default/sa/sleep]
            notPrincipals: ["*"]
            sourceIps: [10.0.0.0/8, "2001:db8::/32"]
            notSourceIps: [10.1.2.3]
            destinationIps: [10.96.0.10/32]
            notDestinationIps: ["::1/128"]
            destinationPorts: [8080]
            notDestinationPorts: [9999]
          - { namespaces: [other] }
        - - { destinationPorts: [80, 443] }
  - { name: deny-all, namespace: istio-system, scope: Global, action: Deny, rules: [] }
  - { name: ns, namespace: default, scope: Namespace, action: Allow }
`;

describe("round trip through the wire format", () => {
  const cfg: MeshConfig = parseMeshConfig(FULL, "full.yaml");

  it("keeps every workload field", () => {
    expect(cfg.workloads).toHaveLength(2);
    for (const w of cfg.workloads) {
      const back = decodeAddress(encodeAddress({ kind: "workload", workload: w }));
      // xDS always has a workload type (the enum's zero is DEPLOYMENT); the local file may leave it empty.
      expect(back).toEqual({ kind: "workload", workload: { ...w, workloadType: w.workloadType || "deployment" } });
    }
  });

  it("keeps every service field", () => {
    for (const s of cfg.services) {
      const back = decodeAddress(encodeAddress({ kind: "service", service: s }));
      expect(back).toEqual({ kind: "service", service: s });
    }
  });

  it("keeps every policy field (rules -> clauses -> matches as groups -> rules -> matches)", () => {
    expect(cfg.policies).toHaveLength(3);
    for (const p of cfg.policies) expect(decodeAuthorization(encodePolicy(p))).toEqual(p);
    const x = policyToXds(cfg.policies[0]!);
    expect(x.groups).toHaveLength(1); // one rule
    expect(x.groups[0]!.rules).toHaveLength(2); // of two clauses
    expect(x.groups[0]!.rules[0]!.matches).toHaveLength(2); // the first of two matches
    expect(x.groups[0]!.rules[0]!.matches[0]!.namespaces).toHaveLength(4);
  });

  it("uses istio's field numbers on the wire", () => {
    // Hand-encoded Workload{uid(20)="u", name(1)="n", namespace(2)="ns", addresses(3)=[10.0.0.1],
    // tunnel_protocol(5)=HBONE, capacity(27)={value: 7}} inside Address{workload(1)}.
    const w = Buffer.from([
      0xa2,
      0x01,
      0x01,
      0x75, // field 20, len 1, "u"
      0x0a,
      0x01,
      0x6e, // field 1 "n"
      0x12,
      0x02,
      0x6e,
      0x73, // field 2 "ns"
      0x1a,
      0x04,
      10,
      0,
      0,
      1, // field 3 bytes
      0x28,
      0x01, // field 5 varint 1
      0xda,
      0x01,
      0x02,
      0x08,
      0x07, // field 27 UInt32Value{value(1)=7}
    ]);
    const addr = Buffer.concat([Buffer.from([0x0a, w.length]), w]);
    expect(decodeAddress(addr)).toEqual({
      kind: "workload",
      workload: newWorkload({
        uid: "u",
        name: "n",
        namespace: "ns",
        workloadIps: ["10.0.0.1"],
        protocol: "HBONE",
        capacity: 7,
        workloadType: "deployment",
      }),
    });
    // Authorization{name(1)="p", namespace(2)="d", scope(3)=NAMESPACE, action(4)=DENY,
    //   groups(5)=[{rules(1)=[{matches(2)=[{destination_ports(9)=[80], service_accounts(11)=[{ns(1)="a", sa(2)="b"}]}]}]}],
    //   dry_run(6)=true}
    const match = Buffer.from([0x4a, 0x01, 80, 0x5a, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x62]);
    const rules = Buffer.concat([Buffer.from([0x12, match.length]), match]);
    const group = Buffer.concat([Buffer.from([0x0a, rules.length]), rules]);
    const auth = Buffer.concat([
      Buffer.from([0x0a, 0x01, 0x70, 0x12, 0x01, 0x64, 0x18, 0x01, 0x20, 0x01]),
      Buffer.from([0x2a, group.length]),
      group,
      Buffer.from([0x30, 0x01]),
    ]);
    const p = decodeAuthorization(auth);
    expect(p).toMatchObject({ name: "p", namespace: "d", scope: "Namespace", action: "Deny", dryRun: true });
    expect(p.rules[0]![0]![0]!.destinationPorts).toEqual([80]);
    expect(p.rules[0]![0]![0]!.serviceAccounts).toEqual([{ namespace: "a", serviceAccount: "b" }]);
  });

  it("applies ztunnel's defaults to unset fields", () => {
    const a = Address.fromPartial({ type: { $case: "workload", workload: { uid: "u", name: "n", namespace: "ns" } } });
    if (a.type?.$case !== "workload") throw new Error("fromPartial lost the oneof");
    const w = workloadFromXds(a.type.workload);
    expect(w).toMatchObject({
      serviceAccount: "default",
      trustDomain: "cluster.local",
      capacity: 1,
      status: "Healthy",
      protocol: "TCP",
      workloadType: "deployment",
    });
    const ws = workloadFromXds({
      ...workloadToXds(newWorkload({ uid: "u", name: "n", namespace: "ns" })),
      capacity: 0,
      workloadType: WorkloadType.CRONJOB,
    });
    expect(ws.capacity).toBe(0); // an explicit 0 stays 0 (only unset means 1)
    expect(ws.workloadType).toBe("cronjob");
    const s = serviceFromXds({
      ...serviceToXds(newService({ name: "a", namespace: "b", hostname: "a.b" })),
      waypoint: {
        destination: { $case: "hostname", hostname: { namespace: "b", hostname: "wp.b" } },
        hboneMtlsPort: 0,
      },
    });
    expect(s.waypoint).toEqual({ destination: { namespace: "b", hostname: "wp.b" }, hboneMtlsPort: 15008 });
  });
});

describe("IP addresses", () => {
  it("formats 16 bytes exactly as canonicalIp spells the address", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        (b, from, len) => {
          b.fill(0, 2 * from, Math.min(16, 2 * (from + len))); // zero runs of every length and place
          const text = ipFromBytes(b, "x");
          const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(":");
          expect(text).toBe(canonicalIp(groups));
          expect(Buffer.from(ipToBytes(text))).toEqual(Buffer.from(text.includes(":") ? b : b.subarray(12)));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("formats IPv4 and v4-mapped IPv6 as dotted quads", () => {
    expect(ipFromBytes(Uint8Array.from([192, 168, 0, 255]), "x")).toBe("192.168.0.255");
    expect(ipFromBytes(ipToBytes("::ffff:10.1.2.3"), "x")).toBe("10.1.2.3");
    expect(ipFromBytes(ipToBytes("::"), "x")).toBe("::");
    expect(ipFromBytes(ipToBytes("1:0:0:2:0:0:0:3"), "x")).toBe("1:0:0:2::3");
    expect(ipFromBytes(ipToBytes("1:0:2:0:3:0:4:0"), "x")).toBe("1:0:2:0:3:0:4:0");
  });
});

describe("what the model cannot hold", () => {
  const base = () =>
    workloadToXds(newWorkload({ uid: "c//Pod/ns/w", name: "w", namespace: "ns", workloadIps: ["10.0.0.1"] }));
  const cases: [string, () => unknown, RegExp][] = [
    [
      "a 5-byte address",
      () => workloadFromXds({ ...base(), addresses: [new Uint8Array(5)] }),
      /^workload\.addresses\[0\]: 5 bytes is neither an IPv4 \(4\) nor an IPv6 \(16\) address$/,
    ],
    [
      "LEGACY_ISTIO_MTLS",
      () => workloadFromXds({ ...base(), tunnelProtocol: TunnelProtocol.LEGACY_ISTIO_MTLS }),
      /tunnelProtocol: LEGACY_ISTIO_MTLS is not supported/,
    ],
    [
      "an unknown tunnel protocol",
      () => workloadFromXds({ ...base(), tunnelProtocol: 9 as TunnelProtocol }),
      /tunnelProtocol: unknown enum value 9/,
    ],
    [
      "an unknown workload type",
      () => workloadFromXds({ ...base(), workloadType: 7 as WorkloadType }),
      /workloadType: unknown enum value 7/,
    ],
    ["an unknown status", () => workloadFromXds({ ...base(), status: 5 as never }), /status: unknown enum value 5/],
    ["no uid", () => workloadFromXds({ ...base(), uid: "" }), /^workload\.uid: must not be empty$/],
    ["no namespace", () => workloadFromXds({ ...base(), namespace: "" }), /workload\.namespace: must not be empty/],
    [
      "a service key without a slash",
      () => workloadFromXds({ ...base(), services: new Map([["echo", { ports: [] }]]) }),
      /services\["echo"\]: keys must be namespace\/hostname/,
    ],
    [
      "service port 0",
      () =>
        workloadFromXds({ ...base(), services: new Map([["a/b", { ports: [{ servicePort: 0, targetPort: 1 }] }]]) }),
      /\.ports\[0\]\.servicePort: 0 is not a port number/,
    ],
    [
      "a target port above 65535",
      () =>
        workloadFromXds({
          ...base(),
          services: new Map([["a/b", { ports: [{ servicePort: 80, targetPort: 70000 }] }]]),
        }),
      /targetPort: 70000 is not a port number/,
    ],
    [
      "a gateway without destination",
      () => workloadFromXds({ ...base(), waypoint: { destination: undefined, hboneMtlsPort: 15008 } }),
      /workload\.waypoint: no destination/,
    ],
    [
      "a bad authorization policy key",
      () => workloadFromXds({ ...base(), authorizationPolicies: ["nope"] }),
      /authorizationPolicies: "nope"/,
    ],
    [
      "a hostname with a slash",
      () =>
        serviceFromXds({
          ...serviceToXds(newService({ name: "a", namespace: "b", hostname: "a.b" })),
          hostname: "a/b",
        }),
      /service\.hostname: "a\/b" is not a hostname/,
    ],
    [
      "an unknown LB mode",
      () =>
        serviceFromXds({
          ...serviceToXds(newService({ name: "a", namespace: "b", hostname: "a.b" })),
          loadBalancing: { routingPreference: [], mode: 9 as never, healthPolicy: 0 },
        }),
      /loadBalancing\.mode: unknown enum value 9/,
    ],
    [
      "a string match with no type",
      () => policyFromXds(withFirstMatch({ principals: [{ matchType: undefined }] })),
      /groups\[0\]\.rules\[0\]\.matches\[0\]\.principals\[0\]: no match type/,
    ],
    [
      "a prefix length of 33 for IPv4",
      () => policyFromXds(withFirstMatch({ sourceIps: [{ address: Uint8Array.from([10, 0, 0, 0]), length: 33 }] })),
      /sourceIps\[0\]\.length: 33 is not a prefix length for 10\.0\.0\.0/,
    ],
    [
      "an unknown policy action",
      () => policyFromXds({ ...policyToXds(pol()), action: 2 as never }),
      /authorization\.action: unknown enum value 2/,
    ],
    [
      "an unknown policy scope",
      () => policyFromXds({ ...policyToXds(pol()), scope: 3 as never }),
      /authorization\.scope: unknown enum value 3/,
    ],
    [
      "an Address with neither workload nor service",
      () => decodeAddress(Address.encode({ type: undefined }).finish()),
      /^Address: neither/,
    ],
    [
      "bytes that are not protobuf",
      () => decodeAuthorization(Uint8Array.from([0x0a, 0x05, 1])),
      /^Authorization: undecodable/,
    ],
  ];
  function pol() {
    return parseMeshConfig(FULL).policies[0]!;
  }
  /** pol() in xDS, its one match changed by `patch`. */
  function withFirstMatch(patch: Partial<Match>): Authorization {
    const x = policyToXds(pol());
    return { ...x, groups: [{ rules: [{ matches: [{ ...x.groups[0]!.rules[0]!.matches[0]!, ...patch }] }] }] };
  }
  it.each(cases)("refuses %s", (_name, fn, re) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(XdsConvertError);
    expect((err as Error).message).toMatch(re);
  });

  it("takes a valid policy (the refusals above are not the base's fault)", () => {
    expect(policyFromXds(Authorization.fromPartial(policyToXds(pol()))).name).toBe("allow-sleep");
    expect(workloadFromXds(base()).uid).toBe("c//Pod/ns/w");
  });
});
