// A small mesh on loopback for proxy tests: a plug-in CA, an echo app and a half-close app on
// 127.0.0.3, a config file (ztunnel's local format) with workloads sleep (127.0.0.2) and echo
// (127.0.0.3) and service echo.default.svc.cluster.local (VIP 10.96.0.10), and proxies.

import net from "node:net";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { createPluginCa } from "../../host/identity/ca.js";
import { startProxy, type Mesh, type ProxyOptions } from "../../host/app.js";

export interface MeshFixture {
  dir: string;
  caDir: string;
  configPath: string;
  echoPort: number;
  halfPort: number;
  config(extra?: string): string;
  proxy(o: Partial<ProxyOptions> & { workload: string }): Promise<Mesh>;
  close(): Promise<void>;
}

/** A config file tail: a DENY of every connection from sleep (appended to meshYaml's). */
export const DENY_SLEEP_YAML = `policies:
  - name: no-sleep
    namespace: default
    scope: Namespace
    action: Deny
    rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]
`;

export function meshYaml(echoPort: number, halfPort: number, echoSa = "echo"): string {
  return `workloads:
  - uid: test//v1/Pod/default/sleep
    name: sleep
    namespace: default
    serviceAccount: sleep
    workloadIps: [127.0.0.2]
    protocol: HBONE
    clusterId: test
  - uid: test//v1/Pod/default/echo
    name: echo
    namespace: default
    serviceAccount: ${echoSa}
    workloadIps: [127.0.0.3]
    protocol: HBONE
    clusterId: test
    services:
      default/echo.default.svc.cluster.local:
        9000: ${echoPort}
        9001: ${halfPort}
  - uid: test//v1/Pod/default/legacy
    name: legacy
    namespace: default
    workloadIps: [127.0.0.4]
    protocol: TCP
services:
  - name: echo
    namespace: default
    hostname: echo.default.svc.cluster.local
    vips: [/10.96.0.10]
    ports:
      9000: ${echoPort}
      9001: ${halfPort}
    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]
`;
}

export async function meshFixture(): Promise<MeshFixture> {
  const dir = mkdtempSync(join(tmpdir(), "hbone-test-"));
  const caDir = join(dir, "ca");
  await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "test" });
  const echo = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  echo.listen(0, "127.0.0.3");
  await once(echo, "listening");
  // Half-close app: reads until FIN, then answers how much it got and closes.
  const half = net.createServer((s) => {
    let n = 0;
    s.on("data", (d) => (n += d.length));
    s.on("end", () => s.end(`got ${n} bytes`));
    s.on("error", () => {});
  });
  half.listen(0, "127.0.0.3");
  await once(half, "listening");
  const echoPort = (echo.address() as net.AddressInfo).port;
  const halfPort = (half.address() as net.AddressInfo).port;
  const configPath = join(dir, "mesh.yaml");
  writeFileSync(configPath, meshYaml(echoPort, halfPort));
  const meshes: Mesh[] = [];
  return {
    dir,
    caDir,
    configPath,
    echoPort,
    halfPort,
    config: () => configPath,
    async proxy(o) {
      const m = await startProxy({
        config: configPath,
        caDir,
        inboundPort: 0,
        socks5Port: false,
        adminPort: 0,
        metricsPort: 0,
        readinessPort: 0,
        ...o,
      });
      meshes.push(m);
      return m;
    },
    async close() {
      for (const m of meshes) await m.close();
      echo.close();
      half.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
