#!/usr/bin/env -S node --max-semi-space-size=8 --initial-old-space-size=64
// `hbone` command line: proxy (the node proxy), certs (a plug-in CA), start (the demo `npm start` runs).

import { parseArgs } from "node:util";
import { getCodec } from "./wasm/codec.js";
import { startProxy, type ForwardListener, type ProxyOptions } from "./app.js";
import { parseListenAddress } from "./proxy/authority.js";
import { logger, getLevel, setLevel } from "./log.js";
import { isWorker, runPrimary, workerAnswers, workerReady, workerSetup, workerStats } from "./workers/index.js";
import { NODE_FLAGS, resolveRuntime, startedWithNodeFlags } from "./runtime-config.js";
import { VERSION } from "./version.js";

const log = logger("cli");

const USAGE = `usage: hbone <command> [options]

commands:
  proxy    run a node proxy: every workload of NODE_NAME (PROXY_MODE=shared, the default without --workload;
           INPOD_ENABLED=true: pods from istio-cni over ZDS at INPOD_UDS), or one workload (--workload)
           --config FILE             mesh config in ztunnel's local format (env LOCAL_XDS_PATH)
           --workload NS/NAME/SA     dedicated mode: the one workload served (env PROXY_WORKLOAD_INFO)
           --ca-dir DIR              Istio plug-in CA directory that signs our certificate (env HBONE_CA_DIR)
           --xds-address URL         config from istiod over Delta ADS instead of --config (env XDS_ADDRESS),
                                     e.g. https://istiod.istio-system.svc:15012
           --ca-address URL          certificate from istiod's CA instead of --ca-dir (env CA_ADDRESS)
           --xds-token-file FILE     bearer token for both (/var/run/secrets/tokens/istio-token)
           --root-cert FILE          mesh root for istiod's TLS (/var/run/secrets/istio/root-cert.pem)
           --trust-domain TD         (env TRUST_DOMAIN; default: the workload's, else cluster.local)
           --cluster NAME            (env CLUSTER_ID)      --network NAME   (env NETWORK)
           --drain-timeout S         SIGTERM drain (30; env TERMINATION_GRACE_PERIOD_SECONDS minus 1)
           --workers N               N worker processes sharing the listeners (1; env HBONE_WORKERS)
           --inbound-port N          HBONE on the workload's IP (15008)
           --socks5-port N           SOCKS5 on 127.0.0.1 (15080; "off" = none, as for the ports below)
           --admin-port N            127.0.0.1 (15000)     --metrics-port N   (15020)
           --readiness-port N        (15021)               0 picks a free port (printed at start-up)
           --status-address IP       where metrics and readiness listen (127.0.0.1; 0.0.0.0 in a pod)
           --hbone-port N            port of other proxies' HBONE listeners (default: --inbound-port)
           --forward ADDR=DEST       extra listener, e.g. 127.0.0.1:9080=reviews.default.svc.cluster.local:9080
           --cert-ttl SECONDS        workload certificate lifetime (24 h), renewed at half-life
           --capture host|NETNS      redirect mode (no istio-cni): serve the traffic "hbone capture rules" redirects in
                                     the host's namespace or NETNS (15001 outbound, 15006, 15008, DNS 15053)
  gateway  run an east-west gateway (multicluster): the same flags as proxy; :15008 on the gateway workload's IP
           routes CONNECT svc-host:port to a local endpoint and passes the inner mTLS through (SOCKS5 off)
  certs    write an Istio plug-in CA: --out DIR --trust-domain TD [--cluster NAME] [--root DIR]
  capture  rules (--netns NAME | --host) [--apply | --remove]: nftables redirection to the proxy (redirect mode)
  start    the two-cluster demo (node mode as root, else on loopback; what npm start runs) [--duration N]
  version  print the version
`;

/** Full reports of last-resort errors per window; past it they are only counted. */
const LAST_RESORT_LOGS = 10;
const LAST_RESORT_WINDOW_MS = 60_000;

/**
 * The last resort, for an error no owner caught (every stream, socket and server has one: this
 * firing is a bug). Such an error belongs to one connection, so the proxy logs it with its stack
 * (rate-limited) and keeps serving every other workload. Not a Wasm trap: the codec's memory is
 * shared by every session and may be corrupt, so the process exits for its supervisor to restart.
 */
function installLastResort(): void {
  let windowStart = 0,
    logged = 0,
    suppressed = 0;
  const report = (kind: string, err: unknown) => {
    if (err instanceof WebAssembly.RuntimeError) {
      log.error("Wasm trap: the shared codec state may be corrupt, exiting", {
        kind,
        error: err.message,
        stack: err.stack,
      });
      process.exit(70);
    }
    const now = Date.now();
    if (now - windowStart > LAST_RESORT_WINDOW_MS) {
      if (suppressed > 0) log.error("last-resort handler: more errors were not logged", { suppressed });
      windowStart = now;
      logged = 0;
      suppressed = 0;
    }
    if (logged >= LAST_RESORT_LOGS) return void suppressed++;
    logged++;
    log.error("last-resort handler caught an error nobody owned; still serving", {
      kind,
      error: err instanceof Error ? err.message : String(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
  };
  process.on("uncaughtException", (err) => report("uncaughtException", err));
  process.on("unhandledRejection", (reason) => report("unhandledRejection", reason));
}

function certTtl(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--cert-ttl: not a number of seconds: ${v}`);
  return n * 1000;
}

async function proxy(args: string[], gateway = false): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      workload: { type: "string" },
      "ca-dir": { type: "string" },
      "trust-domain": { type: "string" },
      cluster: { type: "string" },
      network: { type: "string" },
      "inbound-port": { type: "string" },
      "socks5-port": { type: "string" },
      "admin-port": { type: "string" },
      "metrics-port": { type: "string" },
      "readiness-port": { type: "string" },
      "hbone-port": { type: "string" },
      forward: { type: "string", multiple: true },
      "drain-timeout": { type: "string" },
      "xds-address": { type: "string" },
      "ca-address": { type: "string" },
      "xds-token-file": { type: "string" },
      "root-cert": { type: "string" },
      "status-address": { type: "string" },
      "cert-ttl": { type: "string" },
      capture: { type: "string" },
      workers: { type: "string" },
    },
  });
  // Flags, environment and defaults are resolved in one place (runtime-config.ts, which deploy/ is checked against).
  const rt = resolveRuntime(values, process.env, { gateway });
  if (rt.logLevel !== getLevel()) setLevel(rt.logLevel);
  const { configPath: config, workload, caDir, xdsAddress, caAddress } = rt;
  if (!(config || xdsAddress) || !(caDir || caAddress)) {
    throw new Error("proxy needs --config or --xds-address, and --ca-dir or --ca-address");
  }
  const shared = rt.proxyMode === "shared" && !gateway;
  if (gateway && !workload) throw new Error("gateway needs --workload");
  if (!shared && !workload) throw new Error("PROXY_MODE=dedicated needs --workload (PROXY_WORKLOAD_INFO)");
  if (shared && !rt.nodeName && !rt.inpod) {
    throw new Error(
      "shared (node) mode needs NODE_NAME (the node whose workloads are served) or INPOD_ENABLED=true; " +
        "give --workload for one workload",
    );
  }
  const role = gateway ? "gateway" : "proxy";
  if (rt.workers > 1 && !isWorker()) {
    // The primary serves no tunnel itself, its workers do; it serves the status endpoints for them (host/workers).
    const status = {
      statusAddress: rt.statusAddress,
      ports: { admin: rt.ports.admin, metrics: rt.ports.metrics, readiness: rt.ports.readiness },
    };
    return runPrimary(rt.workers, status, (ready, pids) =>
      console.log(`hbone ${role} ready ${JSON.stringify({ ...ready, workers: rt.workers, pids })}`),
    );
  }
  if (isWorker()) workerSetup();
  const forward: ForwardListener[] = (values.forward ?? []).map((f) => {
    const [listen, to] = f.split("=");
    const l = listen ? parseListenAddress(listen) : null;
    if (!l || !to) throw new Error(`--forward: expected ADDR=DEST, got ${f}`);
    return { listen: l, to };
  });
  const opts: ProxyOptions = {
    config,
    workload: shared ? undefined : workload,
    caDir,
    forward,
    xdsAddress,
    caAddress,
    nodeName: rt.nodeName,
    self: { ip: rt.instanceIp, podName: rt.podName, podNamespace: rt.podNamespace },
    inpod: shared && rt.inpod ? { uds: rt.inpodUds } : undefined,
    packetMark: rt.packetMark,
    redirect: rt.redirect,
    connectTimeoutMs: rt.connectTimeoutMs,
    tokenFile: rt.tokenFile,
    rootCertPath: rt.rootCertPath,
    trustDomain: rt.trustDomain,
    cluster: rt.cluster,
    network: rt.network,
    inboundPort: rt.ports.inbound,
    socks5Port: rt.ports.socks5,
    // A worker's status endpoints are its primary's (host/workers).
    adminPort: isWorker() ? false : rt.ports.admin,
    metricsPort: isWorker() ? false : rt.ports.metrics,
    readinessPort: isWorker() ? false : rt.ports.readiness,
    statusAddress: rt.statusAddress,
    hbonePort: rt.hbonePort,
    drainTimeoutMs: rt.drainTimeoutMs,
    responseBaggage: rt.responseBaggage,
    certificateTtlMs: certTtl(values["cert-ttl"]),
    gateway,
  };
  installLastResort();
  if (!isWorker() && !startedWithNodeFlags())
    log.info("node started without the hbone command's flags: bulk tunnels may spend more CPU in GC", {
      flags: NODE_FLAGS.join(" "),
      hint: "run the hbone bin, or node with these flags",
    });
  const mesh = await startProxy(opts);
  const a = mesh.addresses;
  // One plain line for people and scripts (tests read it); details are in the JSON log.
  const ready = {
    mode: mesh.mode,
    identity: mesh.identity && String(mesh.identity),
    inbound: a.inbound && `${a.inbound.address}:${a.inbound.port}`,
    socks5: a.socks5?.port,
    admin: a.admin?.port,
    metrics: a.metrics?.port,
    readiness: a.readiness?.port,
    forward: a.forward.map((f) => `${f.address}:${f.port}`),
  };
  if (isWorker()) {
    workerAnswers({
      metrics: () => mesh.metrics.snapshot(),
      ready: () => mesh.isReady(),
      configDump: () => mesh.configDump(),
    });
    workerReady(ready); // the primary prints one line for all workers
  } else console.log(`hbone ${role} ready ${JSON.stringify(ready)}`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info("draining", { signal: sig });
      // A worker says how much of the work it did (its metrics are its own).
      if (isWorker()) log.info("worker stopping", { ...workerStats(mesh.metrics) });
      mesh.drain().then(resolve, (err: Error) => {
        log.error("drain failed", { error: err });
        resolve();
      });
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
  if (duration !== undefined && !(duration >= 0))
    throw new Error(`--duration: not a number of seconds: ${values.duration}`);
  await (await import("./demo.js")).runDemo(duration);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "proxy":
      // `proxy ztunnel` is ztunnel's own argv (its chart's args): accepted so the chart can run this image.
      return proxy(rest[0] === "ztunnel" ? rest.slice(1) : rest);
    case "gateway":
      return proxy(rest, true);
    // Loaded by the commands that run them: a proxy never holds the demo (protobuf, ZDS) or the capture code.
    case "certs":
      return (await import("./identity/certs-command.js")).certsCommand(rest);
    case "capture":
      return (await import("./capture/rules.js")).captureCommand(rest);
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
