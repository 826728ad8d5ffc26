// L4 authorization: a table of policy cases with ztunnel's semantics, then end to end: a 401
// for a denied peer (counted with response_flags DENY), and an open tunnel closed when a
// policy change now denies it. Policies come from the config file, as from istiod.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { authorize, type RbacConnection } from "../../host/state/policy.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { Identity } from "../../host/identity/identity.js";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { CertificateAuthority } from "../../host/identity/ca.js";
import { connectHbone } from "../../host/tls/contexts.js";
import { H2Session } from "../../host/h2/session.js";

const SLEEP = new Identity("cluster.local", "default", "sleep");
const OTHER = new Identity("cluster.local", "prod", "api");

function policies(yaml: string) {
  return parseMeshConfig(`policies:\n${yaml}`).policies;
}

const conn = (o: Partial<RbacConnection> = {}): RbacConnection => ({
  source: SLEEP,
  sourceIp: "10.1.2.3",
  destinationIp: "10.9.9.9",
  destinationPort: 9000,
  ...o,
});

describe("authorization policy semantics (table)", () => {
  const cases: [string, string, RbacConnection, boolean][] = [
    ["no policy: allow", "", conn(), true],
    [
      "ALLOW by principal (no spiffe:// prefix)",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]}`,
      conn(),
      true,
    ],
    [
      "ALLOW by principal, another peer: deny",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]}`,
      conn({ source: OTHER }),
      false,
    ],
    [
      "ALLOW with no rules: deny all",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: []}`,
      conn(),
      false,
    ],
    [
      "a matching DENY wins over a matching ALLOW",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [9000]}]]]}
- {name: d, namespace: default, scope: Namespace, action: Deny, rules: [[[{namespaces: [default]}]]]}`,
      conn(),
      false,
    ],
    [
      "a dry-run DENY only reports",
      `
- {name: d, namespace: default, scope: Namespace, action: Deny, dryRun: true, rules: [[[{namespaces: [default]}]]]}`,
      conn(),
      true,
    ],
    [
      "notDestinationPorts: the target port 9999 is not allowed",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{notDestinationPorts: [9999]}]]]}`,
      conn({ destinationPort: 9999 }),
      false,
    ],
    [
      "notDestinationPorts: another port is",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{notDestinationPorts: [9999]}]]]}`,
      conn({ destinationPort: 80 }),
      true,
    ],
    [
      "namespaces never match plaintext (no identity)",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{namespaces: [default]}]]]}`,
      conn({ source: undefined }),
      false,
    ],
    [
      "principal prefix (istiod's x*)",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{principals: ["cluster.local/ns/default/*"]}]]]}`,
      conn(),
      true,
    ],
    [
      "source CIDR",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{sourceIps: [10.0.0.0/8]}]]]}`,
      conn(),
      true,
    ],
    [
      "notSourceIps excludes",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{notSourceIps: [10.1.0.0/16]}]]]}`,
      conn(),
      false,
    ],
    [
      "IPv6 destination CIDR",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{destinationIps: ["fd00::/8"]}]]]}`,
      conn({ destinationIp: "fd00::1:2" }),
      true,
    ],
    [
      "clauses are AND-ed",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}], [{destinationPorts: [80]}]]]}`,
      conn(),
      false,
    ],
    [
      "matches are OR-ed",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [80]}, {destinationPorts: [9000]}]]]}`,
      conn(),
      true,
    ],
    [
      "rules are OR-ed",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [80]}]], [[{sourceIps: [10.1.2.3]}]]]}`,
      conn(),
      true,
    ],
    [
      "fields in one match are AND-ed",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [9000], namespaces: [prod]}]]]}`,
      conn(),
      false,
    ],
    [
      "an all-empty match is skipped (matches nothing)",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{}]]]}`,
      conn(),
      false,
    ],
    [
      "serviceAccounts",
      `
- {name: a, namespace: default, scope: Namespace, action: Allow, rules: [[[{serviceAccounts: [{namespace: default, serviceAccount: sleep}]}]]]}`,
      conn(),
      true,
    ],
  ];
  for (const [name, yaml, c, allowed] of cases) {
    it(name, () => {
      const d = authorize(yaml ? policies(yaml) : [], c);
      expect(d.allowed, d.reason).toBe(allowed);
    });
  }

  it("reports matching dry-run policies", () => {
    const d = authorize(
      policies(`
- {name: d, namespace: default, scope: Namespace, action: Deny, dryRun: true, rules: [[[{namespaces: [default]}]]]}`),
      conn(),
    );
    expect(d.dryRun).toEqual(["default/d"]);
  });

  it("applies Global, same-namespace and selected policies only", () => {
    const state = new ProxyState();
    new ProxyStateUpdater(state).apply(
      parseMeshConfig(`
workloads:
  - {uid: a, name: a, namespace: default, workloadIps: [10.0.0.1], authorizationPolicies: [default/picked]}
  - {uid: b, name: b, namespace: default, workloadIps: [10.0.0.2]}
policies:
  - {name: g, namespace: istio-system, scope: Global, action: Deny, rules: []}
  - {name: n, namespace: default, scope: Namespace, action: Deny, rules: []}
  - {name: other, namespace: prod, scope: Namespace, action: Deny, rules: []}
  - {name: picked, namespace: default, scope: WorkloadSelector, action: Deny, rules: []}
`),
    );
    const names = (ip: string) =>
      state
        .policiesFor(state.workloadByIp(ip)!)
        .map((p) => p.name)
        .sort();
    expect(names("10.0.0.1")).toEqual(["g", "n", "picked"]);
    expect(names("10.0.0.2")).toEqual(["g", "n"]);
  });
});

describe("authorization end to end", () => {
  let fx: MeshFixture;
  let a: Mesh, b: Mesh;
  let original: string;
  beforeAll(async () => {
    fx = await meshFixture();
    original = readFileSync(fx.configPath, "utf8");
    // Only sleep may reach echo.
    writeFileSync(
      fx.configPath,
      original +
        `policies:
  - name: only-sleep
    namespace: default
    scope: Namespace
    action: Allow
    rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]
`,
    );
    b = await fx.proxy({ workload: "default/echo/echo" });
    a = await fx.proxy({ workload: "default/sleep/sleep", hbonePort: b.addresses.inbound!.port });
  });
  afterAll(async () => fx?.close());

  it("answers 401 to a peer no policy allows, and counts it with response_flags DENY", async () => {
    const ca = await CertificateAuthority.load(fx.caDir);
    const cert = await ca.issue(new Identity("cluster.local", "default", "intruder"));
    const { socket } = await connectHbone({
      host: "127.0.0.3",
      port: b.addresses.inbound!.port,
      certificate: cert,
      expected: [new Identity("cluster.local", "default", "echo")],
    });
    const s = H2Session.client(socket);
    try {
      const stream = await s.connect(`127.0.0.3:${fx.echoPort}`);
      expect(stream.status).toBe(401);
    } finally {
      s.destroy();
    }
    const text = await (await fetch(`http://127.0.0.1:${b.addresses.metrics!.port}/metrics`)).text();
    expect(text).toMatch(
      /istio_tcp_connections_failed_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/intruder"[^}]*response_flags="DENY"[^}]*\} 1/,
    );
    // The allowed peer gets through.
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    t.end("ok");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("ok");
  });

  it("closes an open tunnel that a policy change now denies", async () => {
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    const closed = new Promise<void>((r) => t.on("close", () => r()));
    t.on("error", () => {});
    t.write("before");
    await new Promise((r) => t.once("data", r));
    writeFileSync(
      fx.configPath,
      original +
        `policies:
  - name: no-sleep
    namespace: default
    scope: Namespace
    action: Deny
    rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]
`,
    );
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(3000);
    await expect(a.connect("echo.default.svc.cluster.local:9000")).rejects.toMatchObject({ status: 401 });
  });
});
