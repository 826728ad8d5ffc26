// The mesh model to Istio's xDS resources, the inverse of host/xds/convert.ts, for the control planes of tests and
// benchmarks: convert(toXds(x)) deep-equals x for every x parseMeshConfig can produce.

import { canonicalIp } from "../../host/model/index.js";
import type {
  GatewayAddress,
  IpNet,
  NetworkAddress,
  Policy,
  PolicyMatch,
  Service,
  StringMatch,
  Workload,
} from "../../host/model/index.js";
import { XdsConvertError, type AddressResource } from "../../host/xds/convert.js";
import {
  Address as XdsAddress,
  LoadBalancing_HealthPolicy,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  ServiceVisibility,
  TunnelProtocol,
  WorkloadStatus,
  WorkloadType,
  type GatewayAddress as XdsGatewayAddress,
  type NetworkAddress as XdsNetworkAddress,
  type Port as XdsPort,
  type PortList as XdsPortList,
  type Service as XdsService,
  type Workload as XdsWorkload,
} from "../../host/xds/gen/istio/workload/workload.js";
import {
  Action,
  Authorization as XdsAuthorization,
  Scope,
  type Address as XdsIpNet,
  type Match as XdsMatch,
  type StringMatch as XdsStringMatch,
} from "../../host/xds/gen/istio/security/authorization.js";

/** The network-order bytes of an IPv4 or IPv6 address (the model's spelling or any other). */
export function ipToBytes(ip: string): Uint8Array {
  const c = canonicalIp(ip);
  if (c === undefined) throw new XdsConvertError(`${JSON.stringify(ip)} is not an IP address`);
  if (!c.includes(":")) return Uint8Array.from(c.split(".").map(Number));
  const out = new Uint8Array(16);
  const [head, tail] = c.includes("::") ? c.split("::") : [c, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":").map((x) => parseInt(x, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((v, i) => {
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

const TYPE_BY_NAME: Record<string, WorkloadType> = {
  deployment: WorkloadType.DEPLOYMENT,
  cronjob: WorkloadType.CRONJOB,
  pod: WorkloadType.POD,
  job: WorkloadType.JOB,
};

function networkAddressToXds(a: NetworkAddress): XdsNetworkAddress {
  return { network: a.network, address: ipToBytes(a.address) };
}

function gatewayToXds(g: GatewayAddress): XdsGatewayAddress {
  const d = g.destination;
  return {
    destination:
      "address" in d
        ? { $case: "address", address: networkAddressToXds(d) }
        : { $case: "hostname", hostname: { namespace: d.namespace, hostname: d.hostname } },
    hboneMtlsPort: g.hboneMtlsPort,
  };
}

function portsToXds(p: Record<number, number>): XdsPort[] {
  return Object.entries(p).map(([k, v]) => ({ servicePort: Number(k), targetPort: v }));
}

export function workloadToXds(w: Workload): XdsWorkload {
  const services = new Map<string, XdsPortList>();
  for (const [k, v] of Object.entries(w.services)) services.set(k, { ports: portsToXds(v) });
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.workloadIps.map(ipToBytes),
    hostname: w.hostname,
    network: w.network,
    tunnelProtocol: w.protocol === "HBONE" ? TunnelProtocol.HBONE : TunnelProtocol.NONE,
    trustDomain: w.trustDomain,
    serviceAccount: w.serviceAccount,
    waypoint: w.waypoint && gatewayToXds(w.waypoint),
    networkGateway: w.networkGateway && gatewayToXds(w.networkGateway),
    node: w.node,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType: TYPE_BY_NAME[w.workloadType.toLowerCase()] ?? WorkloadType.DEPLOYMENT,
    workloadName: w.workloadName,
    services,
    authorizationPolicies: w.authorizationPolicies ?? [],
    status: w.status === "Healthy" ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY,
    clusterId: w.clusterId,
    locality: w.locality && { ...w.locality },
    capacity: w.capacity,
  };
}

export function serviceToXds(s: Service): XdsService {
  const lb = s.loadBalancer;
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.vips.map(networkAddressToXds),
    ports: portsToXds(s.ports),
    subjectAltNames: s.subjectAltNames,
    waypoint: s.waypoint && gatewayToXds(s.waypoint),
    loadBalancing: lb && {
      routingPreference: lb.routingPreferences.map((r) => LoadBalancing_Scope[r]),
      mode:
        lb.mode === "UNSPECIFIED" || lb.mode === "STANDARD"
          ? LoadBalancing_Mode.UNSPECIFIED_MODE
          : LoadBalancing_Mode[lb.mode],
      healthPolicy: LoadBalancing_HealthPolicy[lb.healthPolicy],
    },
    canonical: s.canonical ?? false,
    visibility: s.visibility === "NAMESPACE" ? ServiceVisibility.NAMESPACE : ServiceVisibility.PUBLIC,
  };
}

function stringMatchToXds(m: StringMatch): XdsStringMatch {
  switch (m.kind) {
    case "exact":
      return { matchType: { $case: "exact", exact: m.value } };
    case "prefix":
      return { matchType: { $case: "prefix", prefix: m.value } };
    case "suffix":
      return { matchType: { $case: "suffix", suffix: m.value } };
    case "presence":
      return { matchType: { $case: "presence", presence: {} } };
  }
}

function matchToXds(m: PolicyMatch): XdsMatch {
  const net = (n: IpNet): XdsIpNet => ({ address: ipToBytes(n.address), length: n.prefixLength });
  return {
    namespaces: m.namespaces.map(stringMatchToXds),
    notNamespaces: m.notNamespaces.map(stringMatchToXds),
    serviceAccounts: m.serviceAccounts.map((s) => ({ ...s })),
    notServiceAccounts: m.notServiceAccounts.map((s) => ({ ...s })),
    principals: m.principals.map(stringMatchToXds),
    notPrincipals: m.notPrincipals.map(stringMatchToXds),
    sourceIps: m.sourceIps.map(net),
    notSourceIps: m.notSourceIps.map(net),
    destinationIps: m.destinationIps.map(net),
    notDestinationIps: m.notDestinationIps.map(net),
    destinationPorts: m.destinationPorts,
    notDestinationPorts: m.notDestinationPorts,
  };
}

export function policyToXds(p: Policy): XdsAuthorization {
  return {
    name: p.name,
    namespace: p.namespace,
    scope: p.scope === "Global" ? Scope.GLOBAL : p.scope === "Namespace" ? Scope.NAMESPACE : Scope.WORKLOAD_SELECTOR,
    action: p.action === "Allow" ? Action.ALLOW : Action.DENY,
    groups: p.rules.map((rule) => ({ rules: rule.map((clause) => ({ matches: clause.map(matchToXds) })) })),
    dryRun: p.dryRun,
  };
}

/** The Any payload of a workload or service resource. */
export function encodeAddress(r: AddressResource): Uint8Array {
  const a: XdsAddress =
    r.kind === "workload"
      ? { type: { $case: "workload", workload: workloadToXds(r.workload) } }
      : { type: { $case: "service", service: serviceToXds(r.service) } };
  return XdsAddress.encode(a).finish();
}

export function encodePolicy(p: Policy): Uint8Array {
  return XdsAuthorization.encode(policyToXds(p)).finish();
}
