#!/usr/bin/env node
// `hbone` command line: proxy (the node proxy), certs (a plug-in CA), start (the demo `npm start` runs).

import { parseArgs } from "node:util";
import { getCodec } from "./wasm/codec.js";
import { startProxy, type ForwardListener, type ProxyOptions } from "./app.js";
import { certsCommand } from "./identity/certs-command.js";
import { parseListenAddress } from "./proxy/authority.js";
import { runDemo } from "./demo.js";
import { logger } from "./log.js";
import { VERSION } from "./version.js";

const log = logger("cli");

const USAGE = `usage: hbone <command> [options]

commands:
  proxy    run a node proxy for one workload
           --config FILE             mesh config in ztunnel's local format (env LOCAL_XDS_PATH)
           --workload NS/NAME/SA     the workload served (env PROXY_WORKLOAD_INFO)
           --ca-dir DIR              Istio plug-in CA directory that signs our certificate (env HBONE_CA_DIR)
           --xds-address URL         config from istiod over Delta ADS instead of --config (env XDS_ADDRESS),
                                     e.g. https://istiod.istio-system.svc:15012
           --ca-address URL          certificate from istiod's CA instead of --ca-dir (env CA_ADDRESS)
           --xds-token-file FILE     bearer token for both (/var/run/secrets/tokens/istio-token)
           --root-cert FILE          mesh root for istiod's TLS (/var/run/secrets/istio/root-cert.pem)
           --trust-domain TD         (env TRUST_DOMAIN; default: the workload's, else cluster.local)
           --cluster NAME            (env CLUSTER_ID)      --network NAME   (env NETWORK)
           --inbound-port N          HBONE on the workload's IP (15008)
           --socks5-port N           SOCKS5 on 127.0.0.1 (15080; "off" = none, as for the ports below)
           --admin-port N            127.0.0.1 (15000)     --metrics-port N   (15020)
           --readiness-port N        (15021)               0 picks a free port (printed at start-up)
           --hbone-port N            port of other proxies' HBONE listeners (default: --inbound-port)
           --forward ADDR=DEST       extra listener, e.g. 127.0.0.1:9080=reviews.default.svc.cluster.local:9080
  gateway  run an east-west gateway (multicluster): the same flags as proxy; :15008 on the gateway workload's IP
           routes CONNECT svc-host:port to a local endpoint and passes the inner mTLS through (SOCKS5 off)
  certs    write an Istio plug-in CA: --out DIR --trust-domain TD [--cluster NAME] [--root DIR]
  start    the two-cluster demo on loopback (what npm start runs) [--duration N]
  version  print the version
`;

function port(v: string | undefined, flag: string, dflt: number): number | false {
  if (v === undefined) return dflt;
  if (v === "off") return false;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag}: not a port: ${v}`);
  return n;
}

async function proxy(args: string[], gateway = false): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" }, workload: { type: "string" }, "ca-dir": { type: "string" },
      "trust-domain": { type: "string" }, cluster: { type: "string" }, network: { type: "string" },
      "inbound-port": { type: "string" }, "socks5-port": { type: "string" }, "admin-port": { type: "string" },
      "metrics-port": { type: "string" }, "readiness-port": { type: "string" }, "hbone-port": { type: "string" },
      forward: { type: "string", multiple: true }, "drain-timeout": { type: "string" },
      "xds-address": { type: "string" }, "ca-address": { type: "string" }, "xds-token-file": { type: "string" },
      "root-cert": { type: "string" },
    },
  });
  const env = process.env;
  const config = values.config ?? env.LOCAL_XDS_PATH;
  const workload = values.workload ?? env.PROXY_WORKLOAD_INFO;
  const caDir = values["ca-dir"] ?? env.HBONE_CA_DIR;
  const xdsAddress = values["xds-address"] ?? (env.XDS_ADDRESS || undefined);
  const caAddress = values["ca-address"] ?? (env.CA_ADDRESS || undefined);
  if (!workload || !(config || xdsAddress) || !(caDir || caAddress)) {
    throw new Error("proxy needs --workload, --config or --xds-address, and --ca-dir or --ca-address");
  }
  const forward: ForwardListener[] = (values.forward ?? []).map((f) => {
    const [listen, to] = f.split("=");
    const l = listen ? parseListenAddress(listen) : null;
    if (!l || !to) throw new Error(`--forward: expected ADDR=DEST, got ${f}`);
    return { listen: l, to };
  });
  const hbonePort = values["hbone-port"] !== undefined ? Number(values["hbone-port"]) : undefined;
  const opts: ProxyOptions = {
    config, workload, caDir, forward, xdsAddress, caAddress,
    tokenFile: values["xds-token-file"], rootCertPath: values["root-cert"],
    trustDomain: values["trust-domain"] ?? env.TRUST_DOMAIN,
    cluster: values.cluster ?? env.CLUSTER_ID,
    network: values.network ?? env.NETWORK,
    inboundPort: port(values["inbound-port"], "--inbound-port", 15008),
    socks5Port: gateway && values["socks5-port"] === undefined ? false : port(values["socks5-port"], "--socks5-port", 15080),
    adminPort: port(values["admin-port"], "--admin-port", 15000),
    metricsPort: port(values["metrics-port"], "--metrics-port", 15020),
    readinessPort: port(values["readiness-port"], "--readiness-port", 15021),
    hbonePort,
    drainTimeoutMs: values["drain-timeout"] ? Number(values["drain-timeout"]) * 1000 : undefined,
    gateway,
  };
  const mesh = await startProxy(opts);
  const a = mesh.addresses;
  // One plain line for people and scripts (tests read it); details are in the JSON log.
  console.log(`hbone ${gateway ? "gateway" : "proxy"} ready ${JSON.stringify({
    identity: String(mesh.identity), inbound: a.inbound && `${a.inbound.address}:${a.inbound.port}`,
    socks5: a.socks5?.port, admin: a.admin?.port, metrics: a.metrics?.port, readiness: a.readiness?.port,
    forward: a.forward.map((f) => `${f.address}:${f.port}`),
  })}`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info("draining", { signal: sig });
      void mesh.drain().then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    mesh.onQuit(resolve);
  });
  log.info("drained, exiting");
  return 0;
}

async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { duration: { type: "string" } } });
  const duration = values.duration !== undefined ? Number(values.duration) : undefined;
  if (duration !== undefined && !(duration >= 0)) throw new Error(`--duration: not a number of seconds: ${values.duration}`);
  await runDemo(duration);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "proxy":
      return proxy(rest);
    case "gateway":
      return proxy(rest, true);
    case "certs":
      return certsCommand(rest);
    case "start":
      return start(rest);
    case "version":
      console.log(`hbone-wasm ${VERSION} (Wasm ABI ${getCodec().ex.abi_version()})`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`hbone: unknown command '${cmd}'\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`hbone: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
