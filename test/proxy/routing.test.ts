// Outbound routing as a table (ztunnel's build_request_* tests): a mesh in ztunnel's local format, a source
// workload and a destination in, the route out — HBONE or TCP, where the bytes land, which node proxy or gateway
// is dialled, which identities the far end may present, the outer CONNECT authority of double HBONE — or the
// refusal (OutboundError with its SOCKS5 reply code). Outbound.resolve does no I/O: nothing is dialled here. The
// endpoint pick is injected (the first healthy endpoint, so rows are deterministic); the load balancer's own
// choices are tested in test/lb/.

import { describe, expect, it } from "vitest";
import { Identity } from "../../host/identity/identity.js";
import { HbonePool } from "../../host/proxy/pool.js";
import { Outbound, OutboundError, type Route } from "../../host/proxy/outbound.js";
import { formatAuthority } from "../../host/proxy/authority.js";
import { socksReplyOf } from "../../host/proxy/socks5.js";
import { stateOf } from "../lb/fixture.js";
import type { LoadBalancer } from "../../host/lb/index.js";
import type { Service, Workload } from "../../host/model/index.js";

const MESH = `
workloads:
- {uid: c1//Pod/default/sleep, name: sleep, namespace: default, serviceAccount: sleep, network: net1,
   workloadIps: [10.0.1.1], protocol: HBONE}
- {uid: c1//Pod/default/echo, name: echo, namespace: default, serviceAccount: echo, network: net1,
   workloadIps: [10.0.1.2], protocol: HBONE, services: {default/echo.default.svc.cluster.local: {}}}
- {uid: c1//Pod/default/echo-v6, name: echo-v6, namespace: default, serviceAccount: echo, network: net1,
   workloadIps: ["fd00::2"], protocol: HBONE}
- {uid: c1//Pod/legacy/plain, name: plain, namespace: legacy, network: net1, workloadIps: [10.0.1.3],
   services: {legacy/plain.legacy.svc.cluster.local: {}}}
- {uid: c1//Pod/default/down, name: down, namespace: default, network: net1, workloadIps: [10.0.1.4], protocol: HBONE,
   status: Unhealthy, services: {default/down.default.svc.cluster.local: {}}}
- {uid: c1//Pod/default/local, name: local, namespace: default, network: net1, workloadIps: [127.0.0.5], protocol: HBONE,
   services: {default/selfcall.default.svc.cluster.local: {}}}
- {uid: c2//Pod/default/global-remote, name: global-remote, namespace: default, serviceAccount: global, network: net2,
   workloadIps: [10.0.2.5], protocol: HBONE,
   networkGateway: {destination: net2/10.0.2.100, hboneMtlsPort: 15008},
   services: {default/global.default.svc.cluster.local: {80: 9080}, default/nosans.default.svc.cluster.local: {}}}
- {uid: c2//Pod/default/by-name, name: by-name, namespace: default, serviceAccount: global, network: net2,
   workloadIps: [10.0.2.6], protocol: HBONE,
   networkGateway: {destination: istio-system/eastwest.istio-system.svc.cluster.local, hboneMtlsPort: 15009},
   services: {default/gwname.default.svc.cluster.local: {}}}
- {uid: c2//Pod/default/nogw, name: nogw, namespace: default, network: net2, workloadIps: [10.0.2.7], protocol: HBONE,
   services: {default/nogw.default.svc.cluster.local: {}}}
- {uid: c2//Pod/istio-system/eastwest, name: eastwest, namespace: istio-system, serviceAccount: istio-eastwestgateway,
   network: net2, workloadIps: [10.0.2.100], protocol: HBONE}
- {uid: c2//Pod/istio-system/eastwest-b, name: eastwest-b, namespace: istio-system, serviceAccount: istio-eastwestgateway,
   network: net2, workloadIps: [10.0.2.101], protocol: HBONE,
   services: {istio-system/eastwest.istio-system.svc.cluster.local: {}}}
services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: [net1/10.96.0.10], ports: {80: 8080},
   subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo, spiffe://cluster.local/ns/default/sa/echo-canary]}
- {name: plain, namespace: legacy, hostname: plain.legacy.svc.cluster.local, vips: [net1/10.96.0.20], ports: {80: 8080}}
- {name: down, namespace: default, hostname: down.default.svc.cluster.local, vips: [net1/10.96.0.21], ports: {80: 80}}
- {name: selfcall, namespace: default, hostname: selfcall.default.svc.cluster.local, vips: [net1/10.96.0.22],
   ports: {80: 15008}}
- {name: global, namespace: default, hostname: global.default.svc.cluster.local, vips: [net1/10.96.0.30], ports: {80: 8080},
   subjectAltNames: [spiffe://cluster.local/ns/default/sa/global]}
- {name: nosans, namespace: default, hostname: nosans.default.svc.cluster.local, ports: {80: 8080}}
- {name: nogw, namespace: default, hostname: nogw.default.svc.cluster.local, ports: {80: 8080},
   subjectAltNames: [spiffe://cluster.local/ns/default/sa/nogw]}
- {name: gwname, namespace: default, hostname: gwname.default.svc.cluster.local, ports: {80: 8080},
   subjectAltNames: [spiffe://cluster.local/ns/default/sa/global]}
- {name: eastwest, namespace: istio-system, hostname: eastwest.istio-system.svc.cluster.local, ports: {15009: 15009},
   subjectAltNames: [spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway-svc]}
- {name: remote-vip, namespace: default, hostname: remote-vip.default.svc.cluster.local, vips: [net2/10.96.0.50],
   ports: {80: 8080}}
`;

const state = stateOf(MESH);
const sleep = state.workloadByUid("c1//Pod/default/sleep")!;

/** The outbound of workload sleep; only resolve() is used, so the certificate is never asked for. */
// The load balancer's own choices are test/lb's: here the first healthy endpoint, and the first healthy gateway
// instance with an address on that network, so every row is fixed.
const lb = {
  pick: (_src: Workload, svc: Service, port: number) =>
    state.endpoints(svc, port).find((e) => e.workload.status !== "Unhealthy"),
  pickGateway: (svc: Service, port: number, network: string) =>
    state
      .endpoints(svc, port)
      .find(
        (e) => e.workload.network === network && e.workload.status !== "Unhealthy" && e.workload.workloadIps.length > 0,
      ),
} as unknown as LoadBalancer;
const outbound = new Outbound({
  inputs: {
    state,
    pool: new HbonePool(),
    innerPool: new HbonePool(),
    hbonePort: 15008,
    connectTimeoutMs: 10_000,
    responseBaggage: true,
    lb,
    ownPorts: () => new Set<number>(),
  },
  source: sleep,
  sourceIdentity: new Identity("cluster.local", "default", "sleep"),
  certificate: () => Promise.reject(new Error("routing tests dial nothing")),
});

const sa = (ns: string, name: string) => `spiffe://cluster.local/ns/${ns}/sa/${name}`;

/** What a row compares: the route in strings. */
function view(r: Route) {
  const hp = (h: { host: string; port: number }) => formatAuthority(h.host, h.port);
  return {
    protocol: r.protocol,
    target: hp(r.target),
    hop: hp(r.hop),
    expected: r.expected.map(String),
    ...(r.service ? { service: r.service.hostname } : {}),
    ...(r.workload ? { workload: r.workload.name } : {}),
    ...(r.via ? { via: { hop: hp(r.via.hop), expected: r.via.expected.map(String), authority: r.via.authority } } : {}),
  };
}

/** The route to echo through its service (by VIP or hostname). */
const ECHO_VIA_SERVICE = {
  protocol: "HBONE",
  target: "10.0.1.2:8080",
  hop: "10.0.1.2:15008",
  expected: [sa("default", "echo"), sa("default", "echo-canary")],
  service: "echo.default.svc.cluster.local",
  workload: "echo",
} as const;

describe("routes", () => {
  it.each([
    [
      "a service VIP: its endpoint, the service port mapped, the endpoint's identity and the service's SANs",
      "10.96.0.10:80",
      ECHO_VIA_SERVICE,
    ],
    ["the service's hostname: the same route", "echo.default.svc.cluster.local:80", ECHO_VIA_SERVICE],
    [
      "a workload IP: that workload, the port as given, its identity only",
      "10.0.1.2:9999",
      {
        protocol: "HBONE",
        target: "10.0.1.2:9999",
        hop: "10.0.1.2:15008",
        expected: [sa("default", "echo")],
        workload: "echo",
      },
    ],
    [
      "an IPv6 workload: bracketed authority",
      "[fd00::2]:80",
      {
        protocol: "HBONE",
        target: "[fd00::2]:80",
        hop: "[fd00::2]:15008",
        expected: [sa("default", "echo")],
        workload: "echo-v6",
      },
    ],
    [
      "a service whose endpoint speaks plain TCP: a TCP route to it",
      "10.96.0.20:80",
      {
        protocol: "TCP",
        target: "10.0.1.3:8080",
        hop: "10.0.1.3:15008",
        expected: [sa("legacy", "default")],
        service: "plain.legacy.svc.cluster.local",
        workload: "plain",
      },
    ],
    [
      "an address outside the mesh: passthrough, nothing expected",
      "192.0.2.7:443",
      { protocol: "TCP", target: "192.0.2.7:443", hop: "192.0.2.7:443", expected: [] },
    ],
    [
      "a VIP of another network only: not ours, passthrough",
      "10.96.0.50:80",
      { protocol: "TCP", target: "10.96.0.50:80", hop: "10.96.0.50:80", expected: [] },
    ],
    [
      "an endpoint on another network: double HBONE via its gateway address (outer svc-host:port, inner SANs)",
      "10.96.0.30:80",
      {
        protocol: "HBONE",
        target: "global.default.svc.cluster.local:80",
        hop: "10.0.2.100:15008",
        expected: [sa("default", "global")],
        service: "global.default.svc.cluster.local",
        workload: "global-remote",
        via: {
          hop: "10.0.2.100:15008",
          expected: [sa("istio-system", "istio-eastwestgateway")],
          authority: "global.default.svc.cluster.local:80",
        },
      },
    ],
    [
      "a gateway named by hostname: one of its instances, its identity and the gateway service's SANs",
      "gwname.default.svc.cluster.local:80",
      {
        protocol: "HBONE",
        target: "gwname.default.svc.cluster.local:80",
        hop: "10.0.2.101:15009",
        expected: [sa("default", "global")],
        service: "gwname.default.svc.cluster.local",
        workload: "by-name",
        via: {
          hop: "10.0.2.101:15009",
          expected: [sa("istio-system", "istio-eastwestgateway"), sa("istio-system", "istio-eastwestgateway-svc")],
          authority: "gwname.default.svc.cluster.local:80",
        },
      },
    ],
  ])("%s", (_name, dest, want) => {
    const i = dest.lastIndexOf(":");
    const host = dest.slice(0, i).replace(/^\[|\]$/g, "");
    expect(view(outbound.resolve({ host, port: Number(dest.slice(i + 1)) }))).toEqual(want);
  });
});

describe("refusals (OutboundError and its SOCKS5 reply code)", () => {
  it.each([
    ["an unknown hostname", "nowhere.example:80", 0x04, /unknown host/],
    ["a service port the service does not have", "10.96.0.10:81", 0x05, /has no port 81/],
    ["a service whose only endpoint is unhealthy", "10.96.0.21:80", 0x04, /no healthy endpoint/],
    [
      "a remote endpoint whose service has no subjectAltNames",
      "nosans.default.svc.cluster.local:80",
      0x02,
      /no subjectAltNames/,
    ],
    ["a remote endpoint with no gateway", "nogw.default.svc.cluster.local:80", 0x04, /no gateway/],
    ["this host's proxy port (loopback)", "127.0.0.1:15008", 0x02, /proxy port/],
    ["the unspecified address's proxy port", "0.0.0.0:15001", 0x02, /proxy port/],
    ["IPv4-mapped loopback's proxy port", "::ffff:127.0.0.1:15006", 0x02, /proxy port/],
    ["our own workload IP's proxy port", "10.0.1.1:15080", 0x02, /proxy port/],
    ["a service port that maps to a proxy port on this host", "10.96.0.22:80", 0x02, /proxy port/],
  ])("%s", (_name, dest, socks, why) => {
    const i = dest.lastIndexOf(":");
    let err: unknown;
    try {
      outbound.resolve({ host: dest.slice(0, i), port: Number(dest.slice(i + 1)) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutboundError);
    expect(socksReplyOf(err)).toBe(socks);
    expect((err as Error).message).toMatch(why);
  });

  it("a proxy port on another host's workload is routed (the check is where the bytes would land: here)", () => {
    expect(view(outbound.resolve({ host: "10.0.1.2", port: 15008 })).target).toBe("10.0.1.2:15008");
  });
});
