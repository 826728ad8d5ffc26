// Attack-test helpers for :15008 and /metrics: a real `hbone proxy` process (optionally under a low descriptor
// limit via prlimit), its RSS and open descriptors from /proc, its JSON log lines, and a legitimate HBONE peer
// (mTLS with a certificate of the test's CA, optionally from a chosen loopback source address).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { CertificateAuthority, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { connectHbone } from "../../host/tls/contexts.js";
import { H2Session, type SessionOptions } from "../../host/h2/session.js";

const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));

export interface ProxyProcess {
  child: ChildProcess;
  pid: number;
  inbound: { host: string; port: number };
  metricsPort: number;
  /** Date.now() at spawn. */
  startedAt: number;
  /** JSON log lines so far, parsed. */
  logs(): { msg: string; [k: string]: unknown }[];
  alive(): boolean;
  rssMiB(): number;
  openFds(): number;
  metrics(): Promise<string>;
  kill(): Promise<void>;
}

/** Spawns `node dist/host/cli.js proxy --config … --workload …` with every port but inbound/metrics off.
 *  `nofile` runs it under `prlimit --nofile=N:N`; `env` adds environment variables (the limits). */
export async function spawnProxy(o: { config: string; caDir: string; workload: string; nofile?: number;
  env?: Record<string, string> }): Promise<ProxyProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  const args = [CLI, "proxy", "--config", o.config, "--workload", o.workload, "--ca-dir", o.caDir, "--inbound-port", "0",
    "--socks5-port", "off", "--admin-port", "off", "--metrics-port", "0", "--readiness-port", "off"];
  const [cmd, argv] = o.nofile ? ["prlimit", [`--nofile=${o.nofile}:${o.nofile}`, process.execPath, ...args]]
    : [process.execPath, args];
  const startedAt = Date.now();
  const child = spawn(cmd, argv as string[], { stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, HBONE_LOG_LEVEL: "info", ...o.env } });
  child.on("error", () => {}); // a spawn failure shows as the missing ready line below
  type Ready = { inbound: string; metrics: number };
  let ready: Ready | undefined;
  let out = "";
  const lines: { msg: string }[] = [];
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    out += d;
    let nl;
    while ((nl = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith("{")) lines.push(JSON.parse(line) as { msg: string });
      else if (line.startsWith("hbone proxy ready")) ready = JSON.parse(line.slice("hbone proxy ready ".length)) as Ready;
    }
  });
  const t0 = Date.now();
  while (!ready) {
    if (child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error("proxy did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  // Under prlimit the pid is node's: prlimit execs it.
  const pid = child.pid!;
  const [host, port] = [ready.inbound.slice(0, ready.inbound.lastIndexOf(":")), Number(ready.inbound.split(":").pop())];
  const metricsPort = ready.metrics;
  return {
    child, pid, inbound: { host, port }, metricsPort, startedAt,
    logs: () => lines,
    alive: () => child.exitCode === null && child.signalCode === null,
    rssMiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024,
    openFds: () => readdirSync(`/proc/${pid}/fd`).length,
    metrics: async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await once(child, "exit");
    },
  };
}

/** A certificate for `ns/sa`, issued by the test's plug-in CA. */
export async function peerCertificate(caDir: string, ns: string, sa: string): Promise<WorkloadCertificate> {
  const ca = await CertificateAuthority.load(caDir);
  return ca.issue(new Identity("cluster.local", ns, sa));
}

/** An HBONE client connection to the proxy (mTLS, identity `expected` checked), from `localAddress` if given. */
export async function hboneSession(o: { host: string; port: number; certificate: WorkloadCertificate; expected: Identity;
  localAddress?: string; timeoutMs?: number; session?: SessionOptions }): Promise<H2Session> {
  const tcp = o.localAddress ? net.connect({ host: o.host, port: o.port, localAddress: o.localAddress }) : undefined;
  tcp?.on("error", () => {}); // the TLS layer reports it
  const { socket } = await connectHbone({ host: o.host, port: o.port, certificate: o.certificate, expected: [o.expected],
    socket: tcp, timeoutMs: o.timeoutMs });
  return H2Session.client(socket, o.session);
}

/** The bytes a real TLS 1.3 client sends first (its ClientHello), captured from node:tls against a plain socket. */
export async function clientHello(): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const got = once(server, "connection") as Promise<[net.Socket]>;
  const tls = await import("node:tls");
  const c = tls.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, rejectUnauthorized: false,
    minVersion: "TLSv1.3", ALPNProtocols: ["h2"] });
  c.on("error", () => {});
  const [s] = await got;
  const [first] = await once(s, "data") as [Buffer];
  c.destroy();
  s.destroy();
  server.close();
  return first;
}

/** Lines of /metrics text whose metric name starts with `prefix`. */
export function seriesLines(text: string, prefix = "istio_tcp_"): string[] {
  return text.split("\n").filter((l) => l.startsWith(prefix));
}

/** A gauge's value in /metrics text (no labels). */
export function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}
