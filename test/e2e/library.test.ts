// The README's library example, run as written (paths and ports made test-safe): one process
// accepts tunnels in-process as workload echo, another opens one as workload sleep.

import { afterAll, expect, it } from "vitest";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginCa, startProxy, type Mesh } from "../../host/index.js";

const dir = mkdtempSync(join(tmpdir(), "hbone-lib-"));
const meshes: Mesh[] = [];
afterAll(async () => {
  for (const m of meshes) await m.close();
  rmSync(dir, { recursive: true, force: true });
});

it("opens and accepts a tunnel through the library API", async () => {
  // --- README example starts here ---
  await createPluginCa({ outDir: join(dir, "ca"), trustDomain: "cluster.local", cluster: "c1" });
  writeFileSync(
    join(dir, "mesh.yaml"),
    `
workloads:
  - { uid: c1//Pod/default/sleep, name: sleep, namespace: default, serviceAccount: sleep,
      workloadIps: [127.0.0.2], protocol: HBONE }
  - { uid: c1//Pod/default/echo, name: echo, namespace: default, serviceAccount: echo,
      workloadIps: [127.0.0.3], protocol: HBONE,
      services: { default/echo.default.svc.cluster.local: { 9000: 9000 } } }
services:
  - { name: echo, namespace: default, hostname: echo.default.svc.cluster.local,
      vips: [/10.96.0.10], ports: { 9000: 9000 } }
`,
  );
  const off = { socks5Port: false, adminPort: false, metricsPort: false, readinessPort: false } as const;
  const echo = await startProxy({
    config: join(dir, "mesh.yaml"),
    workload: "default/echo/echo",
    caDir: join(dir, "ca"),
    inboundPort: 0,
    ...off,
  });
  echo.accept(9000, (stream, info) => stream.end(`hello ${info.peer}`)); // tunnels to port 9000 come here

  const sleep = await startProxy({
    config: join(dir, "mesh.yaml"),
    workload: "default/sleep/sleep",
    caDir: join(dir, "ca"),
    inboundPort: false,
    hbonePort: echo.addresses.inbound!.port,
    ...off,
  });
  const tunnel = await sleep.connect("echo.default.svc.cluster.local:9000"); // a Duplex
  tunnel.end();
  let reply = "";
  for await (const chunk of tunnel) reply += chunk;
  // --- README example ends here ---
  meshes.push(sleep, echo);
  expect(reply).toBe("hello spiffe://cluster.local/ns/default/sa/sleep");
});
