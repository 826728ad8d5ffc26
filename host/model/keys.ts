// The `namespace/name` keys the model is indexed by: a service by namespace/hostname (workloads' `services`
// map names it so), a policy by namespace/name (workloads' `authorizationPolicies`), a workload by namespace/name.

/** `namespace/name`. */
export function nsKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** `ns/hostname` key of a service (as workloads' `services` map names it). */
export function serviceKey(s: { namespace: string; hostname: string }): string {
  return nsKey(s.namespace, s.hostname);
}

/** `ns/name` key of a policy (as workloads' `authorizationPolicies` name it). */
export function policyKey(p: { namespace: string; name: string }): string {
  return nsKey(p.namespace, p.name);
}
