// Who is at each end of a tunnel, for metrics and baggage: from config when the peer is known
// there, else from the baggage it sent, else "unknown" (ztunnel-compat §6-7).

import type { Workload } from "../config.js";
import { Identity } from "../identity/identity.js";
import { encodeBaggage, type BaggageMeta } from "../baggage.js";
import type { PeerLabels } from "../metrics.js";

const WORKLOAD_TYPES = new Set(["deployment", "cronjob", "pod", "job"]);

/** What this workload says about itself in baggage. */
export function workloadMeta(w: Workload): BaggageMeta {
  const type = w.workloadType.toLowerCase();
  return {
    clusterId: w.clusterId || undefined,
    namespace: w.namespace || undefined,
    workloadName: (w.workloadName || w.name) || undefined,
    workloadType: (WORKLOAD_TYPES.has(type) ? type : "deployment") as BaggageMeta["workloadType"],
    service: w.canonicalName || undefined,
    revision: w.canonicalRevision || undefined,
    region: w.locality?.region || undefined,
    zone: w.locality?.zone || undefined,
  };
}

/** Our baggage header value; a field the format cannot carry (a comma in a name) drops the header. */
export function workloadBaggage(w: Workload): [string, string][] {
  try {
    return [["baggage", encodeBaggage(workloadMeta(w))]];
  } catch {
    return [];
  }
}

/** The SPIFFE identity a workload's certificate carries (as istiod issues it). */
export function workloadIdentity(w: Workload): Identity {
  return new Identity(w.trustDomain || "cluster.local", w.namespace, w.serviceAccount || "default");
}

/** Labels of a workload known from config; `principal` is the SPIFFE id (TLS or xDS). */
export function workloadLabels(w: Workload, principal?: string): PeerLabels {
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
