// Who is at each end of a tunnel, for metrics and baggage: from config when the peer is known
// there, else from the baggage it sent, else "unknown" (as ztunnel labels them).

import {
  serviceAccountOf,
  serviceKey,
  trustDomainOf,
  type MeshConfig,
  type Service,
  type Workload,
} from "../model/index.js";
import type { ProxyState } from "../state/index.js";
import { Identity } from "../identity/identity.js";
import type { HeaderList } from "../h2/hpack.js";
import { decodeBaggage, encodeBaggage, type BaggageMeta } from "../baggage.js";
import type { PeerLabels, ServiceLabels } from "../metrics.js";
import { header } from "../h2/headers.js";

const WORKLOAD_TYPES = new Set(["deployment", "cronjob", "pod", "job"]);

/** What this workload says about itself in baggage. */
export function workloadMeta(w: Workload): BaggageMeta {
  const type = w.workloadType.toLowerCase();
  return {
    clusterId: w.clusterId || undefined,
    namespace: w.namespace || undefined,
    workloadName: w.workloadName || w.name || undefined,
    workloadType: (WORKLOAD_TYPES.has(type) ? type : "deployment") as BaggageMeta["workloadType"],
    service: w.canonicalName || undefined,
    revision: w.canonicalRevision || undefined,
    region: w.locality?.region || undefined,
    zone: w.locality?.zone || undefined,
  };
}

// Per-tunnel work done once per workload record or per peer (records are replaced, never changed, on a config
// update, so a record's entries go with it). Objects handed out here are shared: never changed by callers.
const baggageOf = new WeakMap<Workload, string | null>();
const labelsOf = new WeakMap<Workload, PeerLabels>();

/** Our baggage header value; a field the format cannot carry (a comma in a name) drops the header. A fresh list
 *  each call (callers add their headers to it); the value is encoded once per workload record. */
export function workloadBaggage(w: Workload): [string, string][] {
  let value = baggageOf.get(w);
  if (value === undefined) {
    try {
      value = encodeBaggage(workloadMeta(w));
    } catch {
      value = null;
    }
    baggageOf.set(w, value);
  }
  return value === null ? [] : [["baggage", value]];
}

const identityOf = new WeakMap<Workload, Identity>();
const sansOf = new WeakMap<Service, readonly Identity[]>();

/** A service's subjectAltNames that are SPIFFE identities (others are skipped), parsed once per service record. */
export function sanIdentities(svc: Service | undefined): readonly Identity[] {
  if (!svc || svc.subjectAltNames.length === 0) return [];
  let ids = sansOf.get(svc);
  if (ids === undefined) {
    ids = svc.subjectAltNames.map((san) => Identity.tryParse(san)).filter((id) => id !== undefined);
    sansOf.set(svc, ids);
  }
  return ids;
}

/** The SPIFFE identity a workload's certificate carries (as istiod issues it); one (immutable) object per record. */
export function workloadIdentity(w: Workload): Identity {
  let id = identityOf.get(w);
  if (id === undefined) identityOf.set(w, (id = new Identity(trustDomainOf(w), w.namespace, serviceAccountOf(w))));
  return id;
}

/** Labels of a workload known from config; `principal` is the SPIFFE id (TLS or xDS). One object per record. */
export function workloadLabels(w: Workload, principal?: string): PeerLabels {
  const known = labelsOf.get(w);
  if (known !== undefined && known.principal === principal) return known;
  const labels = newWorkloadLabels(w, principal);
  labelsOf.set(w, labels);
  return labels;
}

function newWorkloadLabels(w: Workload, principal: string | undefined): PeerLabels {
  return {
    workload: w.workloadName || w.name,
    canonicalService: w.canonicalName || w.workloadName || w.name,
    canonicalRevision: w.canonicalRevision || "latest",
    namespace: w.namespace,
    principal,
    app: w.canonicalName || w.workloadName || w.name,
    version: w.canonicalRevision || "latest",
    cluster: w.clusterId,
    region: w.locality?.region,
    zone: w.locality?.zone,
  };
}

/** Labels of a peer known only from its baggage (ztunnel: a baggage-derived app is the workload name). */
export function baggageLabels(m: BaggageMeta, principal?: string): PeerLabels {
  return {
    workload: m.workloadName,
    canonicalService: m.service ?? m.workloadName,
    canonicalRevision: m.revision,
    namespace: m.namespace,
    principal,
    app: m.workloadName,
    version: m.revision,
    cluster: m.clusterId,
    region: m.region,
    zone: m.zone,
  };
}

const NO_SERVICE: ServiceLabels = Object.freeze({});
const servicesOf = new WeakMap<Service, ServiceLabels>();

/** A service's labels (one object per service record), or the shared empty ones. */
export function serviceLabels(svc: Service | undefined): ServiceLabels {
  if (svc === undefined) return NO_SERVICE;
  let v = servicesOf.get(svc);
  if (v === undefined) servicesOf.set(svc, (v = { hostname: svc.hostname, namespace: svc.namespace, name: svc.name }));
  return v;
}

/** Labels from baggage (a peer config does not know), shared per peer: the same header from the same principal
 *  gives the same object. Bounded: a peer sending ever-new baggage only refills the table. */
export function peerBaggageLabels(baggage: string | readonly string[], principal?: string): PeerLabels {
  const key = `${principal ?? ""}\n${typeof baggage === "string" ? baggage : baggage.join(",")}`;
  return remember(fromBaggage, key, () => baggageLabels(decodeBaggage(baggage), principal));
}

/** Labels that carry only a principal (a refused tunnel's, a peer with no baggage), one object per principal. */
export function principalLabels(principal: string): PeerLabels {
  return remember(fromPrincipal, principal, () => ({ principal }));
}

// At most 1024 entries of keys up to 512 characters (~1 MB at worst; ztunnel's baggage is ~200): a longer key (a
// peer's oversized header) is answered afresh each time, never kept.
const MAX_REMEMBERED = 1024;
const MAX_KEY = 512;
const fromBaggage = new Map<string, PeerLabels>();
const fromPrincipal = new Map<string, PeerLabels>();

function remember(table: Map<string, PeerLabels>, key: string, make: () => PeerLabels): PeerLabels {
  if (key.length > MAX_KEY) return make();
  let v = table.get(key);
  if (v === undefined) {
    if (table.size >= MAX_REMEMBERED) table.clear();
    table.set(key, (v = make()));
  }
  return v;
}

/** Network-gateway addresses ("network/ip") named by a config's workloads, computed once per config snapshot. */
const gatewayAddresses = new WeakMap<MeshConfig, Set<string>>();

function gatewaysOf(state: ProxyState): Set<string> {
  const cfg = state.config;
  let set = gatewayAddresses.get(cfg);
  if (set) return set;
  set = new Set();
  const services = new Set<string>();
  for (const w of cfg.workloads) {
    const d = w.networkGateway?.destination;
    if (!d) continue;
    if ("address" in d) set.add(`${d.network}/${d.address}`);
    else services.add(serviceKey(d));
  }
  // A gateway named by its service: every workload backing that service.
  for (const w of cfg.workloads) {
    if (!Object.keys(w.services).some((k) => services.has(k))) continue;
    for (const ip of w.workloadIps) set.add(`${w.network}/${ip}`);
  }
  gatewayAddresses.set(cfg, set);
  return set;
}

/** Whether `ip` on `network` is a network (east-west) gateway the config knows: some workload names it (or its
 *  service) as its networkGateway. */
export function isNetworkGateway(state: ProxyState, ip: string, network: string): boolean {
  const w = state.workloadByIp(ip, network);
  if (!w) return false;
  const gws = gatewaysOf(state);
  return w.workloadIps.some((a) => gws.has(`${w.network}/${a}`));
}

/** Who the source of an inbound tunnel is: `labels` for a tunnel that passes its checks, `trusted` (what the peer
 *  cannot choose) for one that is refused. */
export interface SourceLabels {
  labels: PeerLabels;
  trusted: PeerLabels;
}

/**
 * The source of an inbound tunnel from `from` (TCP peer address) with TLS identity `peer`: the workload config
 * knows at that address (if its identity is the TLS peer's), else what its request baggage says, else only its principal (always from TLS).
 * Through an east-west gateway (double HBONE: `x-forwarded-network` names another network) the address is the
 * gateway's, so only baggage can say who the source is — but only when `from` really is a network gateway of the
 * config; from anyone else the header is ignored, so a peer cannot trade its config labels for ones it chose.
 */
export function inboundSourceLabels(
  state: ProxyState,
  self: Workload,
  from: string,
  peer: Identity,
  headers: HeaderList,
): SourceLabels {
  const principal = String(peer);
  const forwarded = header(headers, "x-forwarded-network");
  const viaGateway =
    forwarded !== undefined && forwarded !== self.network && isNetworkGateway(state, from, self.network);
  // An address alone proves nothing (NAT, a gateway, a spoofing peer): config labels only when that workload's
  // identity is the TLS peer's.
  const w = viaGateway ? undefined : state.workloadByIp(from);
  if (w && workloadIdentity(w).equals(peer)) {
    const labels = workloadLabels(w, principal);
    return { labels, trusted: labels };
  }
  const baggage = headers.filter(([n]) => n === "baggage").map(([, v]) => v);
  const trusted = principalLabels(principal);
  return { labels: baggage.length > 0 ? peerBaggageLabels(baggage, principal) : trusted, trusted };
}
