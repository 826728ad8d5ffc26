// `npm start`: a single-cluster demo on loopback. Certificates are generated on the fly; two
// node proxies (client workload on 127.0.0.2, echo workload on 127.0.0.3) and an echo app run
// in this process; an application connects through the client proxy's SOCKS5 port to the echo
// service by name, over HBONE (mTLS, HTTP/2 CONNECT). Then it keeps serving.

import net from "node:net";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { createPluginCa } from "./identity/ca.js";
import { startProxy, type Mesh } from "./app.js";
import { socks5Connect } from "./socks5-client.js";
import { setLevel } from "./log.js";

/** The embedded default config (ztunnel's local format); ECHO_PORT is filled in at start. */
export const DEMO_CONFIG = `# hbone-wasm demo mesh: one cluster, two workloads, one service
workloads:
  - uid: demo//v1/Pod/default/sleep
    name: sleep
    namespace: default
    serviceAccount: sleep
    workloadIps: [127.0.0.2]
    protocol: HBONE
    canonicalName: sleep
    canonicalRevision: v1
    workloadName: sleep
    workloadType: pod
    clusterId: demo
  - uid: demo//v1/Pod/default/echo
    name: echo
    namespace: default
    serviceAccount: echo
    workloadIps: [127.0.0.3]
    protocol: HBONE
    canonicalName: echo
    canonicalRevision: v1
    workloadName: echo
    workloadType: pod
    clusterId: demo
    services:
      default/echo.default.svc.cluster.local:
        9000: ECHO_PORT
services:
  - name: echo
    namespace: default
    hostname: echo.default.svc.cluster.local
    vips: [/10.96.0.10]
    ports:
      9000: ECHO_PORT
    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]
`;

async function roundTrip(socks: net.AddressInfo, dest: string, msg: string): Promise<string> {
  const [host, port] = [dest.slice(0, dest.lastIndexOf(":")), Number(dest.slice(dest.lastIndexOf(":") + 1))];
  const s = await socks5Connect({ host: "127.0.0.1", port: socks.port }, host, port);
  s.end(msg);
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

export async function runDemo(durationSec?: number): Promise<void> {
  setLevel((process.env.HBONE_LOG_LEVEL as "debug") ?? "warn");
  const dir = mkdtempSync(join(tmpdir(), "hbone-demo-"));
  const meshes: Mesh[] = [];
  const echo = net.createServer((s) => s.pipe(s));
  try {
    const t0 = Date.now();
    await createPluginCa({ outDir: join(dir, "ca"), trustDomain: "cluster.local", cluster: "demo" });
    console.log(`certificates: Istio plug-in CA for cluster "demo" in ${join(dir, "ca")} (${Date.now() - t0} ms)`);
    echo.listen(0, "127.0.0.3");
    await once(echo, "listening");
    const echoPort = (echo.address() as net.AddressInfo).port;
    const configPath = join(dir, "mesh.yaml");
    writeFileSync(configPath, DEMO_CONFIG.replaceAll("ECHO_PORT", String(echoPort)));
    console.log(`echo app:     127.0.0.3:${echoPort} (workload default/echo, service echo.default.svc.cluster.local:9000)`);

    const common = { config: configPath, caDir: join(dir, "ca"), adminPort: 0, metricsPort: 0, readinessPort: 0 } as const;
    const server = await startProxy({ ...common, workload: "default/echo/echo", inboundPort: 0, socks5Port: false });
    meshes.push(server);
    const client = await startProxy({ ...common, workload: "default/sleep/sleep", inboundPort: 0, socks5Port: 0,
      hbonePort: server.addresses.inbound!.port });
    meshes.push(client);
    const socks = client.addresses.socks5!;
    console.log(`proxy echo:   HBONE 127.0.0.3:${server.addresses.inbound!.port} as ${server.identity}`);
    console.log(`proxy sleep:  SOCKS5 127.0.0.1:${socks.port} as ${client.identity}; admin 127.0.0.1:${client.addresses.admin!.port}, ` +
      `metrics 127.0.0.1:${client.addresses.metrics!.port}/metrics, ready 127.0.0.1:${client.addresses.readiness!.port}/healthz/ready`);

    const reply = await roundTrip(socks, "echo.default.svc.cluster.local:9000", "hello through HBONE");
    console.log(`app -> SOCKS5 -> sleep proxy -> HBONE/mTLS -> echo proxy -> echo app: sent "hello through HBONE", got "${reply}"`);
    const vip = await roundTrip(socks, "10.96.0.10:9000", "by VIP");
    console.log(`the same by service VIP 10.96.0.10:9000: got "${vip}"`);
    const n = 50;
    const t1 = Date.now();
    for (let i = 0; i < n; i++) await roundTrip(socks, "echo.default.svc.cluster.local:9000", `#${i}`);
    const st = client.pool.stats;
    console.log(`${n} more tunnels in ${Date.now() - t1} ms: ${st.dials} HBONE connection(s) dialled (TLS handshakes), ` +
      `${st.reused} checkouts reused a pooled one`);

    if (durationSec === 0) return;
    console.log(durationSec ? `serving for ${durationSec} s…` : "serving; Ctrl-C to stop.");
    await new Promise<void>((resolve) => {
      const keepAlive = setInterval(() => {}, 1 << 30); // listeners are unref'd nowhere, but be explicit
      const stop = () => {
        clearInterval(keepAlive);
        resolve();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      if (durationSec) setTimeout(stop, durationSec * 1000).unref();
    });
    console.log("draining…");
  } finally {
    for (const m of meshes.reverse()) await m.drain(2000);
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
