// The local config file format (ztunnel's `LocalConfig`: camelCase YAML, unknown fields rejected) read into the
// mesh model (host/model/). xds/local.ts loads and watches the file; this module only parses and validates.
//
// Parsing walks the YAML node tree rather than a plain JS object so every error can name its file, line,
// column and field path: `mesh.yaml:12:5: workloads[0].serviceAcount: unknown field (did you mean serviceAccount?)`.

import { ConfigError, type ConfigErrorLocation } from "../errors.js";
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair } from "yaml";
import {
  DEFAULT_SERVICE_ACCOUNT,
  DEFAULT_TRUST_DOMAIN,
  canonicalIp,
  emptyMeshConfig,
  policyKey,
  serviceKey,
  type GatewayAddress,
  type GatewayDestination,
  type IpNet,
  type LabelSelector,
  type LoadBalancing,
  type Locality,
  type MeshConfig,
  type NetworkAddress,
  type Policy,
  type PolicyMatch,
  type Service,
  type ServiceScopeConfig,
  type StringMatch,
  type Workload,
} from "../model/index.js";

// ---------------------------------------------------------------------------------------------------------------
// Errors

// ConfigError lives with the rest of the error family (host/errors.ts).
export { ConfigError, type ConfigErrorLocation } from "../errors.js";

// ---------------------------------------------------------------------------------------------------------------
// Parsing

/** A YAML value together with where it sits, so any check can fail with a location. */
interface At {
  node: Node | null; // null: the key is present with no value (`services:`)
  path: string;
}

const CORE_TAG = "tag:yaml.org,2002:";

class Reader {
  /** Where a parsed item's key field sat, for the duplicate checks that run after parsing. */
  readonly keyAt = new WeakMap<object, At>();
  /** Where each VIP of a parsed service sat. */
  readonly vipAt = new WeakMap<NetworkAddress, At>();

  constructor(
    private readonly doc: Document,
    private readonly lc: LineCounter,
    private readonly file: string | undefined,
  ) {}

  fail(node: Node | null | undefined, path: string, reason: string): never {
    const off = node?.range?.[0];
    const loc: ConfigErrorLocation = { file: this.file, field: path || undefined };
    if (off !== undefined) {
      const p = this.lc.linePos(off);
      loc.line = p.line;
      loc.column = p.col;
    }
    throw new ConfigError(reason, loc);
  }

  resolve(node: Node | null): Node | null {
    if (node && isAlias(node)) {
      const r = node.resolve(this.doc);
      if (!r) this.fail(node, "", `unresolved alias *${node.source}`);
      return r as Node;
    }
    return node;
  }

  private noTag(a: At, node: Node): void {
    if (node.tag && !node.tag.startsWith(CORE_TAG)) this.fail(node, a.path, `unexpected tag ${node.tag}`);
  }

  /** A mapping: returns its fields, refusing any not in `allowed`. */
  map(a: At, allowed: readonly string[], what = "a mapping"): Map<string, { key: Node; value: At }> {
    const node = this.resolve(a.node);
    if (!node || !isMap(node)) this.fail(node ?? a.node, a.path, `expected ${what}`);
    this.noTag(a, node);
    const out = new Map<string, { key: Node; value: At }>();
    for (const pair of node.items as Pair<Node, Node | null>[]) {
      const key = this.resolve(pair.key);
      if (!key || !isScalar(key) || (typeof key.value !== "string" && typeof key.value !== "number")) {
        this.fail(key ?? node, a.path, "field names must be plain strings");
      }
      const name = String(key.value);
      const path = fieldPath(a.path, name);
      if (!allowed.includes(name)) {
        if (Object.hasOwn(UNSUPPORTED, name)) {
          this.fail(key, path, `${UNSUPPORTED[name]} are not supported by hbone-wasm`);
        }
        const hint = closest(name, allowed);
        this.fail(key, path, `unknown field${hint ? ` (did you mean ${hint}?)` : ""}`);
      }
      out.set(name, { key, value: { node: pair.value, path } });
    }
    return out;
  }

  /** The pairs of a free-form mapping (labels, port maps, service maps): keys are returned as text. */
  entries(a: At): { key: string; keyNode: Node; value: At }[] {
    if (this.isNull(a)) return [];
    const node = this.resolve(a.node)!;
    if (!isMap(node)) this.fail(node, a.path, "expected a mapping");
    this.noTag(a, node);
    return (node.items as Pair<Node, Node | null>[]).map((pair) => {
      const key = this.resolve(pair.key);
      if (!key || !isScalar(key) || key.value === null || typeof key.value === "object") {
        this.fail(key ?? node, a.path, "keys must be plain scalars");
      }
      const text = typeof key.value === "string" ? key.value : (key.source ?? String(key.value));
      return { key: text, keyNode: key, value: { node: pair.value, path: fieldPath(a.path, text) } };
    });
  }

  /** Items of a sequence; an absent or empty (`null`) value is an empty list. */
  seq(a: At | undefined): At[] {
    if (!a || this.isNull(a)) return [];
    const node = this.resolve(a.node)!;
    if (!isSeq(node)) this.fail(node, a.path, "expected a list");
    this.noTag(a, node);
    return node.items.map((item, i) => ({ node: item as Node | null, path: `${a.path}[${i}]` }));
  }

  isNull(a: At | undefined): boolean {
    if (!a) return true;
    const node = this.resolve(a.node);
    return node === null || (isScalar(node) && node.value === null);
  }

  /**
   * A string. Like serde_yaml, a plain scalar that YAML reads as a number or boolean still counts as its text
   * (`canonicalRevision: 1.10` is "1.10").
   */
  str(a: At | undefined, def: string): string {
    if (!a || this.isNull(a)) return def;
    const node = this.resolve(a.node)!;
    if (!isScalar(node) || typeof node.value === "object") this.fail(node, a.path, "expected a string");
    this.noTag(a, node);
    return typeof node.value === "string" ? node.value : (node.source ?? String(node.value));
  }

  /** A field that must be present and not null. */
  required(fields: Map<string, { value: At }>, name: string, parent: At): At {
    const f = fields.get(name);
    if (!f || this.isNull(f.value)) {
      const where = f ? f.value.node : this.resolve(parent.node);
      this.fail(where, f ? f.value.path : fieldPath(parent.path, name), "missing required field");
    }
    return f.value;
  }

  reqStr(fields: Map<string, { value: At }>, name: string, parent: At): string {
    const a = this.required(fields, name, parent);
    const s = this.str(a, "");
    if (s === "") this.fail(this.resolve(a.node), a.path, "must not be empty");
    return s;
  }

  int(a: At | undefined, def: number, min: number, max: number, what = "an integer"): number {
    if (!a || this.isNull(a)) return def;
    return this.intNode(a, min, max, what);
  }

  intNode(a: At, min: number, max: number, what: string): number {
    const node = this.resolve(a.node);
    if (!node || !isScalar(node) || typeof node.value !== "number" || !Number.isInteger(node.value)) {
      this.fail(node ?? a.node, a.path, `expected ${what}`);
    }
    this.noTag(a, node);
    const v = node.value as number;
    if (v < min || v > max) this.fail(node, a.path, `${v} is out of range (${what})`);
    return v;
  }

  port(a: At): number {
    return this.intNode(a, 1, 65535, "a port number 1..65535");
  }

  /** A port given as a mapping key: `9000:` or `"9000":`. */
  portKey(keyText: string, keyNode: Node, path: string): number {
    const v = /^\d+$/.test(keyText) ? Number(keyText) : NaN;
    if (!(v >= 1 && v <= 65535)) this.fail(keyNode, path, `${JSON.stringify(keyText)} is not a port number 1..65535`);
    return v;
  }

  bool(a: At | undefined, def: boolean): boolean {
    if (!a || this.isNull(a)) return def;
    const node = this.resolve(a.node);
    if (!node || !isScalar(node) || typeof node.value !== "boolean") {
      this.fail(node ?? a.node, a.path, "expected true or false");
    }
    return node.value as boolean;
  }

  /**
   * One of `values`, compared ignoring case, `_` and `-` (so ztunnel's `OnlyHealthy` and the proto's
   * `ONLY_HEALTHY` agree). `def` undefined: the caller passed required().
   */
  enumOf<T extends string>(
    a: At | undefined,
    values: readonly T[],
    def: T | undefined,
    aliases: Record<string, T> = {},
  ): T {
    if (!a || this.isNull(a)) {
      if (def === undefined) throw new Error("enumOf: a required value must come from required()");
      return def;
    }
    const s = this.str(a, "");
    const norm = (x: string) => x.replace(/[_-]/g, "").toLowerCase();
    const hit = values.find((v) => norm(v) === norm(s)) ?? aliases[norm(s)];
    if (!hit) this.fail(this.resolve(a.node), a.path, `${JSON.stringify(s)} is not one of ${values.join(", ")}`);
    return hit;
  }

  ip(a: At): string {
    const s = this.str(a, "");
    const c = canonicalIp(s);
    if (!c) this.fail(this.resolve(a.node), a.path, `${JSON.stringify(s)} is not an IP address`);
    return c;
  }

  tag(a: At): string | undefined {
    const node = this.resolve(a.node);
    return node?.tag && !node.tag.startsWith(CORE_TAG) ? node.tag : undefined;
  }

  node(a: At): Node | null {
    return this.resolve(a.node);
  }
}

function fieldPath(parent: string, key: string): string {
  if (/^\d+$/.test(key)) return `${parent}[${key}]`;
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** The allowed name nearest to a misspelt one (edit distance <= 2), for the error's hint. */
function closest(name: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const cand of allowed) {
    const d = editDistance(name.toLowerCase(), cand.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = cand;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

const TOP_FIELDS = ["workloads", "services", "policies", "serviceScopeConfigs"] as const;
const WORKLOAD_FIELDS = [
  "uid",
  "name",
  "namespace",
  "serviceAccount",
  "trustDomain",
  "workloadIps",
  "hostname",
  "protocol",
  "network",
  "node",
  "clusterId",
  "canonicalName",
  "canonicalRevision",
  "workloadName",
  "workloadType",
  "locality",
  "waypoint",
  "networkGateway",
  "status",
  "capacity",
  "services",
  "authorizationPolicies",
] as const;
const SERVICE_FIELDS = [
  "name",
  "namespace",
  "hostname",
  "vips",
  "ports",
  "subjectAltNames",
  "waypoint",
  "loadBalancer",
  "labels",
  "canonical",
  "visibility",
] as const;
const POLICY_FIELDS = ["name", "namespace", "scope", "action", "dryRun", "rules"] as const;
const MATCH_FIELDS = [
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "principals",
  "notPrincipals",
  "sourceIps",
  "notSourceIps",
  "destinationIps",
  "notDestinationIps",
  "destinationPorts",
  "notDestinationPorts",
] as const;
const LB_SCOPES = ["NETWORK", "REGION", "ZONE", "SUBZONE", "NODE", "CLUSTER"] as const;
const LB_MODES = ["STANDARD", "STRICT", "FAILOVER", "UNSPECIFIED", "PASSTHROUGH"] as const;
const NS_SLASH_NAME = /^[^/\s]+\/[^/\s]+$/;
// ztunnel fields hbone-wasm does not implement: refused with a clearer word than "unknown".
const UNSUPPORTED: Record<string, string> = {
  networkMode: "network modes",
  nativeTunnel: "native tunnels",
  applicationTunnel: "application tunnels",
  ipFamilies: "IP family selection",
};

/**
 * Parses and validates a mesh config (ztunnel local config YAML). Throws a ConfigError for the first problem,
 * located by file, line, column and field path.
 */
export function parseMeshConfig(text: string, file?: string): MeshConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const p = lc.linePos(err.pos[0]);
    throw new ConfigError(`invalid YAML: ${err.message.split("\n")[0]}`, { file, line: p.line, column: p.col });
  }
  const r = new Reader(doc, lc, file);
  const root: At = { node: doc.contents as Node | null, path: "" };
  if (r.isNull(root)) return emptyMeshConfig();
  const top = r.map(root, TOP_FIELDS, "a mapping with workloads, services and policies");

  const workloads = r.seq(top.get("workloads")?.value).map((a) => parseWorkload(r, a));
  const services = r.seq(top.get("services")?.value).map((a) => parseService(r, a));
  const policies = r.seq(top.get("policies")?.value).map((a) => parsePolicy(r, a));
  const serviceScopeConfigs = r.seq(top.get("serviceScopeConfigs")?.value).map((a) => parseScopeConfig(r, a));

  checkUnique(r, workloads, (w) => w.uid, "uid");
  checkUnique(r, services, serviceKey, "service namespace/hostname");
  checkUnique(r, policies, policyKey, "policy namespace/name");
  const vips = new Map<string, string>();
  for (const s of services) {
    for (const v of s.vips) {
      const k = `${v.network}/${v.address}`;
      const owner = vips.get(k);
      const at = r.vipAt.get(v)!;
      if (owner !== undefined) r.fail(r.node(at), at.path, `VIP ${k} is already used by service ${owner}`);
      vips.set(k, serviceKey(s));
    }
  }
  return { workloads, services, policies, serviceScopeConfigs };
}

/** Refuses a second item with the same key, pointing at the second one's key field. */
function checkUnique<T extends object>(r: Reader, items: T[], key: (t: T) => string, what: string): void {
  const seen = new Map<string, string>();
  for (const it of items) {
    const k = key(it);
    const at = r.keyAt.get(it)!;
    const first = seen.get(k);
    if (first !== undefined) r.fail(r.node(at), at.path, `duplicate ${what} ${JSON.stringify(k)} (first at ${first})`);
    seen.set(k, at.path);
  }
}

function parseWorkload(r: Reader, a: At): Workload {
  const f = r.map(a, WORKLOAD_FIELDS, "a workload mapping");
  const v = (k: (typeof WORKLOAD_FIELDS)[number]) => f.get(k)?.value;
  const w: Workload = {
    uid: r.reqStr(f, "uid", a),
    name: r.reqStr(f, "name", a),
    namespace: r.reqStr(f, "namespace", a),
    serviceAccount: r.str(v("serviceAccount"), "") || DEFAULT_SERVICE_ACCOUNT,
    trustDomain: r.str(v("trustDomain"), "") || DEFAULT_TRUST_DOMAIN,
    workloadIps: r.seq(v("workloadIps")).map((x) => r.ip(x)),
    hostname: r.str(v("hostname"), ""),
    protocol: r.enumOf(v("protocol"), ["HBONE", "TCP"] as const, "TCP", { none: "TCP" }),
    network: r.str(v("network"), ""),
    node: r.str(v("node"), ""),
    clusterId: r.str(v("clusterId"), ""),
    canonicalName: r.str(v("canonicalName"), ""),
    canonicalRevision: r.str(v("canonicalRevision"), ""),
    workloadName: r.str(v("workloadName"), ""),
    workloadType: r.str(v("workloadType"), ""),
    status: r.enumOf(v("status"), ["Healthy", "Unhealthy"] as const, "Healthy"),
    capacity: r.int(v("capacity"), 1, 0, 0xffffffff, "a capacity 0..4294967295"),
    services: {},
    authorizationPolicies: r.seq(v("authorizationPolicies")).map((x) => {
      const s = r.str(x, "");
      if (!NS_SLASH_NAME.test(s)) r.fail(r.node(x), x.path, `${JSON.stringify(s)} is not a policy key namespace/name`);
      return s;
    }),
  };
  r.keyAt.set(w, v("uid")!);
  if (!r.isNull(v("locality"))) w.locality = parseLocality(r, v("locality")!);
  if (!r.isNull(v("waypoint"))) w.waypoint = parseGateway(r, v("waypoint")!);
  if (!r.isNull(v("networkGateway"))) w.networkGateway = parseGateway(r, v("networkGateway")!);
  for (const e of r.entries(v("services") ?? { node: null, path: "" })) {
    if (!NS_SLASH_NAME.test(e.key)) r.fail(e.keyNode, e.value.path, "service keys must be namespace/hostname");
    w.services[e.key] = parsePortMap(r, e.value);
  }
  return w;
}

function parsePortMap(r: Reader, a: At): Record<number, number> {
  const out: Record<number, number> = {};
  for (const e of r.entries(a)) out[r.portKey(e.key, e.keyNode, e.value.path)] = r.port(e.value);
  return out;
}

function parseLocality(r: Reader, a: At): Locality {
  const f = r.map(a, ["region", "zone", "subzone"]);
  return {
    region: r.str(f.get("region")?.value, ""),
    zone: r.str(f.get("zone")?.value, ""),
    subzone: r.str(f.get("subzone")?.value, ""),
  };
}

function parseNetworkAddress(r: Reader, a: At): NetworkAddress {
  const s = r.str(a, "");
  const slash = s.indexOf("/");
  const network = slash < 0 ? "" : s.slice(0, slash);
  const address = canonicalIp(slash < 0 ? s : s.slice(slash + 1));
  if (!address) {
    r.fail(r.node(a), a.path, `${JSON.stringify(s)} is not network/IP (e.g. /10.96.0.10 or net1/10.96.0.10)`);
  }
  return { network, address };
}

function parseGateway(r: Reader, a: At): GatewayAddress {
  const f = r.map(a, ["destination", "hboneMtlsPort"], "a gateway mapping {destination, hboneMtlsPort}");
  const d = f.get("destination")?.value;
  if (r.isNull(d)) r.fail(d?.node ?? r.node(a), d?.path ?? fieldPath(a.path, "destination"), "missing required field");
  const s = r.str(d, "");
  const slash = s.indexOf("/");
  const left = slash < 0 ? "" : s.slice(0, slash);
  const right = slash < 0 ? s : s.slice(slash + 1);
  const ip = canonicalIp(right);
  let destination: GatewayDestination;
  if (ip) destination = { network: left, address: ip };
  else if (left && right && !right.includes("/") && !/\s/.test(s)) destination = { namespace: left, hostname: right };
  else r.fail(r.node(d!), d!.path, `${JSON.stringify(s)} is neither network/IP nor namespace/hostname`);
  // 15008 is the HBONE port every ztunnel and waypoint listens on.
  const port = f.get("hboneMtlsPort")?.value;
  return { destination, hboneMtlsPort: r.isNull(port) ? 15008 : r.port(port!) };
}

function parseService(r: Reader, a: At): Service {
  const f = r.map(a, SERVICE_FIELDS, "a service mapping");
  const v = (k: (typeof SERVICE_FIELDS)[number]) => f.get(k)?.value;
  const hostname = r.reqStr(f, "hostname", a);
  if (/[/\s]/.test(hostname)) {
    r.fail(r.node(v("hostname")!), v("hostname")!.path, `${JSON.stringify(hostname)} is not a hostname`);
  }
  const s: Service = {
    name: r.reqStr(f, "name", a),
    namespace: r.reqStr(f, "namespace", a),
    hostname,
    vips: r.seq(v("vips")).map((x) => {
      const na = parseNetworkAddress(r, x);
      r.vipAt.set(na, x);
      return na;
    }),
    ports: v("ports") ? parsePortMap(r, v("ports")!) : {},
    subjectAltNames: r.seq(v("subjectAltNames")).map((x) => {
      const san = r.str(x, "");
      if (!/^spiffe:\/\/[^/\s]+(\/[^\s]*)?$/.test(san)) {
        const want = "spiffe://<trust domain>/ns/<ns>/sa/<sa>";
        r.fail(r.node(x), x.path, `${JSON.stringify(san)} is not a SPIFFE URI (${want})`);
      }
      return san;
    }),
    labels: parseLabels(r, v("labels")),
    canonical: r.bool(v("canonical"), false),
    visibility: r.enumOf(v("visibility"), ["PUBLIC", "NAMESPACE"] as const, "PUBLIC"),
  };
  r.keyAt.set(s, v("hostname")!);
  if (!r.isNull(v("waypoint"))) s.waypoint = parseGateway(r, v("waypoint")!);
  if (!r.isNull(v("loadBalancer"))) s.loadBalancer = parseLoadBalancing(r, v("loadBalancer")!);
  return s;
}

function parseLabels(r: Reader, a: At | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!a) return out;
  for (const e of r.entries(a)) {
    const node = r.node(e.value);
    // Kubernetes label values are strings; `true` unquoted is a YAML boolean, so say how to fix it.
    if (!node || !isScalar(node) || typeof node.value !== "string") {
      r.fail(node ?? r.node(a), e.value.path, 'label values must be strings (quote them: "true")');
    }
    out[e.key] = node.value as string;
  }
  return out;
}

function parseLoadBalancing(r: Reader, a: At): LoadBalancing {
  const f = r.map(a, ["routingPreferences", "mode", "healthPolicy"]);
  return {
    routingPreferences: r.seq(f.get("routingPreferences")?.value).map((x) => r.enumOf(x, LB_SCOPES, undefined)),
    mode: r.enumOf(f.get("mode")?.value, LB_MODES, "UNSPECIFIED", { unspecifiedmode: "UNSPECIFIED" }),
    healthPolicy: r.enumOf(f.get("healthPolicy")?.value, ["ONLY_HEALTHY", "ALLOW_ALL"] as const, "ONLY_HEALTHY"),
  };
}

function parsePolicy(r: Reader, a: At): Policy {
  const f = r.map(a, POLICY_FIELDS, "a policy mapping");
  const p: Policy = {
    name: r.reqStr(f, "name", a),
    namespace: r.reqStr(f, "namespace", a),
    scope: r.enumOf(r.required(f, "scope", a), ["Global", "Namespace", "WorkloadSelector"] as const, undefined),
    action: r.enumOf(r.required(f, "action", a), ["Allow", "Deny"] as const, undefined),
    dryRun: r.bool(f.get("dryRun")?.value, false),
    rules: r
      .seq(f.get("rules")?.value)
      .map((rule) =>
        listOrKeyed(r, rule, "clauses").map((clause) => listOrKeyed(r, clause, "matches").map((m) => parseMatch(r, m))),
      ),
  };
  r.keyAt.set(p, f.get("name")!.value);
  return p;
}

/** ztunnel writes a rule as a list of clauses and a clause as a list of matches; the proto shape wraps each list. */
function listOrKeyed(r: Reader, a: At, key: string): At[] {
  const node = r.node(a);
  if (node && isMap(node)) return r.seq(r.map(a, [key]).get(key)?.value);
  return r.seq(a);
}

function parseMatch(r: Reader, a: At): PolicyMatch {
  const f = r.map(a, MATCH_FIELDS, "a match mapping");
  const v = (k: (typeof MATCH_FIELDS)[number]) => f.get(k)?.value;
  const strs = (k: (typeof MATCH_FIELDS)[number]) => r.seq(v(k)).map((x) => parseStringMatch(r, x));
  const nets = (k: (typeof MATCH_FIELDS)[number]) => r.seq(v(k)).map((x) => parseIpNet(r, x));
  const ports = (k: (typeof MATCH_FIELDS)[number]) => r.seq(v(k)).map((x) => r.port(x));
  const sas = (k: (typeof MATCH_FIELDS)[number]) =>
    r.seq(v(k)).map((x) => {
      const m = r.map(x, ["namespace", "serviceAccount"]);
      return { namespace: r.reqStr(m, "namespace", x), serviceAccount: r.reqStr(m, "serviceAccount", x) };
    });
  return {
    namespaces: strs("namespaces"),
    notNamespaces: strs("notNamespaces"),
    serviceAccounts: sas("serviceAccounts"),
    notServiceAccounts: sas("notServiceAccounts"),
    principals: strs("principals"),
    notPrincipals: strs("notPrincipals"),
    sourceIps: nets("sourceIps"),
    notSourceIps: nets("notSourceIps"),
    destinationIps: nets("destinationIps"),
    notDestinationIps: nets("notDestinationIps"),
    destinationPorts: ports("destinationPorts"),
    notDestinationPorts: ports("notDestinationPorts"),
  };
}

const MATCH_KINDS = ["exact", "prefix", "suffix", "presence"] as const;

function parseStringMatch(r: Reader, a: At): StringMatch {
  const node = r.node(a);
  const tag = r.tag(a);
  if (tag) {
    // serde_yaml writes enums as tags: `!Exact foo`, `!Presence`.
    const kind = MATCH_KINDS.find((k) => `!${k}` === tag.toLowerCase());
    if (!kind) r.fail(node, a.path, `unknown string match ${tag} (Exact, Prefix, Suffix, Presence)`);
    if (kind === "presence") return { kind, value: "" };
    if (!node || !isScalar(node)) r.fail(node, a.path, "expected a string");
    return { kind, value: typeof node.value === "string" ? node.value : (node.source ?? String(node.value)) };
  }
  if (node && isMap(node)) {
    const f = r.map(a, ["Exact", "Prefix", "Suffix", "Presence", ...MATCH_KINDS], "a string match");
    if (f.size !== 1) r.fail(node, a.path, "a string match has exactly one of Exact, Prefix, Suffix, Presence");
    const [name, { value }] = [...f][0]!;
    const kind = name.toLowerCase() as StringMatch["kind"];
    return kind === "presence" ? { kind, value: "" } : { kind, value: r.str(value, "") };
  }
  // Istio's glob form, as istiod translates it.
  const s = r.str(a, "");
  if (s === "*") return { kind: "presence", value: "" };
  if (s.length > 1 && s.startsWith("*")) return { kind: "suffix", value: s.slice(1) };
  if (s.length > 1 && s.endsWith("*")) return { kind: "prefix", value: s.slice(0, -1) };
  return { kind: "exact", value: s };
}

function parseIpNet(r: Reader, a: At): IpNet {
  const s = r.str(a, "");
  const slash = s.indexOf("/");
  const address = canonicalIp(slash < 0 ? s : s.slice(0, slash));
  const max = address?.includes(":") ? 128 : 32;
  const len = slash < 0 ? max : /^\d{1,3}$/.test(s.slice(slash + 1)) ? Number(s.slice(slash + 1)) : NaN;
  if (!address || !(len >= 0 && len <= max)) {
    r.fail(r.node(a), a.path, `${JSON.stringify(s)} is not an IP address or CIDR`);
  }
  return { address, prefixLength: len };
}

function parseLabelSelector(r: Reader, a: At): LabelSelector {
  const f = r.map(a, ["matchLabels", "matchExpressions"], "a label selector");
  return {
    matchLabels: parseLabels(r, f.get("matchLabels")?.value),
    matchExpressions: r.seq(f.get("matchExpressions")?.value).map((x) => {
      const m = r.map(x, ["key", "operator", "values"]);
      return {
        key: r.reqStr(m, "key", x),
        operator: r.enumOf(r.required(m, "operator", x), ["In", "NotIn", "Exists", "DoesNotExist"] as const, undefined),
        values: r.seq(m.get("values")?.value).map((y) => r.str(y, "")),
      };
    }),
  };
}

function parseScopeConfig(r: Reader, a: At): ServiceScopeConfig {
  const f = r.map(a, ["namespaceSelector", "servicesSelector", "scope"], "a service scope config");
  const scope = r.enumOf(r.required(f, "scope", a), ["LOCAL", "GLOBAL"] as const, undefined);
  const out: ServiceScopeConfig = { scope };
  const ns = f.get("namespaceSelector")?.value;
  const svc = f.get("servicesSelector")?.value;
  if (!r.isNull(ns)) out.namespaceSelector = parseLabelSelector(r, ns!);
  if (!r.isNull(svc)) out.servicesSelector = parseLabelSelector(r, svc!);
  return out;
}
