// Service scope (istiod: matchServiceScope): whether a service is global, from meshConfig serviceScopeConfigs.

import type { LabelSelector, Service, ServiceScopeConfig } from "../model/index.js";

/** Without serviceScopeConfigs, a service is global when labelled istio.io/global=true. */
const DEFAULT_SCOPES: ServiceScopeConfig[] = [
  { servicesSelector: { matchLabels: { "istio.io/global": "true" }, matchExpressions: [] }, scope: "GLOBAL" },
];

/**
 * ServiceScope: whether `svc` is global, so clients see endpoints in other clusters (a service that is not
 * global never leaves its cluster). As istiod: global if any GLOBAL config selects it (LOCAL ones decide
 * nothing); a config selects when both its selectors match (absent or empty selectors match all); inside a
 * selector matchLabels and every matchExpression must hold. A config with an invalid selector (In/NotIn without
 * values, Exists/DoesNotExist with values) is skipped. No configs (or an empty list): the istio.io/global=true
 * label. `namespaceLabels` gives a namespace's labels; when it does not know the namespace, configs with a
 * namespaceSelector do not select (istiod skips a config whose namespace it cannot find).
 */
export function isGlobalService(
  svc: Service,
  scopes: ServiceScopeConfig[] | undefined,
  namespaceLabels?: (ns: string) => Record<string, string> | undefined,
): boolean {
  for (const c of scopes?.length ? scopes : DEFAULT_SCOPES) {
    if (c.scope !== "GLOBAL" || !selects(c.servicesSelector, svc.labels)) continue;
    if (isEmptySelector(c.namespaceSelector)) return true;
    const nsLabels = namespaceLabels?.(svc.namespace);
    if (nsLabels && selects(c.namespaceSelector, nsLabels)) return true;
  }
  return false;
}

function isEmptySelector(s: LabelSelector | undefined): boolean {
  return !s || (Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0);
}

/** Kubernetes label selector semantics; false for an invalid selector. */
function selects(s: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!s) return true;
  for (const [k, v] of Object.entries(s.matchLabels)) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  for (const e of s.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    switch (e.operator) {
      case "In":
        if (e.values.length === 0 || !has || !e.values.includes(labels[e.key]!)) return false;
        break;
      case "NotIn":
        if (e.values.length === 0 || (has && e.values.includes(labels[e.key]!))) return false;
        break;
      case "Exists":
        if (e.values.length > 0 || !has) return false;
        break;
      case "DoesNotExist":
        if (e.values.length > 0 || has) return false;
        break;
    }
  }
  return true;
}
