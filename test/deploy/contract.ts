// What deploy/'s manifests must agree on with host/runtime-config.ts, as a function returning every
// disagreement (so the test can also show it catches a broken manifest).

import { dirname } from "node:path";
import { ENV, PORTS, PATHS, CAPABILITIES, type K8sSource } from "../../host/runtime-config.js";

/** A Kubernetes object as parsed from YAML. */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any;
};

interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

const PORT_VALUES = new Set<number>(Object.values(PORTS));

function find(docs: K8sObject[], kind: string, name: string): K8sObject | undefined {
  return docs.find((d) => d.kind === kind && d.metadata.name === name);
}

/** The variable's spec in ENV by name or alias. */
function declared(name: string) {
  return ENV.find((e) => e.name === name || e.aliases?.includes(name));
}

function checkEnv(where: string, env: EnvEntry[], role: "node" | "gateway"): string[] {
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const e of env) {
    const spec = declared(e.name);
    if (!spec) {
      errors.push(`${where}: env ${e.name} is not read by the proxy (not in host/runtime-config.ts ENV)`);
      continue;
    }
    if (seen.has(spec.name)) errors.push(`${where}: env ${spec.name} set twice (by name or alias)`);
    seen.add(spec.name);
    const want: K8sSource | undefined = spec[role];
    if (!want) {
      errors.push(`${where}: env ${e.name} is not one the ${role} manifest sets (runtime-config.ts ENV.${role})`);
    } else if ("fieldRef" in want && e.valueFrom?.fieldRef?.fieldPath !== want.fieldRef) {
      errors.push(`${where}: env ${e.name} must come from fieldRef ${want.fieldRef}`);
    } else if ("value" in want && e.value !== want.value) {
      errors.push(`${where}: env ${e.name} must be ${JSON.stringify(want.value)}, is ${JSON.stringify(e.value)}`);
    } else if ("operator" in want && (e.value === undefined || e.value === "")) {
      errors.push(`${where}: env ${e.name} needs a value (${want.operator})`);
    }
  }
  for (const spec of ENV) {
    if (spec[role] && !seen.has(spec.name)) errors.push(`${where}: env ${spec.name} is required and missing`);
  }
  return errors;
}

function checkPod(where: string, pod: any, role: "node" | "gateway"): string[] {
  const errors: string[] = [];
  const containers = pod.spec.containers as any[];
  if (containers.length !== 1) errors.push(`${where}: one container expected`);
  const c = containers[0];
  errors.push(...checkEnv(where, c.env ?? [], role));
  const grace = (c.env as EnvEntry[]).find((e) => e.name === "TERMINATION_GRACE_PERIOD_SECONDS")?.value;
  if (grace !== String(pod.spec.terminationGracePeriodSeconds)) {
    errors.push(`${where}: TERMINATION_GRACE_PERIOD_SECONDS (${grace}) differs from terminationGracePeriodSeconds`);
  }
  for (const p of c.ports ?? []) {
    if (!PORT_VALUES.has(p.containerPort))
      errors.push(`${where}: port ${p.containerPort} is not one the proxy listens on`);
  }
  if (role === "gateway" && !(c.ports ?? []).some((p: { containerPort: number }) => p.containerPort === PORTS.hbone)) {
    errors.push(`${where}: the gateway must expose HBONE ${PORTS.hbone}`);
  }
  const probe = c.readinessProbe?.httpGet;
  if (probe?.port !== PORTS.readiness || probe?.path !== "/healthz/ready") {
    errors.push(`${where}: readiness probe must be GET :${PORTS.readiness}/healthz/ready`);
  }
  const args = c.args as string[];
  if (!args?.includes("--status-address"))
    errors.push(`${where}: probes need --status-address (readiness binds 127.0.0.1)`);

  // Mounts: each path the proxy reads lives under one mount, from the right volume.
  const mounts = new Map<string, string>(
    (c.volumeMounts ?? []).map((m: { mountPath: string; name: string }) => [m.mountPath, m.name]),
  );
  const volumes = new Map<string, any>((pod.spec.volumes ?? []).map((v: { name: string }) => [v.name, v]));
  const known = new Set<string>([dirname(PATHS.token), dirname(PATHS.rootCert), dirname(PATHS.zdsSocket), PATHS.tmp]);
  for (const m of mounts.keys()) if (!known.has(m)) errors.push(`${where}: mount ${m} is no path the proxy uses`);
  const vol = (path: string) => volumes.get(mounts.get(path) ?? "");
  const token = vol(dirname(PATHS.token))?.projected?.sources?.[0]?.serviceAccountToken;
  if (token?.path !== PATHS.token.split("/").pop() || token?.audience !== "istio-ca") {
    errors.push(`${where}: ${PATHS.token} must be a projected token with audience istio-ca`);
  }
  const root = vol(dirname(PATHS.rootCert))?.configMap;
  if (root?.name !== "istio-ca-root-cert")
    errors.push(`${where}: ${PATHS.rootCert} must come from ConfigMap istio-ca-root-cert`);
  if (!vol(PATHS.tmp)?.emptyDir) errors.push(`${where}: ${PATHS.tmp} must be an emptyDir (read-only root)`);
  const sock = vol(dirname(PATHS.zdsSocket))?.hostPath?.path;
  if (role === "node" && sock !== dirname(PATHS.zdsSocket))
    errors.push(`${where}: ${dirname(PATHS.zdsSocket)} must be the hostPath`);
  if (role === "gateway" && sock !== undefined)
    errors.push(`${where}: a gateway has no business with istio-cni's socket`);

  // Capabilities: exactly the proxy's in-pod set for the node proxy, none for the gateway.
  const sc = c.securityContext ?? {};
  const add: string[] = sc.capabilities?.add ?? [];
  const want = role === "node" ? Object.keys(CAPABILITIES) : [];
  if ([...add].sort().join() !== [...want].sort().join())
    errors.push(`${where}: capabilities must be [${want.join(", ")}], are [${add.join(", ")}]`);
  if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]') errors.push(`${where}: must drop ALL capabilities`);
  if (sc.privileged !== false) errors.push(`${where}: must not be privileged`);
  if (sc.readOnlyRootFilesystem !== true) errors.push(`${where}: root filesystem must be read-only`);
  if (role === "gateway" && pod.spec.securityContext?.runAsNonRoot !== true)
    errors.push(`${where}: the gateway runs as non-root`);
  return errors;
}

/** Every disagreement between the manifests and runtime-config.ts ([] = they agree). */
export function contractErrors(docs: K8sObject[]): string[] {
  const errors: string[] = [];
  const ds = find(docs, "DaemonSet", "ztunnel");
  const gw = find(docs, "Deployment", "hbone-eastwest");
  const svc = find(docs, "Service", "hbone-eastwest");
  if (!ds) errors.push("no DaemonSet ztunnel");
  if (!gw) errors.push("no Deployment hbone-eastwest");
  if (!svc) errors.push("no Service hbone-eastwest");
  if (ds) {
    errors.push(...checkPod("DaemonSet/ztunnel", ds.spec.template, "node"));
    const spec = ds.spec.template.spec;
    if (spec.serviceAccountName !== "ztunnel")
      errors.push("DaemonSet/ztunnel: service account must be ztunnel (istiod's trusted node account)");
    if (spec.priorityClassName !== "system-node-critical")
      errors.push("DaemonSet/ztunnel: priorityClassName must be system-node-critical");
    if (!find(docs, "ServiceAccount", spec.serviceAccountName))
      errors.push(`no ServiceAccount ${spec.serviceAccountName}`);
  }
  if (gw) {
    errors.push(...checkPod("Deployment/hbone-eastwest", gw.spec.template, "gateway"));
    const sa = gw.spec.template.spec.serviceAccountName;
    if (!find(docs, "ServiceAccount", sa)) errors.push(`no ServiceAccount ${sa}`);
    // One network name: the pod label istiod reads, the Service label and the proxy's NETWORK.
    const net = (gw.spec.template.spec.containers[0].env as EnvEntry[]).find((e) => e.name === "NETWORK")?.value;
    for (const [what, labels] of [
      ["pod", gw.spec.template.metadata.labels],
      ["Deployment", gw.metadata.labels],
      ["Service", svc?.metadata.labels],
    ] as const) {
      if (labels?.["topology.istio.io/network"] !== net)
        errors.push(`${what} label topology.istio.io/network must be NETWORK (${net})`);
    }
  }
  if (svc) {
    if (svc.spec.type !== "LoadBalancer")
      errors.push("Service/hbone-eastwest must be a LoadBalancer (other networks reach it)");
    const ports = (svc.spec.ports as { port: number; targetPort: number }[]).map((p) => `${p.port}:${p.targetPort}`);
    if (ports.join() !== `${PORTS.hbone}:${PORTS.hbone}`)
      errors.push(`Service/hbone-eastwest must expose exactly ${PORTS.hbone}`);
    const sel = svc.spec.selector as Record<string, string>;
    const podLabels = gw?.spec.template.metadata.labels ?? {};
    if (!Object.entries(sel).every(([k, v]) => podLabels[k] === v))
      errors.push("Service/hbone-eastwest selects no gateway pod");
  }
  return errors;
}
