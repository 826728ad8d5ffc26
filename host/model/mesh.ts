// The whole mesh config: what a config source (the local file, xDS) produces and ProxyStateUpdater installs.

import type { Policy } from "./policy.js";
import type { Service } from "./service.js";
import type { Workload } from "./workload.js";

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values: string[];
}
export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: LabelSelectorRequirement[];
}
/** meshConfig `serviceScopeConfigs`: services matching both selectors get `scope` (an empty selector matches all). */
export interface ServiceScopeConfig {
  namespaceSelector?: LabelSelector;
  servicesSelector?: LabelSelector;
  scope: "LOCAL" | "GLOBAL";
}

export interface MeshConfig {
  workloads: Workload[];
  services: Service[];
  policies: Policy[];
  /** hbone-wasm extension of the local file (istiod's meshConfig field); always set by parseMeshConfig. */
  serviceScopeConfigs?: ServiceScopeConfig[];
}

export function emptyMeshConfig(): MeshConfig {
  return { workloads: [], services: [], policies: [], serviceScopeConfigs: [] };
}
