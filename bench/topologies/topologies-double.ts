// The cross-network (double HBONE) topologies of the proxy benchmarks: the source proxy's tunnel
// goes through the destination network's east-west gateway, with an inner TLS + HTTP/2 session
// (end to end, source proxy <-> destination proxy) inside an outer CONNECT stream to the gateway:
//
//   hbone-double       client app -> `hbone proxy` (network1) -> `hbone gateway` (network2)
//                      -> `hbone proxy` (network2, inbound) -> server app
//   node-http2-double  the same nesting on node:http2 (peers/node-http2-proxy.ts outbound-via,
//                      gateway, inbound)
//   tls-pipe-double    the floor of both: TLS inside TLS with no HTTP/2 (peers/tls-pipe.ts relay-via), the
//                      outer TLS ended by a terminator that copies the bytes on (what a gateway must do at
//                      least), the inner one by a terminator in front of the server app
//
// The gateway listens on GATEWAY_IP; the destination proxy on the server's IP, the source proxy's
// forward listeners on 127.0.0.1. Compared with hbone-wasm / node-http2 (single HBONE) in the same run.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./procs.js";
import { repoRoot } from "../harness.js";
import { peer, startProxy } from "./peer-spawn.js";
import { NODE_FLAGS } from "../../host/runtime-config.js";
import type { AppPorts, BuildContext, Endpoint, Proxy } from "./topologies.js";

export const GATEWAY_IP = "127.0.0.4";
const SERVER_IP = "127.0.0.3";
const CLIENT_IP = "127.0.0.2";
const SERVICE = "server.default.svc.cluster.local";

const portsOf = (a: AppPorts) => [a.sink, a.rr, a.ping];

/**
 * A network's config as its istiod would send it: its own workloads with addresses, the server
 * behind network2's gateway (address-less from network1), the server's app ports as a global service.
 */
export function doubleMeshConfig(network: "network1" | "network2", app: AppPorts, gatewayPort: number): string {
  const ports = portsOf(app);
  const w = (
    uid: string,
    name: string,
    ns: string,
    sa: string,
    net: string,
    ips: string | null,
    extra: string[] = [],
  ) => [
    `  - uid: ${uid}`,
    `    name: ${name}`,
    `    namespace: ${ns}`,
    `    serviceAccount: ${sa}`,
    "    protocol: HBONE",
    `    clusterId: ${net === "network1" ? "cluster1" : "cluster2"}`,
    `    network: ${net}`,
    ...(ips ? [`    workloadIps: [${ips}]`] : []),
    ...extra,
  ];
  const lines = ["workloads:"];
  if (network === "network1")
    lines.push(...w("cluster1//v1/Pod/default/client", "client", "default", "client", "network1", CLIENT_IP));
  lines.push(
    ...w(
      "cluster2//v1/Pod/default/server",
      "server",
      "default",
      "server",
      "network2",
      network === "network2" ? SERVER_IP : null,
      [
        `    networkGateway: { destination: "network2/${GATEWAY_IP}", hboneMtlsPort: ${gatewayPort} }`,
        "    services:",
        `      default/${SERVICE}:`,
        ...ports.map((p) => `        ${p}: ${p}`),
      ],
    ),
  );
  lines.push(
    ...w(
      "cluster2//v1/Pod/istio-system/eastwest",
      "eastwest",
      "istio-system",
      "istio-eastwestgateway",
      "network2",
      GATEWAY_IP,
    ),
  );
  lines.push(
    "services:",
    "  - name: server",
    "    namespace: default",
    `    hostname: ${SERVICE}`,
    "    vips: [/10.96.0.20]",
    `    ports: { ${ports.map((p) => `${p}: ${p}`).join(", ")} }`,
    "    subjectAltNames: [spiffe://cluster.local/ns/default/sa/server]",
    '    labels: { istio.io/global: "true" }',
  );
  return lines.join("\n") + "\n";
}

/** Starts the three proxies of a double-HBONE topology (or its floor); puts them in `proxies`, source first. */
export async function buildDouble(
  kind: "hbone" | "node-http2" | "tls-pipe",
  ctx: BuildContext,
  proxies: Proxy[],
): Promise<Endpoint[]> {
  const start = (role: Proxy["role"], script: string, args: string[]) =>
    startProxy(ctx, proxies, role, `${kind}-double ${role}`, script, args, kind === "hbone" ? NODE_FLAGS : []);
  if (kind === "tls-pipe") {
    const pipe = peer("tls-pipe.js");
    const term = await start("inbound", pipe, ["terminator", ctx.caDir, SERVER_IP, ...portsOf(ctx.app).map(String)]);
    const termPorts = term.ready.ports as number[];
    const gw = await start("gateway", pipe, [
      "terminator",
      ctx.caDir,
      GATEWAY_IP,
      ...termPorts.map((p) => `${SERVER_IP}:${p}`),
    ]);
    const out = await start("outbound", pipe, [
      "relay-via",
      ctx.caDir,
      ...(gw.ready.ports as number[]).map((p) => `${GATEWAY_IP}:${p}`),
    ]);
    return (out.ready.ports as number[]).map((port) => ({ host: "127.0.0.1", port }));
  }
  if (kind === "node-http2") {
    const h2 = peer("node-http2-proxy.js");
    const inb = await start("inbound", h2, ["inbound", ctx.caDir, SERVER_IP]);
    const gw = await start("gateway", h2, ["gateway", ctx.caDir, GATEWAY_IP]);
    const out = await start("outbound", h2, [
      "outbound-via",
      ctx.caDir,
      `${GATEWAY_IP}:${gw.ready.port as number}`,
      `${SERVER_IP}:${inb.ready.port as number}`,
      ...portsOf(ctx.app).map((p) => `${SERVER_IP}:${p}`),
    ]);
    return (out.ready.ports as number[]).map((port) => ({ host: "127.0.0.1", port }));
  }
  // Listen ports are chosen here: the configs name the gateway's port, and `--forward` refuses port 0.
  const gwPort = await freePort(GATEWAY_IP);
  const destPort = await freePort(SERVER_IP);
  const cfg = (n: "network1" | "network2") => {
    const f = join(ctx.dir, `double-${n}.yaml`);
    writeFileSync(f, doubleMeshConfig(n, ctx.app, gwPort));
    return f;
  };
  const cli = join(repoRoot(), "dist", "host", "cli.js");
  const common = (network: "network1" | "network2") => [
    "--config",
    cfg(network),
    "--ca-dir",
    ctx.caDir,
    "--cluster",
    network === "network1" ? "cluster1" : "cluster2",
    "--network",
    network,
    "--socks5-port",
    "off",
    "--admin-port",
    "off",
    "--metrics-port",
    "off",
    "--readiness-port",
    "off",
    "--drain-timeout",
    "1",
  ];
  const server = ["--workload", "default/server/server", "--inbound-port", String(destPort)];
  await start("inbound", cli, ["proxy", ...common("network2"), ...server]);
  await start("gateway", cli, [
    "gateway",
    ...common("network2"),
    "--workload",
    "istio-system/eastwest/istio-eastwestgateway",
    "--inbound-port",
    String(gwPort),
    "--hbone-port",
    String(destPort),
  ]);
  const listen: number[] = [];
  for (let k = 0; k < 3; k++) listen.push(await freePort("127.0.0.1"));
  await start("outbound", cli, [
    "proxy",
    ...common("network1"),
    "--workload",
    "default/client/client",
    "--inbound-port",
    "off",
    ...portsOf(ctx.app).flatMap((p, k) => ["--forward", `127.0.0.1:${listen[k]}=${SERVICE}:${p}`]),
  ]);
  return listen.map((port) => ({ host: "127.0.0.1", port }));
}
