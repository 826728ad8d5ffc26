// Runtime configuration: every environment variable the proxy reads, every well-known port and path,
// and every default, in one table; `resolveRuntime(flags, env)` resolves them once (a flag wins over its
// variable, the variable over the default). Names are ztunnel's where ztunnel has one, so a Kubernetes
// manifest written for ztunnel configures this proxy too; deploy/ is checked against these tables.

import { isIP } from "node:net";
import { RuntimeConfigError } from "./errors.js";

/** How a Kubernetes pod spec sets a variable: from the downward API, a fixed value, or one the operator chooses. */
export type K8sSource = { fieldRef: string } | { value: string } | { operator: string };

export interface EnvVar {
  /** The variable (ztunnel's name where it exists). */
  readonly name: string;
  /** Also read, after `name` (ztunnel reads both, or the chart sets the other spelling). */
  readonly aliases?: readonly string[];
  /** The CLI flag that wins over it, if any. */
  readonly flag?: string;
  readonly doc: string;
  /** Which deploy/ workloads must set it, and how: the manifest test asserts exactly this. */
  readonly node?: K8sSource;
  readonly gateway?: K8sSource;
}

/** Well-known ports (ztunnel's; 15080 is ztunnel's UNSTABLE_ENABLE_SOCKS5 port). */
export const PORTS = {
  admin: 15000,
  outbound: 15001,
  inboundPlaintext: 15006,
  hbone: 15008,
  metrics: 15020,
  readiness: 15021,
  dns: 15053,
  socks5: 15080,
} as const;

/** Well-known paths inside a ztunnel pod. */
export const PATHS = {
  /** Projected service account token (audience istio-ca), sent to istiod as a bearer token. */
  token: "/var/run/secrets/tokens/istio-token",
  /** The mesh root (ConfigMap istio-ca-root-cert), trust anchor for istiod's TLS. */
  rootCert: "/var/run/secrets/istio/root-cert.pem",
  /** istio-cni's ZDS socket (in-pod mode), on a hostPath shared with the CNI agent. */
  zdsSocket: "/var/run/ztunnel/ztunnel.sock",
  /** Writable scratch space (the root filesystem is read-only). */
  tmp: "/tmp",
} as const;

/**
 * Node flags the `hbone` command runs with (its bin's shebang, `npm start`, deploy/Containerfile, the demo's and
 * the bench's spawns; test/node-flags.test.ts keeps them in step). V8 sizes its young generation when the process
 * starts, so these cannot be set from inside. Semi-spaces of at most 8 MB instead of 16: under a burst of new
 * tunnels V8 grows the young generation to 16 MB, which was ~1.7 KB of RSS per idle tunnel. (1 MB semi-spaces cost
 * ~20 % more CPU per byte on bulk tunnels, 8 MB minimum semi-spaces ~5 MB of idle RSS for no gain. An idle proxy
 * is the same with at most 2, 4 or 8 MB: start-up grows them to 4 MB, ~5 MB resident until V8's memory reducer
 * ~8 s after start; at most 1 MB would save ~2 MB.) An
 * initial old-generation limit of 64 MB: V8 starts marking when the old generation's room left is under the young
 * generation's capacity, and once a proxy has idled (~10 s) the limit it recomputes is the live heap plus a few MB,
 * so bulk tunnels after an idle spell ran a mark-compact after nearly every scavenge (40-57 per GiB, ~+40 % CPU per
 * byte, with or without a 6-24 MB ballast in the old generation); the flag sets a floor to that limit (1-3 per
 * GiB). It commits no memory: the heap only grows that far under load.
 */
export const NODE_FLAGS = ["--max-semi-space-size=8", "--initial-old-space-size=64"] as const;

/** False when this process started without NODE_FLAGS' young-generation cap (e.g. plain `node dist/host/cli.js`). */
export function startedWithNodeFlags(): boolean {
  return NODE_FLAGS.every((f) => process.execArgv.includes(f));
}

export const DEFAULTS = {
  /** In-flight tunnels may finish for this long after SIGTERM (ztunnel: grace period minus 1 s). */
  drainTimeoutMs: 30_000,
  /** Dialling a peer proxy or the application. */
  connectTimeoutMs: 10_000,
  /** How long start-up waits for the first xDS ACK of each type. */
  xdsReadyTimeoutMs: 30_000,
  trustDomain: "cluster.local",
  /** ztunnel's DEFAULT_CLUSTER_ID. */
  clusterId: "Kubernetes",
  /** Mark on every socket the proxy opens so capture rules skip them (ztunnel's 1337). */
  packetMark: 0x539,
  logLevel: "info",
  logFormat: "json",
} as const;

/** Linux capabilities the node proxy needs in in-pod mode (ztunnel's chart adds exactly these, drops ALL else). */
export const CAPABILITIES = {
  /** setsockopt SO_MARK / IP_TRANSPARENT, nftables in redirect mode. */
  NET_ADMIN: "socket marks and transparent sockets",
  /** setns into pod network namespaces handed over by istio-cni. */
  SYS_ADMIN: "setns into pod network namespaces",
  /** raw sockets for transparent proxying. */
  NET_RAW: "transparent proxying",
} as const;

const fieldRef = (f: string): K8sSource => ({ fieldRef: f });
const operator = (what: string): K8sSource => ({ operator: what });
const value = (v: string): K8sSource => ({ value: v });
/** Set the same way in the node proxy's and the gateway's manifests. */
const both = (s: K8sSource): Pick<EnvVar, "node" | "gateway"> => ({ node: s, gateway: s });

/** Every variable the proxy reads. */
export const ENV: readonly EnvVar[] = [
  {
    name: "XDS_ADDRESS",
    flag: "--xds-address",
    doc: "istiod's Delta ADS endpoint, [https://]host:port",
    ...both(operator("istiod address")),
  },
  {
    name: "CA_ADDRESS",
    flag: "--ca-address",
    doc: "istiod's CA (CreateCertificate), [https://]host:port",
    ...both(operator("istiod address")),
  },
  { name: "LOCAL_XDS_PATH", flag: "--config", doc: "a mesh config file in ztunnel's local format instead of xDS" },
  {
    name: "HBONE_CA_DIR",
    flag: "--ca-dir",
    doc: "an Istio plug-in CA directory that signs our certificates instead of istiod",
  },
  {
    name: "CLUSTER_ID",
    aliases: ["ISTIO_META_CLUSTER_ID"],
    flag: "--cluster",
    doc: "this cluster's name (the chart sets ISTIO_META_CLUSTER_ID)",
    ...both(operator("cluster name")),
  },
  {
    name: "NETWORK",
    aliases: ["ISTIO_META_NETWORK"],
    flag: "--network",
    doc: "this cluster's network",
    ...both(operator("network name")),
  },
  {
    name: "TRUST_DOMAIN",
    flag: "--trust-domain",
    doc: "the mesh trust domain (default: the workload's, else cluster.local)",
  },
  { name: "HBONE_DEMO_LAYOUT", doc: "npm start: loopback forces the loopback layout (default: node mode when root)" },
  { name: "PROXY_MODE", doc: "shared (every workload of the node) or dedicated (one workload, PROXY_WORKLOAD_INFO)" },
  {
    name: "PROXY_WORKLOAD_INFO",
    flag: "--workload",
    doc: "namespace/name/serviceAccount of the one workload served",
    gateway: value("$(POD_NAMESPACE)/$(POD_NAME)/$(SERVICE_ACCOUNT)"),
  },
  {
    name: "NODE_NAME",
    doc: "the node whose workloads are served",
    ...both(fieldRef("spec.nodeName")),
  },
  {
    name: "POD_NAME",
    doc: "this proxy's pod (xDS node id)",
    ...both(fieldRef("metadata.name")),
  },
  {
    name: "POD_NAMESPACE",
    doc: "this proxy's namespace (xDS node id)",
    ...both(fieldRef("metadata.namespace")),
  },
  {
    name: "INSTANCE_IP",
    doc: "this proxy's pod IP (xDS node id)",
    ...both(fieldRef("status.podIP")),
  },
  {
    name: "SERVICE_ACCOUNT",
    doc: "this proxy's service account",
    ...both(fieldRef("spec.serviceAccountName")),
  },
  { name: "INPOD_ENABLED", doc: "in-pod mode: pods handed over by istio-cni over ZDS", node: value("true") },
  { name: "INPOD_UDS", doc: "istio-cni's ZDS socket" },
  { name: "PACKET_MARK", doc: "mark on sockets the proxy opens (capture rules skip them)" },
  { name: "ENABLE_RESPONSE_BAGGAGE", doc: "our peer metadata as baggage on every HBONE 200 (default true)" },
  {
    name: "TERMINATION_GRACE_PERIOD_SECONDS",
    doc: "the pod's grace period: drain for one second less",
    ...both(value("30")),
  },
  {
    name: "HBONE_LOG_LEVEL",
    aliases: ["RUST_LOG"],
    doc: "debug, info, warn or error (RUST_LOG only when it is a bare level)",
    ...both(operator("log level")),
  },
  { name: "LOG_FORMAT", doc: "json (the only format: JSON lines)" },
  {
    name: "HBONE_WORKERS",
    flag: "--workers",
    doc: "worker processes that share the listeners (default 1: no workers); ztunnel sizes its worker threads from its CPU request",
  },
  {
    name: "KUBERNETES_SERVICE_HOST",
    doc: "set by the kubelet in every pod: metrics and readiness then listen on all addresses, as ztunnel's do",
  },
  // Limits (README "Hardening"; read with host/env.ts envInt: a non-negative integer, anything else stops the start).
  {
    name: "HBONE_HANDSHAKE_TIMEOUT_MS",
    doc: "an unfinished TLS handshake on :15008 is dropped after this long (default 10000)",
  },
  {
    name: "HBONE_MAX_PENDING_HANDSHAKES",
    doc: "unfinished TLS handshakes in total; over it the oldest is shed (default 512)",
  },
  { name: "HBONE_MAX_PENDING_HANDSHAKES_PER_SOURCE", doc: "unfinished TLS handshakes from one address (default 64)" },
  {
    name: "HBONE_MAX_CONNECTIONS",
    doc: "connections of an HBONE listener, clamped below ulimit -n minus the reserve (default 16384)",
  },
  {
    name: "HBONE_FD_RESERVE",
    doc: "descriptors kept free of the HBONE listener (default a quarter of ulimit -n, at least 32)",
  },
  {
    name: "HBONE_MAX_ESTABLISHED",
    doc: "established HBONE connections; one over it is closed after its handshake (default 4096)",
  },
  { name: "HBONE_MAX_ESTABLISHED_PER_PEER", doc: "established HBONE connections of one peer identity (default 256)" },
  { name: "HBONE_LOG_RATE_LINES", doc: "lines per message per interval for lines a peer can trigger (default 10)" },
  { name: "HBONE_LOG_RATE_INTERVAL_MS", doc: "the interval of HBONE_LOG_RATE_LINES (default 10000)" },
  {
    name: "HBONE_METRICS_MAX_SERIES",
    doc: "istio_tcp_* series; past it new label sets count on an unknown series (default 10000)",
  },
  {
    name: "HBONE_METRICS_SERIES_TTL_S",
    doc: "a series with no open tunnel, unchanged this long, is removed (default 300)",
  },
  { name: "HBONE_WASM_DEBUG", doc: "1: load the Wasm codec's debug build (assertions, for diagnosis)" },
];

/** What `hbone proxy` / `hbone gateway` flags carry (parseArgs values: strings, undefined when absent). */
export type RuntimeFlags = Partial<
  Record<
    | "config"
    | "workload"
    | "ca-dir"
    | "xds-address"
    | "ca-address"
    | "xds-token-file"
    | "root-cert"
    | "trust-domain"
    | "cluster"
    | "network"
    | "inbound-port"
    | "socks5-port"
    | "admin-port"
    | "metrics-port"
    | "readiness-port"
    | "hbone-port"
    | "drain-timeout"
    | "status-address"
    | "capture"
    | "workers",
    string
  >
>;

export type Env = Record<string, string | undefined>;

export interface RuntimeConfig {
  configPath?: string;
  workload?: string;
  caDir?: string;
  xdsAddress?: string;
  caAddress?: string;
  tokenFile: string;
  rootCertPath: string;
  trustDomain?: string;
  cluster?: string;
  network?: string;
  proxyMode: "shared" | "dedicated";
  nodeName?: string;
  podName?: string;
  podNamespace?: string;
  instanceIp?: string;
  serviceAccount?: string;
  inpod: boolean;
  inpodUds: string;
  /** Redirect mode (--capture host | NETNS): the namespace whose captured traffic the proxy serves. */
  redirect?: { netns?: string };
  packetMark: number;
  responseBaggage: boolean;
  /** Ports: false = listener off. */
  ports: {
    inbound: number | false;
    socks5: number | false;
    admin: number | false;
    metrics: number | false;
    readiness: number | false;
  };
  /** Where metrics and readiness listen (admin stays on loopback). */
  statusAddress: string;
  /** The port other proxies accept HBONE on, when it differs from ours. */
  hbonePort?: number;
  drainTimeoutMs: number;
  /** Worker processes (1: this process serves itself). */
  workers: number;
  connectTimeoutMs: number;
  xdsReadyTimeoutMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "json";
}

export { RuntimeConfigError } from "./errors.js";

const LEVELS = ["debug", "info", "warn", "error"] as const;
const spec = (name: string): EnvVar => ENV.find((e) => e.name === name)!;

/** The variable's value (or its first set alias); empty counts as unset, as ztunnel's XDS_ADDRESS="" does. */
function read(env: Env, name: string): { name: string; value: string } | undefined {
  for (const n of [name, ...(spec(name).aliases ?? [])]) {
    const v = env[n];
    if (v !== undefined && v !== "") return { name: n, value: v };
  }
  return undefined;
}

function bool(env: Env, name: string, dflt: boolean): boolean {
  const r = read(env, name);
  if (!r) return dflt;
  const v = r.value.toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off"].includes(v)) return false;
  throw new RuntimeConfigError(`${r.name}: not a boolean: ${r.value}`);
}

function port(v: string | undefined, flag: string, dflt: number | false): number | false {
  if (v === undefined) return dflt;
  if (v === "off") return false;
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new RuntimeConfigError(`${flag}: not a port: ${v}`);
  return n;
}

function ip(v: string | undefined, flag: string): string | undefined {
  if (v !== undefined && isIP(v) === 0) throw new RuntimeConfigError(`${flag}: not an IP address: ${v}`);
  return v;
}

function nonNegative(v: string, what: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0)
    throw new RuntimeConfigError(`${what}: not a non-negative number: ${v}`);
  return n;
}

/**
 * Resolves flags, environment and defaults once. `gateway` turns SOCKS5 off unless a flag asks for it.
 * Throws RuntimeConfigError naming the flag or variable when a value is malformed.
 */
export function resolveRuntime(flags: RuntimeFlags, env: Env, o: { gateway?: boolean } = {}): RuntimeConfig {
  const s = (flag: keyof RuntimeFlags, name?: string) => flags[flag] ?? (name ? read(env, name)?.value : undefined);
  const workload = s("workload", "PROXY_WORKLOAD_INFO");
  const mode = read(env, "PROXY_MODE")?.value ?? (workload ? "dedicated" : "shared");
  if (mode !== "shared" && mode !== "dedicated")
    throw new RuntimeConfigError(`PROXY_MODE: shared or dedicated, not ${mode}`);

  const rawLevel = read(env, "HBONE_LOG_LEVEL");
  let logLevel: RuntimeConfig["logLevel"] = DEFAULTS.logLevel;
  if (rawLevel) {
    const l = rawLevel.value.toLowerCase();
    if ((LEVELS as readonly string[]).includes(l)) logLevel = l as RuntimeConfig["logLevel"];
    // RUST_LOG may be a filter list (`info,access=debug`): only a bare level is ours to take.
    else if (rawLevel.name === "HBONE_LOG_LEVEL")
      throw new RuntimeConfigError(`HBONE_LOG_LEVEL: not one of ${LEVELS.join(", ")}: ${rawLevel.value}`);
  }
  const format = read(env, "LOG_FORMAT")?.value ?? DEFAULTS.logFormat;
  if (format !== "json") throw new RuntimeConfigError(`LOG_FORMAT: only json is supported, not ${format}`);

  const mark = read(env, "PACKET_MARK");
  const packetMark = mark ? Number(mark.value) : DEFAULTS.packetMark;
  if (!Number.isInteger(packetMark) || packetMark < 0 || packetMark > 0xffffffff) {
    throw new RuntimeConfigError(`PACKET_MARK: not a 32-bit mark: ${mark?.value}`);
  }

  const grace = read(env, "TERMINATION_GRACE_PERIOD_SECONDS");
  const drainTimeoutMs =
    flags["drain-timeout"] !== undefined
      ? nonNegative(flags["drain-timeout"], "--drain-timeout") * 1000
      : grace
        ? Math.max(0, nonNegative(grace.value, grace.name) - 1) * 1000
        : DEFAULTS.drainTimeoutMs;

  const hbone = flags["hbone-port"];
  const hbonePort = hbone === undefined ? undefined : port(hbone, "--hbone-port", PORTS.hbone);
  if (hbonePort === false || hbonePort === 0)
    throw new RuntimeConfigError(`--hbone-port: a peer's port cannot be ${hbone}`);

  const rawWorkers = s("workers", "HBONE_WORKERS");
  const workers = rawWorkers === undefined ? 1 : Number(rawWorkers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new RuntimeConfigError(
      `${flags.workers !== undefined ? "--workers" : "HBONE_WORKERS"}: not a number of workers from 1 to 64: ${rawWorkers}`,
    );
  }
  const inpod = bool(env, "INPOD_ENABLED", false);
  // istio-cni sends a pod added after start-up to its newest ZDS connection only: with a connection per worker, each
  // later pod would be served by one worker and missing from the others' state.
  if (workers > 1 && inpod) {
    throw new RuntimeConfigError(
      `${flags.workers !== undefined ? "--workers" : "HBONE_WORKERS"}: in-pod mode (INPOD_ENABLED) runs one process: ` +
        `istio-cni sends new pods to one connection only`,
    );
  }

  return {
    configPath: s("config", "LOCAL_XDS_PATH"),
    workload,
    caDir: s("ca-dir", "HBONE_CA_DIR"),
    xdsAddress: s("xds-address", "XDS_ADDRESS"),
    caAddress: s("ca-address", "CA_ADDRESS"),
    tokenFile: flags["xds-token-file"] ?? PATHS.token,
    rootCertPath: flags["root-cert"] ?? PATHS.rootCert,
    trustDomain: s("trust-domain", "TRUST_DOMAIN"),
    cluster: s("cluster", "CLUSTER_ID"),
    network: s("network", "NETWORK"),
    proxyMode: mode,
    nodeName: read(env, "NODE_NAME")?.value,
    podName: read(env, "POD_NAME")?.value,
    podNamespace: read(env, "POD_NAMESPACE")?.value,
    instanceIp: read(env, "INSTANCE_IP")?.value,
    serviceAccount: read(env, "SERVICE_ACCOUNT")?.value,
    inpod,
    inpodUds: read(env, "INPOD_UDS")?.value ?? PATHS.zdsSocket,
    redirect: flags.capture === undefined ? undefined : flags.capture === "host" ? {} : { netns: flags.capture },
    packetMark,
    responseBaggage: bool(env, "ENABLE_RESPONSE_BAGGAGE", true),
    ports: {
      inbound: port(flags["inbound-port"], "--inbound-port", PORTS.hbone),
      socks5: port(flags["socks5-port"], "--socks5-port", o.gateway ? false : PORTS.socks5),
      admin: port(flags["admin-port"], "--admin-port", PORTS.admin),
      metrics: port(flags["metrics-port"], "--metrics-port", PORTS.metrics),
      readiness: port(flags["readiness-port"], "--readiness-port", PORTS.readiness),
    },
    statusAddress:
      ip(flags["status-address"], "--status-address") ??
      (read(env, "KUBERNETES_SERVICE_HOST") ? "0.0.0.0" : "127.0.0.1"),
    hbonePort,
    drainTimeoutMs,
    workers,
    connectTimeoutMs: DEFAULTS.connectTimeoutMs,
    xdsReadyTimeoutMs: DEFAULTS.xdsReadyTimeoutMs,
    logLevel,
    logFormat: "json",
  };
}
