// A workload (ztunnel's `Workload`): one pod or VM, its addresses, identity, locality and the services it serves.

import type { GatewayAddress } from "./address.js";

/** The trust domain of a workload or identity that names none (as istiod and ztunnel default it). */
export const DEFAULT_TRUST_DOMAIN = "cluster.local";
/** The service account of a workload that names none (Kubernetes' default). */
export const DEFAULT_SERVICE_ACCOUNT = "default";

export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

export interface Workload {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  workloadIps: string[];
  hostname: string;
  protocol: "HBONE" | "TCP";
  network: string;
  node: string;
  clusterId: string;
  canonicalName: string;
  canonicalRevision: string;
  workloadName: string;
  workloadType: string;
  locality?: Locality;
  waypoint?: GatewayAddress;
  networkGateway?: GatewayAddress;
  status: "Healthy" | "Unhealthy";
  capacity: number;
  /** `ns/hostname` -> service port -> target port. */
  services: Record<string, Record<number, number>>;
  /** Keys (`ns/name`) of WorkloadSelector policies bound to this workload (ztunnel `authorizationPolicies`). */
  authorizationPolicies?: string[];
}

/** A workload with ztunnel's defaults for every field not given (for xDS conversion and tests). */
export function newWorkload(w: Partial<Workload> & Pick<Workload, "uid" | "name" | "namespace">): Workload {
  return {
    serviceAccount: DEFAULT_SERVICE_ACCOUNT,
    trustDomain: DEFAULT_TRUST_DOMAIN,
    workloadIps: [],
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
    services: {},
    authorizationPolicies: [],
    ...w,
  };
}

/** The workload's trust domain; an empty one is the default. */
export function trustDomainOf(w: Pick<Workload, "trustDomain">): string {
  return w.trustDomain || DEFAULT_TRUST_DOMAIN;
}

/** The workload's service account; an empty one is the default. */
export function serviceAccountOf(w: Pick<Workload, "serviceAccount">): string {
  return w.serviceAccount || DEFAULT_SERVICE_ACCOUNT;
}
