// Istio's xDS resources (istio.workload.Address, istio.security.Authorization) to the mesh model (host/model/), with ztunnel's rules: an empty trust domain is cluster.local, an empty service account is
// default, an unset capacity is 1, a workload's type is its enum name in lower case. What the model cannot hold is
// an error (LEGACY_ISTIO_MTLS, an address that is neither 4 nor 16 bytes, an enum value this build does not know),
// and the xDS client NACKs the whole response that carried it.
//
// The inverse (model -> xDS, for the control planes of tests and benchmarks) is test/xds/encode.ts.

import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, ipv6Text, newService, serviceKey } from "../model/index.js";
import { XdsConvertError } from "../errors.js";
import type {
  GatewayAddress,
  IpNet,
  LoadBalancing,
  NetworkAddress,
  Policy,
  PolicyMatch,
  RoutingPreference,
  Service,
  ServiceAccountMatch,
  StringMatch,
  Workload,
} from "../model/index.js";
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
  type LoadBalancing as XdsLoadBalancing,
  type NetworkAddress as XdsNetworkAddress,
  type Port as XdsPort,
  type Service as XdsService,
  type Workload as XdsWorkload,
} from "./gen/istio/workload/workload.js";
import {
  Action,
  Authorization as XdsAuthorization,
  Scope,
  type Address as XdsIpNet,
  type Match as XdsMatch,
  type StringMatch as XdsStringMatch,
} from "./gen/istio/security/authorization.js";

export const ADDRESS_TYPE_URL = "type.googleapis.com/istio.workload.Address";
export const AUTHORIZATION_TYPE_URL = "type.googleapis.com/istio.security.Authorization";

export { XdsConvertError } from "../errors.js";

function fail(field: string, reason: string): never {
  throw new XdsConvertError(`${field}: ${reason}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Addresses

/** An IP from its 4 or 16 network-order bytes, in the model's spelling (canonicalIp: RFC 5952, v4-mapped as v4). */
export function ipFromBytes(b: Uint8Array, field: string): string {
  return ipText(b) ?? badIp(b, field);
}

function badIp(b: Uint8Array, field: string): never {
  fail(field, `${b.length} bytes is neither an IPv4 (4) nor an IPv6 (16) address`);
}

/** ipFromBytes without the error (hot paths build the field path only on failure). */
function ipText(b: Uint8Array): string | undefined {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) return undefined;
  // ::ffff:a.b.c.d reads as the IPv4 address, as canonicalIp spells it.
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) if (b[i] !== 0) mapped = false;
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return ipv6Text(b);
}

function networkAddress(a: XdsNetworkAddress, field: string): NetworkAddress {
  return { network: a.network, address: ipFromBytes(a.address, `${field}.address`) };
}

function gateway(g: XdsGatewayAddress, field: string): GatewayAddress {
  const port = g.hboneMtlsPort === 0 ? 15008 : checkPort(g.hboneMtlsPort, `${field}.hboneMtlsPort`);
  const d = g.destination;
  if (!d) fail(field, "no destination (hostname or address)");
  if (d.$case === "address") return { destination: networkAddress(d.address, `${field}.address`), hboneMtlsPort: port };
  if (!d.hostname.namespace || !d.hostname.hostname) fail(`${field}.hostname`, "namespace and hostname are required");
  return { destination: { namespace: d.hostname.namespace, hostname: d.hostname.hostname }, hboneMtlsPort: port };
}

function checkPort(p: number, field: string): number {
  if (!(p >= 1 && p <= 65535)) fail(field, `${p} is not a port number`);
  return p;
}

/**
 * An empty port map whose numeric keys live in a dictionary. A plain `{}` given keys 80 and 443 gets a fast holey
 * elements store sized past 443 (about 5.5 KB for two entries): 50k workloads would pay 270 MB and most of their
 * conversion time for it. One out-of-range index, deleted at once, switches the object to dictionary elements (about
 * 200 B for two entries).
 */
function portMap(): Record<number, number> {
  const out: Record<number, number> = {};
  out[0x7ffffffe] = 0;
  delete out[0x7ffffffe];
  return out;
}

function ports(list: XdsPort[], field: () => string): Record<number, number> {
  const out = portMap();
  for (let i = 0; i < list.length; i++) {
    const { servicePort: sp, targetPort: tp } = list[i]!;
    // A target port of 0 is unset: the service port (or the workload's own mapping) applies.
    if (!(sp >= 1 && sp <= 65535)) fail(`${field()}[${i}].servicePort`, `${sp} is not a port number`);
    if (!(tp >= 0 && tp <= 65535)) fail(`${field()}[${i}].targetPort`, `${tp} is not a port number`);
    out[sp] = tp;
  }
  return out;
}

function enumName<T extends Record<string, string | number>>(e: T, v: number, field: string): keyof T & string {
  const name = (e as Record<number, string | undefined>)[v];
  if (typeof name !== "string") fail(field, `unknown enum value ${v}`);
  return name as keyof T & string;
}

function required(v: string, field: string): string {
  if (v === "") fail(field, "must not be empty");
  return v;
}

const NS_SLASH_NAME = /^[^/\s]+\/[^/\s]+$/;

// ---------------------------------------------------------------------------------------------------------------
// istio.workload -> model

const WORKLOAD_TYPES: Record<WorkloadType, string> = {
  [WorkloadType.DEPLOYMENT]: "deployment",
  [WorkloadType.CRONJOB]: "cronjob",
  [WorkloadType.POD]: "pod",
  [WorkloadType.JOB]: "job",
};

export function workloadFromXds(x: XdsWorkload, field = "workload"): Workload {
  let protocol: Workload["protocol"];
  if (x.tunnelProtocol === TunnelProtocol.HBONE) protocol = "HBONE";
  else if (x.tunnelProtocol === TunnelProtocol.NONE) protocol = "TCP";
  else if (x.tunnelProtocol === TunnelProtocol.LEGACY_ISTIO_MTLS)
    fail(`${field}.tunnelProtocol`, "LEGACY_ISTIO_MTLS is not supported");
  else fail(`${field}.tunnelProtocol`, `unknown enum value ${x.tunnelProtocol as number}`);
  const type = WORKLOAD_TYPES[x.workloadType];
  if (type === undefined) fail(`${field}.workloadType`, `unknown enum value ${x.workloadType as number}`);
  if (x.status !== WorkloadStatus.HEALTHY && x.status !== WorkloadStatus.UNHEALTHY) {
    fail(`${field}.status`, `unknown enum value ${x.status as number}`);
  }
  if (x.uid === "") fail(`${field}.uid`, "must not be empty");
  if (x.name === "") fail(`${field}.name`, "must not be empty");
  if (x.namespace === "") fail(`${field}.namespace`, "must not be empty");
  const services: Workload["services"] = {};
  for (const [key, list] of x.services) {
    if (!NS_SLASH_NAME.test(key)) fail(`${field}.services[${JSON.stringify(key)}]`, "keys must be namespace/hostname");
    services[key] = ports(list.ports, () => `${field}.services[${JSON.stringify(key)}].ports`);
  }
  for (const p of x.authorizationPolicies) {
    if (!NS_SLASH_NAME.test(p)) fail(`${field}.authorizationPolicies`, `${JSON.stringify(p)} is not namespace/name`);
  }
  const workloadIps = new Array<string>(x.addresses.length);
  for (let i = 0; i < x.addresses.length; i++) {
    const b = x.addresses[i]!;
    workloadIps[i] = ipText(b) ?? badIp(b, `${field}.addresses[${i}]`);
  }
  const w: Workload = {
    uid: x.uid,
    name: x.name,
    namespace: x.namespace,
    serviceAccount: x.serviceAccount || DEFAULT_SERVICE_ACCOUNT,
    trustDomain: x.trustDomain || DEFAULT_TRUST_DOMAIN,
    workloadIps,
    hostname: x.hostname,
    protocol,
    network: x.network,
    node: x.node,
    clusterId: x.clusterId,
    canonicalName: x.canonicalName,
    canonicalRevision: x.canonicalRevision,
    workloadName: x.workloadName,
    workloadType: type,
    status: x.status === WorkloadStatus.HEALTHY ? "Healthy" : "Unhealthy",
    capacity: x.capacity ?? 1,
    services,
    authorizationPolicies: x.authorizationPolicies,
  };
  if (x.locality) w.locality = { region: x.locality.region, zone: x.locality.zone, subzone: x.locality.subzone };
  if (x.waypoint) w.waypoint = gateway(x.waypoint, `${field}.waypoint`);
  if (x.networkGateway) w.networkGateway = gateway(x.networkGateway, `${field}.networkGateway`);
  return w;
}

const SCOPES: Record<Exclude<LoadBalancing_Scope, LoadBalancing_Scope.UNSPECIFIED_SCOPE>, RoutingPreference> = {
  [LoadBalancing_Scope.REGION]: "REGION",
  [LoadBalancing_Scope.ZONE]: "ZONE",
  [LoadBalancing_Scope.SUBZONE]: "SUBZONE",
  [LoadBalancing_Scope.NODE]: "NODE",
  [LoadBalancing_Scope.CLUSTER]: "CLUSTER",
  [LoadBalancing_Scope.NETWORK]: "NETWORK",
};

function loadBalancer(lb: XdsLoadBalancing, field: string): LoadBalancing {
  const routingPreferences: RoutingPreference[] = [];
  for (const s of lb.routingPreference) {
    if (s === LoadBalancing_Scope.UNSPECIFIED_SCOPE) continue;
    const name = SCOPES[s];
    if (name === undefined) fail(`${field}.routingPreference`, `unknown enum value ${s as number}`);
    routingPreferences.push(name);
  }
  const mode = enumName(LoadBalancing_Mode, lb.mode, `${field}.mode`);
  const health = enumName(LoadBalancing_HealthPolicy, lb.healthPolicy, `${field}.healthPolicy`);
  return { routingPreferences, mode: mode === "UNSPECIFIED_MODE" ? "UNSPECIFIED" : mode, healthPolicy: health };
}

export function serviceFromXds(x: XdsService, field = "service"): Service {
  const hostname = required(x.hostname, `${field}.hostname`);
  if (/[/\s]/.test(hostname)) fail(`${field}.hostname`, `${JSON.stringify(hostname)} is not a hostname`);
  const visibility = enumName(ServiceVisibility, x.visibility, `${field}.visibility`);
  const s = newService({
    name: required(x.name, `${field}.name`),
    namespace: required(x.namespace, `${field}.namespace`),
    hostname,
    vips: x.addresses.map((a, i) => networkAddress(a, `${field}.addresses[${i}]`)),
    ports: ports(x.ports, () => `${field}.ports`),
    // Kept as given: a SAN that is not a SPIFFE id simply never matches a peer.
    subjectAltNames: x.subjectAltNames,
    canonical: x.canonical,
    visibility,
  });
  if (x.waypoint) s.waypoint = gateway(x.waypoint, `${field}.waypoint`);
  if (x.loadBalancing) s.loadBalancer = loadBalancer(x.loadBalancing, `${field}.loadBalancing`);
  return s;
}

export type AddressResource = { kind: "workload"; workload: Workload } | { kind: "service"; service: Service };

/** Decodes and converts one istio.workload.Address (the bytes of an Any). Throws XdsConvertError. */
export function decodeAddress(bytes: Uint8Array): AddressResource {
  let a: XdsAddress;
  try {
    a = XdsAddress.decode(bytes);
  } catch (e) {
    fail("Address", `undecodable (${(e as Error).message})`);
  }
  const t = a.type;
  if (!t) fail("Address", "neither a workload nor a service");
  return t.$case === "workload"
    ? { kind: "workload", workload: workloadFromXds(t.workload) }
    : { kind: "service", service: serviceFromXds(t.service) };
}

// ---------------------------------------------------------------------------------------------------------------
// istio.security -> model

function stringMatch(m: XdsStringMatch, field: string): StringMatch {
  const t = m.matchType;
  if (!t) fail(field, "no match type (exact, prefix, suffix or presence)");
  switch (t.$case) {
    case "exact":
      return { kind: "exact", value: t.exact };
    case "prefix":
      return { kind: "prefix", value: t.prefix };
    case "suffix":
      return { kind: "suffix", value: t.suffix };
    case "presence":
      return { kind: "presence", value: "" };
  }
}

function ipNet(a: XdsIpNet, field: string): IpNet {
  const address = ipFromBytes(a.address, `${field}.address`);
  const max = address.includes(":") ? 128 : 32;
  // A v4-mapped IPv6 network reads as the IPv4 one.
  const length = a.address.length === 16 && max === 32 ? a.length - 96 : a.length;
  if (!(length >= 0 && length <= max)) fail(`${field}.length`, `${a.length} is not a prefix length for ${address}`);
  return { address, prefixLength: length };
}

function match(m: XdsMatch, field: string): PolicyMatch {
  const strs = (l: XdsStringMatch[], f: string) => l.map((x, i) => stringMatch(x, `${field}.${f}[${i}]`));
  const nets = (l: XdsIpNet[], f: string) => l.map((x, i) => ipNet(x, `${field}.${f}[${i}]`));
  const sas = (l: { namespace: string; serviceAccount: string }[], f: string): ServiceAccountMatch[] =>
    l.map((x, i) => ({
      namespace: required(x.namespace, `${field}.${f}[${i}].namespace`),
      serviceAccount: required(x.serviceAccount, `${field}.${f}[${i}].serviceAccount`),
    }));
  const prts = (l: number[], f: string) => l.map((p, i) => checkPort(p, `${field}.${f}[${i}]`));
  return {
    namespaces: strs(m.namespaces, "namespaces"),
    notNamespaces: strs(m.notNamespaces, "notNamespaces"),
    serviceAccounts: sas(m.serviceAccounts, "serviceAccounts"),
    notServiceAccounts: sas(m.notServiceAccounts, "notServiceAccounts"),
    principals: strs(m.principals, "principals"),
    notPrincipals: strs(m.notPrincipals, "notPrincipals"),
    sourceIps: nets(m.sourceIps, "sourceIps"),
    notSourceIps: nets(m.notSourceIps, "notSourceIps"),
    destinationIps: nets(m.destinationIps, "destinationIps"),
    notDestinationIps: nets(m.notDestinationIps, "notDestinationIps"),
    destinationPorts: prts(m.destinationPorts, "destinationPorts"),
    notDestinationPorts: prts(m.notDestinationPorts, "notDestinationPorts"),
  };
}

const POLICY_SCOPES: Record<Scope, Policy["scope"]> = {
  [Scope.GLOBAL]: "Global",
  [Scope.NAMESPACE]: "Namespace",
  [Scope.WORKLOAD_SELECTOR]: "WorkloadSelector",
};

export function policyFromXds(x: XdsAuthorization, field = "authorization"): Policy {
  const scope = POLICY_SCOPES[x.scope];
  if (scope === undefined) fail(`${field}.scope`, `unknown enum value ${x.scope as number}`);
  // istiod sends only ALLOW and DENY (no AUDIT for L4).
  if (x.action !== Action.ALLOW && x.action !== Action.DENY)
    fail(`${field}.action`, `unknown enum value ${x.action as number}`);
  return {
    name: required(x.name, `${field}.name`),
    namespace: required(x.namespace, `${field}.namespace`),
    scope,
    action: x.action === Action.ALLOW ? "Allow" : "Deny",
    dryRun: x.dryRun,
    // groups -> rules (OR), rules -> clauses (AND), matches (OR).
    rules: x.groups.map((g, i) =>
      g.rules.map((r, j) => r.matches.map((m, k) => match(m, `${field}.groups[${i}].rules[${j}].matches[${k}]`))),
    ),
  };
}

/** Decodes and converts one istio.security.Authorization (the bytes of an Any). Throws XdsConvertError. */
export function decodeAuthorization(bytes: Uint8Array): Policy {
  let a: XdsAuthorization;
  try {
    a = XdsAuthorization.decode(bytes);
  } catch (e) {
    fail("Authorization", `undecodable (${(e as Error).message})`);
  }
  return policyFromXds(a);
}

/** xDS resource names, as istiod gives them: a workload's uid, a service's namespace/hostname, a policy's ns/name. */
export function addressResourceName(r: AddressResource): string {
  return r.kind === "workload" ? r.workload.uid : serviceKey(r.service);
}
