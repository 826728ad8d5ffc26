// Node-mode test helpers: a spawned `hbone proxy` whose ready line, admin, metrics and readiness ports are read
// from its output (every line kept, bounded), and the byte-exact client the network-namespace tests run inside a
// pod with `ip netns exec` (an unmodified app: plain net.connect).

import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginCa } from "../../host/identity/ca.js";
import { ANY_STATUS_PORTS } from "./attack.js";
import { ISTIOD, type MeshFixture } from "./control-plane-mesh.js";
import { spawnInNetns, type Netns, type NetnsProcess } from "./netns.js";

/** A scratch directory with a plug-in CA in `ca/` (trust domain cluster.local) and the given files written. */
export async function meshDir(
  prefix: string,
  files: Record<string, string> = {},
): Promise<{ dir: string; caDir: string; file(name: string): string }> {
  const dir = mkdtempSync(join(tmpdir(), `hbone-${prefix}-`));
  const caDir = join(dir, "ca");
  await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "test" });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return { dir, caDir, file: (name) => join(dir, name) };
}

/** Options of an in-process proxy on the test istiod at `address` (config and certificates from it, the mesh's token
 *  and root, status listeners off). */
export function istiodProxyOptions(mesh: MeshFixture, address: string) {
  const rootCertPath = join(mesh.dir, "root-cert.pem");
  writeFileSync(rootCertPath, mesh.rootsPem);
  return {
    xdsAddress: address,
    caAddress: address,
    tokenFile: mesh.tokenFile,
    rootCertPath,
    clusterId: "c1",
    istiodIdentity: ISTIOD.toString(),
    socks5Port: false,
    adminPort: false,
    metricsPort: false,
    readinessPort: false,
  } as const;
}

/** ECHO_APP inside `ns` on `port`, once it listens. */
export async function startEchoApp(ns: Netns, port = 8080): Promise<NetnsProcess> {
  const app = spawnInNetns(ns, ECHO_APP, [String(port)]);
  await app.line((l) => l === "LISTENING");
  return app;
}

export interface SpawnedProxy {
  child: ChildProcess;
  /** Every stdout/stderr line so far (JSON log lines and the ready line). */
  out: string[];
  admin: number;
  metrics: number;
  readiness: number;
  /** Lines that parsed as JSON with msg `connection complete`. */
  accessLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** Spawns `node dist/host/cli.js proxy|gateway ARGS` with `env` added (inside the network namespace `netns`, by
 *  `ip netns exec`, when given); resolves on its ready line (20 s bound). */
export async function spawnNodeProxy(
  args: string[],
  env: Record<string, string>,
  o: { netns?: string; command?: "proxy" | "gateway" } = {},
): Promise<SpawnedProxy> {
  const command = o.command ?? "proxy";
  const argv = [
    "dist/host/cli.js",
    command,
    ...ANY_STATUS_PORTS,
    ...(command === "proxy" ? ["--socks5-port", "off"] : []),
    ...args,
  ];
  const [cmd, cmdArgs] = o.netns
    ? ["ip", ["netns", "exec", o.netns, process.execPath, ...argv]]
    : [process.execPath, argv];
  const child = spawn(cmd, cmdArgs, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const out: string[] = [];
  let buf = "";
  const ready = new Promise<Record<string, number>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`proxy not ready: ${out.join("\n").slice(-2000)}`)), 20_000);
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (out.length < 20_000) out.push(l);
        const ready = `hbone ${command} ready `;
        if (l.startsWith(ready)) {
          clearTimeout(t);
          resolve(JSON.parse(l.slice(ready.length)) as Record<string, number>);
        }
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`proxy exited ${code}: ${out.join("\n").slice(-2000)}`));
    });
  });
  const r = await ready;
  return {
    child,
    out,
    admin: r.admin!,
    metrics: r.metrics!,
    readiness: r.readiness!,
    accessLines: () =>
      out.filter((l) => l.includes('"connection complete"')).map((l) => JSON.parse(l) as Record<string, unknown>),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((res) => child.once("exit", res));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Runs with `ip netns exec` (runInNetns): sends 64 KiB of a pattern with FIN to host:port and prints the sha256
 *  and length of what came back, or ERR and why (8 s bound). */
export const ECHO_CLIENT = `
import net from "node:net"; import { createHash } from "node:crypto";
const [host, port] = process.argv.slice(-2);
const data = Buffer.alloc(65536); for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 255;
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const got = []; s.on("data", (d) => got.push(d));
s.on("connect", () => s.end(data));
const t = setTimeout(() => { console.log("RESULT ERR timeout"); process.exit(0); }, 8000);
s.on("error", (e) => { clearTimeout(t); console.log("RESULT ERR " + e.code); process.exit(0); });
s.on("end", () => { clearTimeout(t); const b = Buffer.concat(got);
  console.log("RESULT " + (b.length ? createHash("sha256").update(b).digest("hex") + "/" + b.length : "ERR empty")); process.exit(0); });
`;

/** What ECHO_CLIENT prints when every byte came back. */
export const ECHO_EXPECTED = (() => {
  const data = Buffer.alloc(65536);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 255;
  return `${createHash("sha256").update(data).digest("hex")}/65536`;
})();

/** An echo app (half-close aware) on 0.0.0.0:PORT; prints LISTENING. Run with spawnInNetns. */
export const ECHO_APP = `
import net from "node:net";
const port = Number(process.argv.at(-1));
net.createServer({ allowHalfOpen: true }, (s) => { s.on("error", () => {}); s.pipe(s); })
  .listen(port, "0.0.0.0", () => console.log("LISTENING"));
`;

/** Polls `f` every 100 ms until true (bounded). */
export async function waitFor(what: string, f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
