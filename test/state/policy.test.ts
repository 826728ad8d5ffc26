// L4 authorization policy evaluation with ztunnel's semantics, as a table (no processes): which connections a set
// of policies from the config file allows, dry-run reports, and which policies apply to a workload.

import { describe, expect, it } from "vitest";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { authorize, type RbacConnection } from "../../host/state/policy.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { Identity } from "../../host/identity/identity.js";

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
