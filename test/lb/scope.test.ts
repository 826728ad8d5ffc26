// istiod's decisions the load balancer takes as input: whether a service is global (serviceScopeConfigs, parsed
// from YAML) and the loadBalancer of a Kubernetes Service (trafficDistribution, internalTrafficPolicy).

import { describe, expect, test } from "vitest";
import { type Service, type ServiceScopeConfig } from "../../host/model/index.js";
import { parseMeshConfig } from "../../host/xds/local-format.js";
import { LoadBalancer, isGlobalService } from "../../host/lb/index.js";
import { pickEndpoint } from "./oracle.js";
import { getCodec } from "../../host/wasm/codec.js";
import { VARIANTS, client, meshYaml, service, stateOf } from "./fixture.js";

/** A service labelled `labels` in namespace `ns`, and the scope configs, both parsed from YAML. */
function parsed(labels: string, scopes?: string, ns = "apps"): { svc: Service; scopes: ServiceScopeConfig[] } {
  const cfg = parseMeshConfig(
    `services:\n- {name: s, namespace: ${ns}, hostname: s.example.com, labels: ${labels}}\n` +
      (scopes ? `serviceScopeConfigs:\n${scopes}\n` : ""),
  );
  return { svc: cfg.services[0]!, scopes: cfg.serviceScopeConfigs! };
}

const expr = (key: string, operator: string, values?: string[]) =>
  `- servicesSelector: {matchExpressions: [{key: ${key}, operator: ${operator}` +
  (values ? `, values: [${values.join(", ")}]` : "") +
  `}]}\n  scope: GLOBAL`;

describe("isGlobalService", () => {
  test("default: the istio.io/global=true label", () => {
    expect(isGlobalService(parsed(`{istio.io/global: "true"}`).svc, undefined)).toBe(true);
    const { svc, scopes } = parsed(`{istio.io/global: "true"}`);
    expect(scopes).toEqual([]);
    expect(isGlobalService(svc, scopes)).toBe(true);
    expect(isGlobalService(parsed(`{istio.io/global: "false"}`).svc, undefined)).toBe(false);
    expect(isGlobalService(parsed(`{}`).svc, undefined)).toBe(false);
  });

  test("matchLabels: every label must match", () => {
    const scopes = `- servicesSelector: {matchLabels: {a: "1", b: "2"}}\n  scope: GLOBAL`;
    const global = (labels: string) => {
      const p = parsed(labels, scopes);
      return isGlobalService(p.svc, p.scopes);
    };
    expect(global(`{a: "1", b: "2", c: "3"}`)).toBe(true);
    expect(global(`{a: "1"}`)).toBe(false);
    expect(global(`{a: "1", b: "3"}`)).toBe(false);
  });

  test.each([
    ["In", ["web", "api"], `{tier: web}`, true],
    ["In", ["web", "api"], `{tier: db}`, false],
    ["In", ["web"], `{}`, false],
    ["NotIn", ["db"], `{tier: web}`, true],
    ["NotIn", ["db"], `{tier: db}`, false],
    ["NotIn", ["db"], `{}`, true],
    ["Exists", undefined, `{tier: ""}`, true],
    ["Exists", undefined, `{}`, false],
    ["DoesNotExist", undefined, `{}`, true],
    ["DoesNotExist", undefined, `{tier: web}`, false],
    // Invalid requirements make the selector select nothing (istiod skips the config).
    ["In", [], `{tier: web}`, false],
    ["NotIn", [], `{tier: web}`, false],
    ["Exists", ["web"], `{tier: web}`, false],
    ["DoesNotExist", ["web"], `{}`, false],
  ] as const)("matchExpressions %s %j on %s: %s", (op, values, labels, want) => {
    const p = parsed(labels, expr("tier", op, values ? [...values] : undefined));
    expect(isGlobalService(p.svc, p.scopes)).toBe(want);
  });

  test("AND inside one selector, OR across configs; LOCAL configs decide nothing", () => {
    const and = [
      "- servicesSelector:",
      "    matchLabels: {team: a}",
      "    matchExpressions: [{key: tier, operator: In, values: [web]}, {key: legacy, operator: DoesNotExist}]",
      "  scope: GLOBAL",
    ].join("\n");
    const g = (labels: string, scopes: string) => {
      const p = parsed(labels, scopes);
      return isGlobalService(p.svc, p.scopes);
    };
    expect(g(`{team: a, tier: web}`, and)).toBe(true);
    expect(g(`{team: a, tier: web, legacy: "y"}`, and)).toBe(false);
    expect(g(`{team: b, tier: web}`, and)).toBe(false);
    const or = `${expr("tier", "In", ["web"])}\n${expr("team", "In", ["b"])}`;
    expect(g(`{tier: web}`, or)).toBe(true);
    expect(g(`{team: b}`, or)).toBe(true);
    expect(g(`{team: c}`, or)).toBe(false);
    const localFirst = `- servicesSelector: {matchLabels: {tier: web}}\n  scope: LOCAL\n${expr("tier", "In", ["web"])}`;
    expect(g(`{tier: web}`, localFirst)).toBe(true);
    expect(g(`{tier: web}`, `- servicesSelector: {matchLabels: {tier: web}}\n  scope: LOCAL`)).toBe(false);
    // An empty selector selects every service.
    expect(g(`{}`, `- scope: GLOBAL`)).toBe(true);
  });

  test("namespaceSelector: matched against the namespace's labels; unknown namespaces are not selected", () => {
    const scopes = [
      "- namespaceSelector: {matchLabels: {mesh: shared}}",
      "  servicesSelector: {matchExpressions: [{key: tier, operator: Exists}]}",
      "  scope: GLOBAL",
    ].join("\n");
    const nsLabels = (ns: string) => ({ shared: { mesh: "shared" }, private: { mesh: "no" } })[ns];
    const g = (ns: string, labels: string, known = nsLabels) => {
      const p = parsed(labels, scopes, ns);
      return isGlobalService(p.svc, p.scopes, known);
    };
    expect(g("shared", `{tier: web}`)).toBe(true);
    expect(g("shared", `{}`)).toBe(false);
    expect(g("private", `{tier: web}`)).toBe(false);
    expect(g("elsewhere", `{tier: web}`)).toBe(false);
    expect(g("shared", `{tier: web}`, () => undefined)).toBe(false);
    // An empty namespace selector needs no namespace labels.
    const p = parsed(`{tier: web}`, "- namespaceSelector: {}\n  scope: GLOBAL", "elsewhere");
    expect(isGlobalService(p.svc, p.scopes)).toBe(true);
  });
});

test("pickEndpoint and LoadBalancer: scopes from the config or as given, namespace labels as given", () => {
  const scopes = "- namespaceSelector: {matchLabels: {mesh: shared}}\n  scope: GLOBAL";
  // A remote endpoint in another cluster: reachable only when the service is global.
  const state = stateOf(
    meshYaml([{ name: "remote", network: "n2", cluster: "c2", address: "none", gateway: true }], { scopes }),
  );
  const svc = service(state, "all");
  const nsLabels = (ns: string) => (ns === "default" ? { mesh: "shared" } : undefined);
  const js = (opts = {}) => pickEndpoint(state, client(state), svc, 80, opts)?.workload.name;
  expect(js()).toBeUndefined();
  expect(js({ namespaceLabels: nsLabels })).toBe("remote");
  expect(js({ namespaceLabels: nsLabels, scopes: [] })).toBeUndefined();
  expect(js({ scopes: [{ scope: "GLOBAL" }] })).toBe("remote");
  for (const variant of VARIANTS) {
    const codec = getCodec(variant);
    const local = new LoadBalancer(state, { codec });
    const global = new LoadBalancer(state, { codec, namespaceLabels: nsLabels });
    expect(local.pick(client(state), svc, 80)).toBeUndefined();
    expect(global.pick(client(state), svc, 80)?.workload.name).toBe("remote");
    local.close();
    global.close();
  }
});
