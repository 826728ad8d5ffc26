// The east-west gateway Deployment's container, started as the kubelet would start it: its args and
// env (fieldRefs filled with a pod's values, $(VAR) expanded as Kubernetes does, KUBERNETES_SERVICE_HOST
// set as in every pod) run the real CLI. Only what cannot exist here is swapped: the config and CA come
// from the test mesh instead of istiod (XDS_ADDRESS / CA_ADDRESS emptied, LOCAL_XDS_PATH / HBONE_CA_DIR
// set, the cluster name the test mesh's), ports are 0 and listeners stay on loopback. It must get
// ready, behave as a gateway (not a node proxy), and drain on SIGTERM within the pod's grace period.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import { drain } from "../helpers/net.js";
import type { Mesh } from "../../host/app.js";

const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));
const manifest = YAML.parse(readFileSync(new URL("../../deploy/eastwest/deployment.yaml", import.meta.url), "utf8"));
const pod = manifest.spec.template.spec;
const container = pod.containers[0] as {
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[];
};

/** The pod this runs as: the fixture's echo workload on 127.0.0.3 stands in for the gateway pod. */
const FIELDS: Record<string, string> = {
  "metadata.name": "echo",
  "metadata.namespace": "default",
  "spec.nodeName": "node-1",
  "status.podIP": "127.0.0.3",
  "spec.serviceAccountName": "echo",
};

/** The container's environment as the kubelet builds it: in order, $(NAME) refers to earlier entries. */
function kubeletEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env) {
    if (e.valueFrom) env[e.name] = FIELDS[e.valueFrom.fieldRef.fieldPath]!;
    else env[e.name] = (e.value ?? "").replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
  }
  return env;
}

let fx: MeshFixture;
let child: ChildProcess;
let client: Mesh;
let ready: { inbound: string; readiness: number; metrics: number };
let stdout = "";
let stderr = "";

beforeAll(async () => {
  fx = await meshFixture();
  // The cluster name is the operator's to set: here the test mesh's.
  const env = {
    ...kubeletEnv(),
    ISTIO_META_CLUSTER_ID: "test",
    KUBERNETES_SERVICE_HOST: "10.96.0.1",
    XDS_ADDRESS: "",
    CA_ADDRESS: "",
    LOCAL_XDS_PATH: fx.configPath,
    HBONE_CA_DIR: fx.caDir,
    PATH: process.env.PATH ?? "",
  };
  const args = container.args.map((a) => (a === "0.0.0.0" ? "127.0.0.1" : a));
  child = spawn(
    process.execPath,
    [CLI, ...args, "--inbound-port", "0", "--admin-port", "0", "--metrics-port", "0", "--readiness-port", "0"],
    { stdio: ["ignore", "pipe", "pipe"], env },
  );
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const deadline = Date.now() + 30_000;
  while (!stdout.includes("hbone gateway ready")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not start:\n${stdout}${stderr}`);
    await Promise.race([once(child.stdout!, "data"), once(child, "exit")]);
  }
  ready = JSON.parse(/hbone gateway ready (\{.*\})/.exec(stdout)![1]!);
  client = await fx.proxy({
    workload: "default/sleep/sleep",
    inboundPort: false,
    hbonePort: Number(ready.inbound.split(":")[1]),
  });
}, 60_000);
afterAll(async () => {
  child?.kill("SIGKILL");
  await fx?.close();
});

describe("the gateway Deployment's container env and args", () => {
  it("resolve to this pod's workload and become ready", async () => {
    expect(kubeletEnv().PROXY_WORKLOAD_INFO).toBe("default/echo/echo");
    expect(ready.inbound).toMatch(/^127\.0\.0\.3:\d+$/);
    expect((await fetch(`http://127.0.0.1:${ready.readiness}/healthz/ready`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ready.metrics}/metrics`)).status).toBe(200);
  });

  it("run gateway mode: an IP authority for the pod itself is refused, as an east-west gateway does", async () => {
    // The same tunnel to a node proxy of echo is dialled through to echo's app (200); the gateway takes
    // only svc-host:port and answers 400, so this shows `args: [gateway]` took effect.
    const err = await client.connect("echo.default.svc.cluster.local:9000").then(
      (t) => {
        t.destroy();
        return undefined;
      },
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^HBONE CONNECT 127\.0\.0\.3:\d+ answered 400$/);
    const direct = await fx.proxy({ workload: "default/echo/echo" });
    const viaProxy = await fx.proxy({
      workload: "default/sleep/sleep",
      inboundPort: false,
      hbonePort: direct.addresses.inbound!.port,
    });
    const t = await viaProxy.connect("echo.default.svc.cluster.local:9000");
    t.end("x");
    expect((await drain(t)).bytes).toBe(1);
  });

  it("drain on SIGTERM within the pod's grace period", async () => {
    const grace = Number(kubeletEnv().TERMINATION_GRACE_PERIOD_SECONDS);
    expect(grace).toBe(pod.terminationGracePeriodSeconds);
    const t0 = Date.now();
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan((grace - 1) * 1000);
    expect(stdout).toMatch(/"msg":"draining"/);
  });
});
