// A service (ztunnel's `Service`): its VIPs, ports, the identities its endpoints may have and how its endpoints
// are chosen (`LoadBalancing`, after the proto's istio.workload.LoadBalancing).

import type { GatewayAddress, NetworkAddress } from "./address.js";

export type RoutingPreference = "NETWORK" | "REGION" | "ZONE" | "SUBZONE" | "NODE" | "CLUSTER";
export interface LoadBalancing {
  routingPreferences: RoutingPreference[];
  mode: "STANDARD" | "STRICT" | "FAILOVER" | "UNSPECIFIED" | "PASSTHROUGH";
  healthPolicy: "ONLY_HEALTHY" | "ALLOW_ALL";
}

export interface Service {
  name: string;
  namespace: string;
  hostname: string;
  vips: NetworkAddress[];
  /** service port -> target port. */
  ports: Record<number, number>;
  subjectAltNames: string[];
  waypoint?: GatewayAddress;
  loadBalancer?: LoadBalancing;
  labels: Record<string, string>;
  /** Preferred among services sharing a hostname (ztunnel `canonical`). */
  canonical?: boolean;
  /** NAMESPACE: only visible to clients in the service's namespace. */
  visibility?: "PUBLIC" | "NAMESPACE";
}

/** A service with defaults for every field not given. */
export function newService(s: Partial<Service> & Pick<Service, "name" | "namespace" | "hostname">): Service {
  return { vips: [], ports: {}, subjectAltNames: [], labels: {}, canonical: false, visibility: "PUBLIC", ...s };
}
