// Shared tools of the attack suites (test/attack/): real `hbone proxy` / `hbone gateway` processes
// (spawned by bench/topologies/procs.ts; `spawnProxy` adds a low descriptor limit, every JSON log line and
// /metrics), hostile HTTP/2 peers over real mTLS (test/helpers/raw-peer.ts), a legitimate HBONE session,
// a real ClientHello, a fake destination that answers what no honest proxy would, and the checks every
// attack ends with: the process is still running and nothing escaped its error owner, a fresh legitimate
// tunnel is byte-exact, memory and descriptors stay under a bound.

import net from "node:net";
import tls from "node:tls";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { spawnNode, rssBytes, type Child, type SpawnOptions } from "../../bench/topologies/procs.js";
import { RawPeer, PREFACE } from "./raw-peer.js";
import { frame, u32 } from "./frames.js";
import { pattern, pump, drain } from "./net.js";
import { CertificateAuthority, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { connectHbone, contextOptions } from "../../host/tls/contexts.js";
import { H2Session, type SessionOptions } from "../../host/h2/session.js";
import { HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import * as abi from "../../assembly/abi.js";

export const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));

/** Admin, metrics and readiness on free ports (each printed in the ready line). */
export const ANY_STATUS_PORTS = ["--admin-port", "0", "--metrics-port", "0", "--readiness-port", "0"];
/** Admin, metrics and readiness off. */
export const NO_STATUS_PORTS = ["--admin-port", "off", "--metrics-port", "off", "--readiness-port", "off"];

/**
 * The flags of an `hbone proxy` (or `gateway`) serving `workload` from a mesh fixture's config file and plug-in CA:
 * inbound on a free port, SOCKS5 off (a gateway's default), admin, metrics and readiness on free ports; `more` follows (a repeated flag's last value
 * wins, as parseArgs reads it).
 */
export function proxyArgs(fx: { configPath: string; caDir: string }, workload: string, ...more: string[]): string[] {
  return [
    "--config",
    fx.configPath,
    "--workload",
    workload,
    "--ca-dir",
    fx.caDir,
    "--inbound-port",
    "0",
    "--socks5-port",
    "off",
    ...ANY_STATUS_PORTS,
    ...more,
  ];
}

/** Output that means an error escaped its owner: Node's crash text, or our last-resort handler. */
const UNOWNED = /Unhandled|last-resort|uncaught|Wasm trap/i;

export interface HboneProcess extends Child {
  /** The lines (stdout and stderr, after the ready line) that match UNOWNED. */
  unowned: string[];
  alive(): boolean;
  rssMiB(): number;
  fds(): number;
}

/** Starts `hbone <kind> args…` (dist/, built by `npm run build`) and waits for its ready line. */
export async function spawnHbone(
  kind: "proxy" | "gateway",
  args: string[],
  nodeArgs: string[] = [],
  o: Omit<SpawnOptions, "nodeArgs"> = {},
): Promise<HboneProcess> {
  const child = await spawnNode(`hbone ${kind}`, CLI, [kind, ...args], {
    ...o,
    env: { HBONE_LOG_LEVEL: "warn", ...o.env },
    nodeArgs,
  });
  const unowned: string[] = [];
  for (const s of [child.proc.stdout!, child.proc.stderr!]) {
    createInterface({ input: s }).on("line", (l) => {
      if (UNOWNED.test(l) && unowned.length < 100) unowned.push(l.slice(0, 8000));
    });
  }
  return {
    ...child,
    unowned,
    alive: () => child.proc.exitCode === null && child.proc.signalCode === null,
    rssMiB: () => rssBytes(child.pid) / 2 ** 20,
    fds: () => readdirSync(`/proc/${child.pid}/fd`).length,
  };
}

/**
 * The arguments of a source proxy (the mesh fixture's sleep workload, no inbound) that dials `dest`'s HBONE port and
 * forwards `forward` (listen=target): the two-process pair the CLI tests start, with `extra` flags before --forward.
 */
export function forwardSourceArgs(dest: HboneProcess, forward: string, ...extra: string[]): string[] {
  const hbonePort = (dest.ready.inbound as string).split(":").at(-1)!;
  return [
    "--workload",
    "default/sleep/sleep",
    "--inbound-port",
    "off",
    "--hbone-port",
    hbonePort,
    ...extra,
    "--forward",
    forward,
  ];
}

/** The process is still running and nothing escaped its error owner. */
export function expectSurvived(p: HboneProcess): void {
  expect(p.alive(), `${p.name} exited:\n${p.tail()}`).toBe(true);
  expect(p.unowned).toEqual([]);
}

/** RSS bound of an attacked proxy: a fresh one is ~80 MiB, after each file's attacks ≤ 95 MiB was measured. */
export const RSS_BOUND_MIB = 160;

/** Resident memory under `mib` (read from /proc/<pid>/status). */
export function expectRssBelow(p: HboneProcess, mib = RSS_BOUND_MIB): void {
  const rss = p.rssMiB();
  expect(rss, `${p.name} RSS ${rss.toFixed(0)} MiB`).toBeLessThan(mib);
}

/** A workload certificate from a plug-in CA directory. */
export async function issue(
  caDir: string,
  namespace: string,
  sa: string,
  trustDomain = "cluster.local",
): Promise<WorkloadCertificate> {
  const ca = await CertificateAuthority.load(caDir);
  return ca.issue(new Identity(trustDomain, namespace, sa));
}

export const id = (namespace: string, sa: string): Identity => new Identity("cluster.local", namespace, sa);

/** A hostile HTTP/2 peer over real mTLS (HBONE's TLS: 1.3, ALPN h2, client certificate), optionally from `localAddress`. */
export async function tlsPeer(o: {
  host: string;
  port: number;
  cert: WorkloadCertificate;
  expected: Identity;
  localAddress?: string;
}): Promise<RawPeer> {
  return RawPeer.over(await mtls({ ...o, certificate: o.cert }));
}

/** A CONNECT request HEADERS frame, to send in one write with whatever follows it. */
export function connectFrame(peer: RawPeer, stream: number, authority: string): Buffer {
  return peer.enc.encodeHeadersFrame(
    stream,
    [
      [":method", "CONNECT"],
      [":authority", authority],
    ],
    false,
    16384,
  );
}

export const rstFrame = (stream: number, code: number): Buffer => frame(abi.FRAME_RST_STREAM, 0, stream, u32(code));
export const windowUpdateFrame = (stream: number, inc: number): Buffer =>
  frame(abi.FRAME_WINDOW_UPDATE, 0, stream, u32(inc));

/** The response status a raw peer got on `stream` (0: none in time). */
export async function statusOf(peer: RawPeer, stream: number, ms = 5000): Promise<number> {
  const f = await peer.waitFor((x) => x.type === abi.FRAME_HEADERS && x.streamId === stream, ms);
  if (!f) return 0;
  return Number((await peer.response(stream))?.find(([n]) => n === ":status")?.[1] ?? 0);
}

/** Writes `n` patterned bytes through a tunnel whose far end echoes, and checks every byte came back. */
export async function roundTrip(t: Duplex, n = 256 << 10, seed = 7): Promise<void> {
  const data = pattern(n, seed);
  const [, got] = await Promise.all([pump(t, data, 64 << 10), drain(t, data)]);
  expect(got).toEqual({ bytes: n, equal: true });
}

/** roundTrip through a plain TCP listener (a --forward listener). */
export async function tcpRoundTrip(addr: string): Promise<void> {
  const i = addr.lastIndexOf(":");
  const s = net.connect(Number(addr.slice(i + 1)), addr.slice(0, i));
  await once(s, "connect");
  await roundTrip(s);
}

/** Retries `fn` until it resolves (at most `ms`); the last error is thrown. */
export async function eventually<T>(fn: () => Promise<T>, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** `hbone_active_tunnels{direction}` from a proxy's /metrics. */
export async function activeTunnels(metricsPort: number, direction: "inbound" | "outbound"): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = new RegExp(`^hbone_active_tunnels\\{direction="${direction}"\\} (\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Sends raw bytes to a TCP port and returns what comes back before the close (or `ms`). */
export async function rawRequest(port: number, bytes: string, ms = 3000): Promise<string> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => {});
  await once(s, "connect");
  s.write(bytes);
  let out = "";
  s.on("data", (d: Buffer) => (out += d.toString("latin1")));
  await Promise.race([once(s, "close"), new Promise((r) => setTimeout(r, ms))]);
  s.destroy();
  return out;
}

/** A SOCKS5 greeting and CONNECT request for a domain name, in one buffer. */
export function socksRequest(host: string, port: number): Buffer {
  const name = Buffer.from(host, "latin1");
  const req = Buffer.from([5, 1, 0, 3, name.length, ...name, port >> 8, port & 255]);
  return Buffer.concat([Buffer.from([5, 1, 0]), req]);
}

/** Opens a tunnel through a SOCKS5 listener; resolves with the socket after a success reply, rejects with the code. */
export async function socksConnect(socksPort: number, host: string, port: number): Promise<net.Socket> {
  const s = net.connect(socksPort, "127.0.0.1");
  s.on("error", () => {});
  await once(s, "connect");
  s.write(socksRequest(host, port));
  let buf = Buffer.alloc(0);
  while (buf.length < 12) {
    const [d] = (await Promise.race([once(s, "data"), once(s, "close").then(() => [null])])) as [Buffer | null];
    if (!d) break;
    buf = Buffer.concat([buf, d]);
  }
  if (buf.length < 12 || buf[3] !== 0) {
    s.destroy();
    throw new Error(`SOCKS5 reply code ${buf[3] ?? "none"}`);
  }
  if (buf.length > 12) s.unshift(buf.subarray(12));
  return s;
}

/** The bytes answering a CONNECT on `stream`, written at once; `later` writes more on the same connection. */
export type Answer = (stream: number, enc: HpackEncoder, later: (bytes: Buffer[]) => void) => Buffer[];

/**
 * A fake HBONE destination (TLS 1.3, ALPN h2, its own certificate) that answers every CONNECT
 * with `answer(streamId, enc)`'s bytes in one write (changeable at any time): the misbehaviour an
 * honest proxy never sends.
 */
export async function fakeDestination(
  host: string,
  port: number,
  cert: WorkloadCertificate,
  answer: Answer,
): Promise<{ connects: number; answer: Answer; close(): void }> {
  const state = { connects: 0, answer, close: () => server.close() };
  const server = tls.createServer(
    { ...contextOptions(cert), requestCert: true, rejectUnauthorized: false, ALPNProtocols: ["h2"] },
    (sock) => {
      sock.on("error", () => {});
      const enc = new HpackEncoder();
      sock.write(frame(abi.FRAME_SETTINGS, 0, 0));
      let buf = Buffer.alloc(0),
        prefaceSeen = false;
      sock.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!prefaceSeen) {
          if (buf.length < PREFACE.length) return;
          buf = buf.subarray(PREFACE.length);
          prefaceSeen = true;
        }
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const len = buf.readUIntBE(0, 3),
            type = buf[3],
            flags = buf[4],
            sid = buf.readUInt32BE(5) & 0x7fffffff;
          buf = buf.subarray(9 + len);
          if (type === abi.FRAME_SETTINGS && !(flags & abi.FLAG_ACK))
            sock.write(frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0));
          if (type === abi.FRAME_HEADERS) {
            state.connects++;
            sock.write(
              Buffer.concat(
                state.answer(sid, enc, (more) => {
                  if (!sock.destroyed) sock.write(Buffer.concat(more));
                }),
              ),
            );
          }
        }
      });
    },
  );
  server.on("tlsClientError", () => {});
  server.listen(port, host);
  await once(server, "listening");
  return state;
}

/** A response `status` followed by RST_STREAM(`code`) in one write. */
export function statusThenReset(status: number, code: number): Answer {
  return (stream, enc) => {
    const list: HeaderList = [[":status", String(status)]];
    return [enc.encodeHeadersFrame(stream, list, false, 16384), rstFrame(stream, code)];
  };
}

/** A response `status` that ends the stream (a refusal such as 503). */
export function refusal(status: number): Answer {
  return (stream, enc) => [enc.encodeHeadersFrame(stream, [[":status", String(status)]], true, 16384)];
}

/**
 * A TCP listener on `host` whose dials never complete: Python's listen(0) with its one-slot
 * accept queue filled and nothing accepting, so the kernel drops further SYNs (a dial stays
 * pending until its timeout). Killed with close().
 */
export async function blackhole(host: string): Promise<{ port: number; close(): void }> {
  const script = [
    "import socket, sys",
    "s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(0)",
    "fill = []",
    "for _ in range(3):",
    "    c = socket.socket(); c.settimeout(0.3)",
    "    try: c.connect(s.getsockname())",
    "    except OSError: pass",
    "    fill.append(c)",
    "print(s.getsockname()[1], flush=True)",
    "sys.stdin.read()",
  ].join("\n");
  const p = spawn("/usr/bin/python3", ["-c", script, host], { stdio: ["pipe", "pipe", "inherit"] });
  const [line] = (await once(createInterface({ input: p.stdout }), "line")) as [string];
  return { port: Number(line), close: () => p.kill("SIGKILL") };
}

/**
 * Double HBONE through an east-west gateway by hand: outer mTLS to the gateway, CONNECT
 * `authority`, inner mTLS inside that stream to the endpoint's proxy, CONNECT `authority` again.
 */
export async function viaGateway(o: {
  gateway: string;
  port: number;
  cert: WorkloadCertificate;
  gatewayId: Identity;
  endpointId: Identity;
  authority: string;
}): Promise<{ tunnel: Duplex; close(): void }> {
  const { socket } = await connectHbone({
    host: o.gateway,
    port: o.port,
    certificate: o.cert,
    expected: [o.gatewayId],
  });
  const outer = H2Session.client(socket);
  const outerStream = await outer.connect(o.authority);
  outerStream.on("error", () => {});
  if (outerStream.status !== 200) throw new Error(`gateway answered ${outerStream.status}`);
  const inner = await connectHbone({
    host: o.gateway,
    port: o.port,
    certificate: o.cert,
    expected: [o.endpointId],
    socket: outerStream,
  });
  const innerSession = H2Session.client(inner.socket);
  const tunnel = await innerSession.connect(o.authority);
  tunnel.on("error", () => {});
  if (tunnel.status !== 200) throw new Error(`endpoint answered ${tunnel.status}`);
  return { tunnel, close: () => outer.destroy() };
}

export interface ProxyProcess extends HboneProcess {
  inbound: { host: string; port: number };
  metricsPort: number;
  /** Date.now() at spawn. */
  startedAt: number;
  /** JSON log lines so far, parsed. */
  logs(): { msg: string; [k: string]: unknown }[];
  metrics(): Promise<string>;
  kill(): Promise<void>;
}

/** Spawns `hbone proxy --config … --workload …` with every port but inbound/metrics off, logging at info.
 *  `nofile` sets its open-files limit (soft and hard); `env` adds environment variables (the limits). */
export async function spawnProxy(o: {
  config: string;
  caDir: string;
  workload: string;
  nofile?: number;
  env?: Record<string, string>;
}): Promise<ProxyProcess> {
  const args = proxyArgs(
    { configPath: o.config, caDir: o.caDir },
    o.workload, // admin and readiness off
    "--admin-port",
    "off",
    "--readiness-port",
    "off",
  );
  const startedAt = Date.now();
  const lines: { msg: string }[] = [];
  const p = await spawnHbone("proxy", args, [], {
    nofile: o.nofile,
    env: { HBONE_LOG_LEVEL: "info", ...o.env },
    onLine: (l) => {
      if (l.startsWith("{")) lines.push(JSON.parse(l) as { msg: string });
    },
  });
  const ready = p.ready as { inbound: string; metrics: number };
  const i = ready.inbound.lastIndexOf(":");
  return {
    ...p,
    startedAt,
    inbound: { host: ready.inbound.slice(0, i), port: Number(ready.inbound.slice(i + 1)) },
    metricsPort: ready.metrics,
    logs: () => lines,
    metrics: async () => (await fetch(`http://127.0.0.1:${ready.metrics}/metrics`)).text(),
    async kill() {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null) return;
      p.proc.kill("SIGKILL");
      await once(p.proc, "exit");
    },
  };
}

interface MtlsTarget {
  host: string;
  port: number;
  certificate: WorkloadCertificate;
  expected: Identity;
  localAddress?: string;
  timeoutMs?: number;
}

/** An HBONE client session to a proxy (mTLS, identity `expected` checked), from `localAddress` if given. */
export async function hboneSession(o: MtlsTarget & { session?: SessionOptions }): Promise<H2Session> {
  return H2Session.client(await mtls(o), o.session);
}

/** HBONE's mTLS to a proxy, identity `expected` checked, from `localAddress` if given. */
async function mtls(o: MtlsTarget): Promise<tls.TLSSocket> {
  const tcp = o.localAddress ? net.connect({ host: o.host, port: o.port, localAddress: o.localAddress }) : undefined;
  tcp?.on("error", () => {}); // the TLS layer reports it
  const { socket } = await connectHbone({
    host: o.host,
    port: o.port,
    certificate: o.certificate,
    expected: [o.expected],
    socket: tcp,
    timeoutMs: o.timeoutMs,
  });
  return socket;
}

/** The bytes a real TLS 1.3 client sends first (its ClientHello), captured from node:tls against a plain socket. */
export async function clientHello(): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const got = once(server, "connection") as Promise<[net.Socket]>;
  const c = tls.connect({
    host: "127.0.0.1",
    port: (server.address() as net.AddressInfo).port,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    ALPNProtocols: ["h2"],
  });
  c.on("error", () => {});
  const [s] = await got;
  const [first] = (await once(s, "data")) as [Buffer];
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
