// deploy/: every manifest parses, validates offline against the Kubernetes API schemas
// (kubernetes-models: the OpenAPI schemas compiled to validators, plus its TypeScript types for
// unknown-field typos the schemas let through), kustomize renders exactly these files, and the
// env names, ports, paths and capabilities are the ones host/runtime-config.ts declares.

import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { execFileSync } from "node:child_process";
import ts from "typescript";
import YAML from "yaml";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { Service } from "kubernetes-models/v1/Service";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { contractErrors, type K8sObject } from "./contract.js";
import { ENV } from "../../host/runtime-config.js";
import { cliFlags, checkCommand } from "../helpers/cli-flags.js";

const ROOT = join(new URL(".", import.meta.url).pathname, "../..");
const DEPLOY = join(ROOT, "deploy");

/** kind -> [model class, its module and interface for the type check]. */
const MODELS = {
  ServiceAccount: [ServiceAccount, "kubernetes-models/v1/ServiceAccount", "IServiceAccount"],
  Service: [Service, "kubernetes-models/v1/Service", "IService"],
  DaemonSet: [DaemonSet, "kubernetes-models/apps/v1/DaemonSet", "IDaemonSet"],
  Deployment: [Deployment, "kubernetes-models/apps/v1/Deployment", "IDeployment"],
  PodDisruptionBudget: [PodDisruptionBudget, "kubernetes-models/policy/v1/PodDisruptionBudget", "IPodDisruptionBudget"],
} as const;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

const files = yamlFiles(DEPLOY).filter((f) => !f.endsWith("kustomization.yaml"));
const docs: { file: string; obj: K8sObject }[] = files.flatMap((file) =>
  YAML.parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return { file, obj: d.toJS() as K8sObject };
  }),
);

describe("deploy/ manifests", () => {
  it("parse and validate against the Kubernetes API schemas", () => {
    expect(docs.length).toBeGreaterThanOrEqual(6);
    for (const { file, obj } of docs) {
      const m = MODELS[obj.kind as keyof typeof MODELS];
      expect(m, `${file}: kind ${obj.kind} has no model here`).toBeDefined();
      expect(() => new m[0](obj as never).validate(), relative(ROOT, file)).not.toThrow();
    }
  });

  it("the validator does refuse a malformed object", () => {
    const ds = structuredClone(docs.find((d) => d.obj.kind === "DaemonSet")!.obj);
    ds.spec.template.spec.containers[0].ports[0].containerPort = "15020";
    expect(() => new DaemonSet(ds as never).validate()).toThrow(/containerPort must be integer/);
  });

  it("have no unknown fields (type-checked against the Kubernetes API types)", () => {
    // Each manifest as an object literal typed with its model's interface: excess-property checks
    // catch a misspelt field at any depth, which the JSON schemas (open objects) accept.
    const render = (list: typeof docs) =>
      list
        .map(({ obj }, i) => {
          const m = MODELS[obj.kind as keyof typeof MODELS];
          return `import type { ${m[2]} as T${i} } from "${m[1]}";\nexport const o${i}: T${i} = ${JSON.stringify(obj)};`;
        })
        .join("\n");
    const diagnostics = (source: string) => {
      const file = join(ROOT, "test/deploy/__rendered__.ts");
      const options: ts.CompilerOptions = {
        strict: true,
        noEmit: true,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        skipLibCheck: true,
        types: [],
      };
      const host = ts.createCompilerHost(options);
      const getSourceFile = host.getSourceFile.bind(host);
      host.getSourceFile = (f, lang, ...rest) =>
        f === file ? ts.createSourceFile(f, source, lang) : getSourceFile(f, lang, ...rest);
      const fileExists = host.fileExists.bind(host);
      host.fileExists = (f) => f === file || fileExists(f);
      const program = ts.createProgram([file], options, host);
      return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    };
    expect(diagnostics(render(docs))).toEqual([]);
    // And the check can fail: a misspelt field deep in a pod spec.
    const typo = structuredClone(docs.find((d) => d.obj.kind === "DaemonSet")!);
    typo.obj.spec.template.spec.containers[0].securityContext.capabilitiez = {};
    expect(diagnostics(render([typo])).join("\n")).toMatch(/capabilitiez/);
  });

  it("kustomize renders exactly these files", (ctx) => {
    const kustom = YAML.parse(readFileSync(join(DEPLOY, "kustomization.yaml"), "utf8")) as { resources: string[] };
    expect([...kustom.resources].sort()).toEqual(files.map((f) => relative(DEPLOY, f)).sort());
    let out: string;
    try {
      out = execFileSync("kubectl", ["kustomize", DEPLOY], { encoding: "utf8", timeout: 20_000 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || process.env.CI === "true") throw err;
      console.warn("SKIP: kubectl not installed, kustomize render not checked");
      ctx.skip();
      return;
    }
    const rendered = YAML.parseAllDocuments(out).map((d) => d.toJS() as K8sObject);
    expect(rendered.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      docs.map((d) => `${d.obj.kind}/${d.obj.metadata.name}`).sort(),
    );
    expect(contractErrors(rendered)).toEqual([]);
  });

  it("set exactly the env, ports, paths and capabilities host/runtime-config.ts declares", () => {
    expect(contractErrors(docs.map((d) => d.obj))).toEqual([]);
  });

  it("the contract check catches each kind of drift", () => {
    const mutate = (f: (ds: any, gw: any) => void) => {
      const copy = structuredClone(docs.map((d) => d.obj));
      f(
        copy.find((o) => o.kind === "DaemonSet")!.spec.template.spec,
        copy.find((o) => o.kind === "Deployment")!.spec.template.spec,
      );
      return contractErrors(copy).join("\n");
    };
    expect(mutate((ds) => ds.containers[0].env.push({ name: "ZTUNNEL_CPU_LIMIT", value: "2" }))).toMatch(
      /ZTUNNEL_CPU_LIMIT is not read by the proxy/,
    );
    expect(
      mutate((ds) => {
        ds.containers[0].env = ds.containers[0].env.filter((e: { name: string }) => e.name !== "NODE_NAME");
      }),
    ).toMatch(/NODE_NAME is required and missing/);
    expect(
      mutate((ds) => {
        ds.containers[0].env.find((e: { name: string }) => e.name === "INSTANCE_IP").valueFrom.fieldRef.fieldPath =
          "status.hostIP";
      }),
    ).toMatch(/INSTANCE_IP must come from fieldRef status.podIP/);
    expect(mutate((ds) => ds.containers[0].securityContext.capabilities.add.push("SYS_PTRACE"))).toMatch(
      /capabilities must be/,
    );
    expect(mutate((ds) => ds.containers[0].ports.push({ containerPort: 9901 }))).toMatch(/port 9901 is not one/);
    expect(
      mutate((ds) => {
        ds.volumes[0].projected.sources[0].serviceAccountToken.audience = "api";
      }),
    ).toMatch(/audience istio-ca/);
    expect(
      mutate((ds) => {
        ds.terminationGracePeriodSeconds = 60;
      }),
    ).toMatch(/TERMINATION_GRACE_PERIOD_SECONDS/);
    expect(
      mutate((_ds, gw) => {
        gw.containers[0].env.find((e: { name: string }) => e.name === "NETWORK").value = "other";
      }),
    ).toMatch(/topology.istio.io\/network must be NETWORK/);
    expect(
      mutate((_ds, gw) => {
        gw.containers[0].securityContext.capabilities.add = ["NET_ADMIN"];
      }),
    ).toMatch(/capabilities must be \[\]/);
  });

  it("pass only flags the CLI has", () => {
    const flags = cliFlags();
    for (const { obj } of docs.filter((d) => d.obj.kind === "DaemonSet" || d.obj.kind === "Deployment")) {
      const args = obj.spec.template.spec.containers[0].args as string[];
      const r = checkCommand({ where: `${obj.kind}/${obj.metadata.name} args`, words: args }, flags);
      expect(r).toEqual({ errors: [] });
    }
  });

  it("every variable runtime-config.ts declares is documented and uniquely named", () => {
    const names = ENV.flatMap((e) => [e.name, ...(e.aliases ?? [])]);
    expect(new Set(names).size).toBe(names.length);
    for (const e of ENV) expect(e.doc.length, e.name).toBeGreaterThan(5);
  });
});
