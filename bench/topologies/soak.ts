// Soak: `npm run soak -- --minutes N [--tunnels 1000] [--cert-ttl 20] [--kill-every 15] [--config-hz 10]`.
// Real processes on loopback: a source proxy (a --forward listener to service echo), two destination proxies
// (workloads a and b, the service's endpoints) and an echo app behind each. `--tunnels` tunnels are kept open at
// once, each moving a random amount of random data through the echo and checking it (byte count and SHA-256 of
// what came back against what was sent). Meanwhile:
//   - destination proxy b and app b are killed (SIGKILL) mid-stream in turn every --kill-every seconds and started
//     again on the same address (a killed app resets its unfinished connections: bench/soak-app.ts says why); the
//     apps also reset (TCP RST) 1% of their connections at a random moment;
//   - the config file all proxies watch is rewritten --config-hz times a second (a label toggled on an unrelated
//     workload, an unrelated workload added and removed; mostly replaced by rename, sometimes rewritten in place);
//   - workload certificates live --cert-ttl seconds, so every proxy rotates its certificate every ttl/2.
// A tunnel that ends with a clean FIN must have every byte back (a short clean tunnel is data loss: must be 0);
// one whose peer died must end with an error. Every ~5 s: RSS and open fds (/proc/PID/fd) of each proxy. After the
// load stops: hbone_active_tunnels of each proxy must fall back to 0 (leaks). Results: bench/results/soak-latest.md.

import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { parseArgs } from "node:util";
import { createPluginCa } from "../../host/identity/ca.js";
import { hiddenReset } from "../../host/sys/index.js";
import { repoRoot } from "../harness.js";
import { freePort, nofileLimits, onExit, rssBytes, spawnNode, type Child } from "./procs.js";
import { sourceProxyArgs } from "./peer-spawn.js";
import { NODE_FLAGS } from "../../host/runtime-config.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "1" },
    tunnels: { type: "string", default: "1000" },
    "cert-ttl": { type: "string", default: "20" },
    "kill-every": { type: "string", default: "15" },
    "config-hz": { type: "string", default: "10" },
    "app-reset-permille": { type: "string", default: "10" },
    "max-bytes": { type: "string", default: "262144" },
    out: { type: "string" },
    // A directory: every proxy logs at info (access lines) into DIR/<proxy>.log, and each lost tunnel is listed with
    // its client port, times and the last kill, to match against those lines.
    trace: { type: "string" },
  },
});
const MINUTES = Number(values.minutes),
  TUNNELS = Number(values.tunnels),
  CERT_TTL = Number(values["cert-ttl"]);
const KILL_EVERY_MS = Number(values["kill-every"]) * 1000,
  CONFIG_HZ = Number(values["config-hz"]);
const MAX_BYTES = Number(values["max-bytes"]),
  APP_RESET = Number(values["app-reset-permille"]);
for (const [k, v] of Object.entries({ MINUTES, TUNNELS, CERT_TTL, KILL_EVERY_MS, CONFIG_HZ, MAX_BYTES })) {
  if (!(v > 0)) throw new Error(`soak: ${k} must be a positive number`);
}
if (!(APP_RESET >= 0 && APP_RESET <= 1000)) throw new Error("soak: --app-reset-permille must be 0..1000");

// Addresses of their own on 127/8, away from the other tests' 127.0.0.x.
const CLIENT_IP = "127.0.12.1",
  A_IP = "127.0.12.3",
  B_IP = "127.0.12.4";
const SVC = "echo.default.svc.cluster.local",
  SVC_PORT = 9000;
const TUNNEL_TIMEOUT_MS = 60_000;
const SAMPLE_MS = 5000;

const cli = join(repoRoot(), "dist", "host", "cli.js");
const appJs = join(repoRoot(), "dist", "bench", "topologies", "soak-app.js");
const dir = mkdtempSync(join(tmpdir(), "hbone-soak-"));
onExit(() => rmSync(dir, { recursive: true, force: true }));
const configFile = join(dir, "mesh.yaml");
const caDir = join(dir, "ca");

function meshConfig(appPort: number, gen: number): string {
  const workload = (name: string, ip: string, sa: string, extra = "") => `  - uid: soak//v1/Pod/default/${name}
    name: ${name}
    namespace: default
    serviceAccount: ${sa}
    workloadIps: [${ip}]
    protocol: HBONE
    clusterId: soak
${extra}`;
  const endpoint = `    services:\n      default/${SVC}:\n        ${SVC_PORT}: ${appPort}\n`;
  // Harmless changes: a label that toggles on an unrelated workload, an unrelated workload that comes and goes.
  const bystander = workload("bystander", "127.0.12.9", "bystander", `    canonicalRevision: "v${gen % 2}"\n`);
  const extra = gen % 3 === 0 ? workload(`extra-${gen % 7}`, `127.0.13.${1 + (gen % 200)}`, "extra") : "";
  return `workloads:
${workload("client", CLIENT_IP, "client")}${workload("a", A_IP, "echo", endpoint)}${workload("b", B_IP, "echo", endpoint)}${bystander}${extra}services:
  - name: echo
    namespace: default
    hostname: ${SVC}
    vips: [/10.96.12.10]
    ports:
      ${SVC_PORT}: ${appPort}
    subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]
`;
}

// ---- Processes -----------------------------------------------------------------------------------------------

interface Proc {
  name: string;
  start(): Promise<Child>;
  child?: Child;
  restarts: number;
  /** Set while the soak itself kills and restarts it. */
  killing: boolean;
}

/** Processes that exited without being killed by the soak (a crash is the worst finding): restarted, and reported. */
const crashes: { proc: string; t: number; exit: string; tail: string }[] = [];
let startedAt = Date.now();

const TRACE = values.trace;
const env = { HBONE_LOG_LEVEL: TRACE ? "info" : "warn" };
/** The last kill (for the trace of a lost tunnel). */
let lastKill = { victim: "", t: 0 };
const lossTrace: string[] = [];
if (TRACE) mkdirSync(TRACE, { recursive: true });
// Each tunnel holds several descriptors per proxy: raise the children's soft limit as far as the hard one allows.
const limits = nofileLimits(65536);
const NOFILE = limits.canRaise
  ? 65536
  : Number.isFinite(limits.hard) && limits.hard > limits.soft
    ? limits.hard
    : undefined;
const common = [
  "--config",
  configFile,
  "--ca-dir",
  caDir,
  "--socks5-port",
  "off",
  "--admin-port",
  "off",
  "--readiness-port",
  "off",
  "--metrics-port",
  "0",
  "--drain-timeout",
  "1",
  "--cert-ttl",
  String(CERT_TTL),
];

function proc(name: string, script: string, args: () => string[]): Proc {
  const p: Proc = {
    name,
    restarts: 0,
    killing: false,
    async start() {
      // The proxies run as the hbone bin runs them (NODE_FLAGS); the apps with Node's defaults.
      const nodeArgs = script.endsWith("cli.js") ? [...NODE_FLAGS] : [];
      const c = await spawnNode(name, script, args(), { env, nofile: NOFILE, nodeArgs });
      p.child = c;
      if (TRACE) {
        const f = createWriteStream(join(TRACE, `${name.replace(/ /g, "-")}.log`), { flags: "a" });
        c.proc.stdout?.pipe(f);
      }
      // 'close', not 'exit': by then its output has been read to the end (the stack of a crash comes last).
      c.proc.once("close", (code, signal) => {
        if (p.killing || stopping) return;
        const t = Math.round((Date.now() - startedAt) / 1000);
        const tail = c
          .tail()
          .split("\n")
          .filter((l) => !l.startsWith("{"))
          .join("\n"); // the JSON log lines aside
        crashes.push({ proc: name, t, exit: String(code ?? signal), tail });
        console.log(`[${t} s] CRASH: ${name} exited (${code ?? signal}) on its own; last output:\n${tail}`);
        setTimeout(
          () =>
            void p.start().then(
              () => p.restarts++,
              (e: unknown) => console.error(`restart of ${name}: ${String(e)}`),
            ),
          1000,
        );
      });
      return c;
    },
  };
  return p;
}

/** Starts a killed process again; a proxy that read the config file while it was rewritten in place exits at
 *  start ("workload … is not in the config"), so a few attempts. */
async function startAgain(p: Proc): Promise<Child> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await p.start();
    } catch (e) {
      if (attempt >= 5) throw e;
      console.log(`restart of ${p.name} failed (attempt ${attempt}), again: ${String(e).split("\n")[0]}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

function metricsPort(c: Child): number {
  return c.ready.metrics as number;
}

async function scrape(c: Child): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort(c)}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

/** hbone_active_tunnels by direction. */
async function activeTunnels(c: Child): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await scrape(c)).matchAll(/^hbone_active_tunnels\{direction="(\w+)"\} (\d+)/gm))
    out[m[1]!] = Number(m[2]);
  return out;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

// ---- Tunnels -------------------------------------------------------------------------------------------------

const stats = {
  started: 0,
  clean: 0,
  errored: 0,
  lost: 0,
  stuck: 0,
  bytesSent: 0,
  bytesEchoed: 0,
  bytesLost: 0,
  errors: new Map<string, number>(),
};
const lossExamples: string[] = [];
let stopping = false;
let open = 0;

/** One tunnel: send `size` random bytes in random chunks, FIN, read the echo to its end, compare. */
function tunnel(port: number): Promise<void> {
  return new Promise((resolve) => {
    stats.started++;
    open++;
    const size = 1 + Math.floor(Math.random() ** 2 * MAX_BYTES);
    const sent = createHash("sha256"),
      got = createHash("sha256");
    const t0 = Date.now();
    let sentBytes = 0,
      gotBytes = 0,
      ended = false,
      settled = false;
    const sock = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const timer = setTimeout(() => finish("stuck"), TUNNEL_TIMEOUT_MS);
    const finish = (how: "end" | "stuck" | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      open--;
      stats.bytesSent += sentBytes;
      stats.bytesEchoed += gotBytes;
      if (how === "end") {
        const complete = gotBytes === size && sentBytes === size && got.digest("hex") === sent.digest("hex");
        if (complete) stats.clean++;
        else {
          stats.lost++;
          stats.bytesLost += size - gotBytes;
          if (lossExamples.length < 10) lossExamples.push(`sent ${sentBytes}/${size}, clean FIN after ${gotBytes}`);
          if (TRACE)
            lossTrace.push(
              JSON.stringify({
                port: sock.localPort,
                size,
                got: gotBytes,
                start: new Date(t0).toISOString(),
                end: new Date().toISOString(),
                lastKill: { victim: lastKill.victim, msBeforeEnd: Date.now() - lastKill.t },
              }),
            );
        }
      } else if (how === "stuck") stats.stuck++;
      else {
        stats.errored++;
        const k = (how as NodeJS.ErrnoException).code ?? how.message;
        stats.errors.set(k, (stats.errors.get(k) ?? 0) + 1);
      }
      sock.destroy();
      resolve();
    };
    sock.on("error", (e) => finish(e));
    sock.on("data", (d: Buffer) => {
      gotBytes += d.length;
      got.update(d);
    });
    sock.on("end", () => {
      ended = true;
      // A reset that libuv reported as EOF (host/sys hiddenReset says why) is a reset, not a clean end.
      const reset = hiddenReset(sock);
      finish(reset ? Object.assign(reset, { code: `${reset.code} at EOF` }) : "end");
    });
    sock.on("close", () => {
      if (!ended) finish(new Error("closed without FIN"));
    });
    sock.on("connect", () => {
      const pump = () => {
        while (sentBytes < size) {
          const chunk = randomBytes(Math.min(size - sentBytes, 1 + Math.floor(Math.random() * 65536)));
          sent.update(chunk);
          sentBytes += chunk.length;
          if (!sock.write(chunk)) return void sock.once("drain", pump);
        }
        sock.end();
      };
      pump();
    });
  });
}

// ---- Main ----------------------------------------------------------------------------------------------------

interface Sample {
  t: number;
  proc: string;
  pid: number;
  rssMiB: number;
  fds: number;
}

async function main(): Promise<void> {
  await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "soak" });
  const appPort = await freePort(A_IP);
  const hbonePort = await freePort(A_IP);
  const fwdPort = await freePort("127.0.0.1");
  let gen = 0;
  writeFileSync(configFile, meshConfig(appPort, gen));

  const appA = proc("app a", appJs, () => [A_IP, String(appPort), String(APP_RESET)]);
  const appB = proc("app b", appJs, () => [B_IP, String(appPort), String(APP_RESET)]);
  const destA = proc("proxy a", cli, () => [
    "proxy",
    ...common,
    "--workload",
    "default/a/echo",
    "--inbound-port",
    String(hbonePort),
  ]);
  const destB = proc("proxy b", cli, () => [
    "proxy",
    ...common,
    "--workload",
    "default/b/echo",
    "--inbound-port",
    String(hbonePort),
  ]);
  const source = proc("proxy client", cli, () => [
    "proxy",
    ...common,
    ...sourceProxyArgs(hbonePort),
    "--forward",
    `127.0.0.1:${fwdPort}=${SVC}:${SVC_PORT}`,
  ]);
  const all = [appA, appB, destA, destB, source];
  for (const p of all) await p.start();
  const proxies = [source, destA, destB];
  const t0 = (startedAt = Date.now());
  const elapsed = () => Math.round((Date.now() - t0) / 1000);
  console.log(
    `soak: ${MINUTES} min, ${TUNNELS} tunnels, certificates ${CERT_TTL} s, a kill every ${KILL_EVERY_MS / 1000} s, ` +
      `config ${CONFIG_HZ}/s; dir ${dir}`,
  );

  // Config rewrites.
  let rewrites = 0;
  const rewriter = setInterval(() => {
    gen++;
    rewrites++;
    const text = meshConfig(appPort, gen);
    if (gen % 10 === 0)
      writeFileSync(configFile, text); // in place: a reader may catch it half-written
    else {
      writeFileSync(`${configFile}.tmp`, text);
      renameSync(`${configFile}.tmp`, configFile);
    }
  }, 1000 / CONFIG_HZ);

  // Kills: one destination proxy or app at a time, in turn, each started again after a moment. Both sides take
  // turns so a kill usually lands on live tunnels (outlier detection steers new tunnels away from a killed peer).
  let kills = 0,
    restarting = false;
  const victims = [destB, appA, destA, appB];
  const killer = setInterval(() => {
    if (restarting) return;
    const v = victims[kills++ % victims.length]!;
    restarting = true;
    v.killing = true;
    v.child?.proc.kill("SIGKILL");
    lastKill = { victim: v.name, t: Date.now() };
    console.log(`[${elapsed()} s] killed ${v.name}`);
    setTimeout(
      () => {
        startAgain(v).then(
          () => {
            v.restarts++;
            v.killing = restarting = false;
          },
          (e: unknown) => {
            console.error(`restart of ${v.name} failed: ${String(e)}`);
            v.killing = restarting = false;
          },
        );
      },
      1000 + Math.random() * 2000,
    );
  }, KILL_EVERY_MS);

  // Samples.
  const samples: Sample[] = [];
  const sample = () => {
    const now: Sample[] = [];
    for (const p of proxies) {
      const pid = p.child?.pid;
      if (!pid || p.child?.proc.exitCode !== null || p.child.proc.signalCode !== null) continue;
      try {
        now.push({ t: elapsed(), proc: p.name, pid, rssMiB: +(rssBytes(pid) / 2 ** 20).toFixed(1), fds: fdCount(pid) });
      } catch {
        // exited between the check and the read
      }
    }
    console.log(
      `[${elapsed()} s] open ${open}, started ${stats.started}, clean ${stats.clean}, errored ${stats.errored}, ` +
        `lost ${stats.lost}, stuck ${stats.stuck}; ` +
        now.map((s) => `${s.proc} ${s.rssMiB} MiB ${s.fds} fds`).join(", "),
    );
    samples.push(...now);
  };
  sample();
  const sampler = setInterval(sample, SAMPLE_MS);

  // Load: keep TUNNELS open, opened at most 200 per 100 ms.
  const end = t0 + MINUTES * 60_000;
  const inflight = new Set<Promise<void>>();
  while (Date.now() < end) {
    let opened = 0;
    while (open < TUNNELS && opened < 200) {
      const t = tunnel(fwdPort);
      inflight.add(t);
      void t.then(() => inflight.delete(t));
      opened++;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  clearInterval(killer);
  clearInterval(rewriter);
  console.log(`[${elapsed()} s] load stopped; waiting for ${inflight.size} tunnels`);
  await Promise.all(inflight);
  // Wait for a restart in progress, then let the proxies settle.
  for (let i = 0; i < 100 && restarting; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 5000));
  sample();
  clearInterval(sampler);

  // Active tunnels once the load is gone; anything left is checked again 15 s later (slow cleanup is not a leak).
  const leaks: Record<string, Record<string, number> | string> = {};
  for (let pass = 0; pass < 2; pass++) {
    for (const p of proxies) {
      try {
        leaks[p.name] = await activeTunnels(p.child!);
      } catch (e) {
        leaks[p.name] = `scrape failed: ${String(e)}`;
      }
    }
    const left = Object.values(leaks).some((l) => typeof l === "string" || Object.values(l).some((n) => n > 0));
    if (!left || pass === 1) break;
    console.log(`tunnels still counted active: ${JSON.stringify(leaks)}; again in 15 s`);
    await new Promise((r) => setTimeout(r, 15_000));
  }
  stopping = true;
  const alive = Object.fromEntries(
    all.map((p) => [p.name, p.child?.proc.exitCode === null && p.child.proc.signalCode === null]),
  );
  for (const p of all) await p.child?.stop();
  if (TRACE) writeFileSync(join(TRACE, "losses.jsonl"), lossTrace.map((l) => `${l}\n`).join(""));

  writeResults({
    samples,
    leaks,
    alive,
    rewrites,
    kills,
    restarts: Object.fromEntries(all.map((p) => [p.name, p.restarts])),
    seconds: elapsed(),
  });
}

function trend(samples: Sample[], name: string, key: "rssMiB" | "fds"): string {
  // Only the process's last life (a restarted proxy starts over), after a 20 s warm-up.
  const mine = samples.filter((s) => s.proc === name);
  const lastPid = mine.at(-1)?.pid;
  const life = mine.filter((s) => s.pid === lastPid);
  const warm = life.filter((s) => s.t >= (life[0]?.t ?? 0) + 20);
  const pts = warm.length >= 2 ? warm : life;
  if (pts.length === 0) return "no samples";
  const first = pts[0]![key],
    last = pts.at(-1)![key];
  const max = Math.max(...pts.map((s) => s[key]));
  // Least-squares slope over the second half of the samples: flat is ~0.
  const half = pts.slice(Math.floor(pts.length / 2));
  let slope = NaN;
  if (half.length >= 3) {
    const mt = half.reduce((a, s) => a + s.t, 0) / half.length,
      mv = half.reduce((a, s) => a + s[key], 0) / half.length;
    const num = half.reduce((a, s) => a + (s.t - mt) * (s[key] - mv), 0),
      den = half.reduce((a, s) => a + (s.t - mt) ** 2, 0);
    slope = den > 0 ? (num / den) * 60 : NaN;
  }
  return (
    `${first} → ${last} (max ${max}; second-half slope ${Number.isFinite(slope) ? slope.toFixed(1) : "n/a"}/min; ` +
    `${pts.length} samples from ${pts[0]!.t} s)`
  );
}

function writeResults(r: {
  samples: Sample[];
  leaks: Record<string, unknown>;
  alive: Record<string, boolean>;
  rewrites: number;
  kills: number;
  restarts: Record<string, number>;
  seconds: number;
}): void {
  const names = ["proxy client", "proxy a", "proxy b"];
  const md = [
    `# Soak (\`npm run soak -- --minutes ${MINUTES} --tunnels ${TUNNELS}\`)`,
    "",
    `Run ${new Date().toISOString()}, ${r.seconds} s; ${TUNNELS} concurrent tunnels through a source proxy to service`,
    `echo (destination proxies a and b, an echo app behind each); up to ${MAX_BYTES} random bytes per tunnel, echoed`,
    `and checked (count + SHA-256). Certificates ${CERT_TTL} s (rotated every ${CERT_TTL / 2} s); config rewritten`,
    `${r.rewrites} times (${CONFIG_HZ}/s); ${r.kills} kills (SIGKILL of one destination proxy or app at a time, in turn,`,
    `restarted on the same address; a killed app resets its unfinished connections, SO_LINGER 0); apps reset`,
    `${APP_RESET / 10}% of their connections mid-stream.`,
    "",
    "| tunnels | count |",
    "|---|---|",
    `| started | ${stats.started} |`,
    `| ended cleanly, every byte back | ${stats.clean} |`,
    `| ended with an error (peer killed or reset) | ${stats.errored} |`,
    `| **clean FIN with bytes missing (data loss)** | **${stats.lost}** |`,
    `| stuck (no end after ${TUNNEL_TIMEOUT_MS / 1000} s) | ${stats.stuck} |`,
    "",
    `Bytes sent ${stats.bytesSent}, echoed ${stats.bytesEchoed}; **bytes lost on clean tunnels: ${stats.bytesLost}**.`,
    `Errors: ${[...stats.errors].map(([k, v]) => `${k} ${v}`).join(", ") || "none"} ("at EOF": a reset that Node ` +
      `reported to the client as an end, read back with SO_ERROR).`,
    lossExamples.length ? `Loss examples: ${lossExamples.join("; ")}.` : "",
    "",
    "| proxy | RSS MiB (last life, after warm-up) | open fds | active tunnels after the load | alive at the end |",
    "|---|---|---|---|---|",
    ...names.map(
      (n) =>
        `| ${n} | ${trend(r.samples, n, "rssMiB")} | ${trend(r.samples, n, "fds")} | ` +
        `${JSON.stringify(r.leaks[n])} | ${r.alive[n]} |`,
    ),
    "",
    `Restarts: ${JSON.stringify(r.restarts)}.`,
    "",
    `**Crashes** (exits the soak did not cause): ${crashes.length}.`,
    ...crashes.map((c) => `\n- ${c.proc} at ${c.t} s, exit ${c.exit}:\n\n\`\`\`\n${c.tail}\n\`\`\``),
    "",
    "Samples (every ~5 s):",
    "",
    "```json",
    JSON.stringify(r.samples),
    "```",
    "",
  ].join("\n");
  const out = values.out ?? join(repoRoot(), "bench", "results", "soak-latest.md");
  writeFileSync(out, md);
  console.log(md.split("\nSamples")[0]);
  console.log(`written to ${out}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
