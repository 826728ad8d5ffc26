// The DNS proxy as its own process (node running dist/host/dns/server.js, as the node proxy will), under what a
// hostile client sends all at once: random datagrams, crafted headers, hanging and lying TCP connections, a query
// flood to a slow upstream. The process must stay up, keep answering over UDP and TCP, and stay within 64 MiB of
// resident memory growth.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Resolver } from "node:dns/promises";
import * as packet from "dns-packet";
import { FakeUpstream } from "../helpers/dns-upstream.js";

const DIST = join(import.meta.dirname, "..", "..", "dist", "host");
const url = (f: string) => pathToFileURL(join(DIST, f)).href;

const SCRIPT = `
import { DnsProxy } from ${JSON.stringify(url("dns/server.js"))};
import { ProxyState, ProxyStateUpdater } from ${JSON.stringify(url("state/index.js"))};
import { newService } from ${JSON.stringify(url("model/index.js"))};
const state = new ProxyState();
new ProxyStateUpdater(state).apply({ workloads: [], policies: [], serviceScopeConfigs: [], services: [
  newService({ name: "reviews", namespace: "default", hostname: "reviews.default.svc.cluster.local", vips: [{ network: "", address: "10.96.0.10" }] }) ] });
const dns = await DnsProxy.start({ state, namespace: "default", upstreams: [{ host: "127.0.0.1", port: Number(process.argv[1]) }],
  listen: { host: "127.0.0.1", port: 0 }, maxInflight: 64, upstreamTimeoutMs: 1000, tcpIdleMs: 1000, maxTcpConnections: 64 });
console.log("READY " + JSON.stringify(dns.address));
`;

let upstream: FakeUpstream;
let child: ChildProcess;
let addr: { udpPort: number; tcpPort: number };

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

async function legitUdp(): Promise<string[]> {
  const r = new Resolver({ timeout: 1000, tries: 3 });
  r.setServers([`127.0.0.1:${addr.udpPort}`]);
  return r.resolve4("reviews");
}

async function legitTcp(): Promise<string | undefined> {
  const s = net.connect(addr.tcpPort, "127.0.0.1");
  s.on("error", () => undefined);
  await once(s, "connect");
  s.write(packet.streamEncode({ type: "query", id: 9, questions: [{ type: "A", name: "reviews" }] }));
  let buf: Buffer = Buffer.alloc(0);
  for await (const c of s) {
    buf = Buffer.concat([buf, c as Buffer]);
    if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) break;
  }
  s.destroy();
  const a = packet.streamDecode(buf).answers?.[0];
  return a && "data" in a ? String(a.data) : undefined;
}

beforeAll(async () => {
  upstream = await FakeUpstream.start();
  child = spawn(process.execPath, ["--input-type=module", "-e", SCRIPT, "--", String(upstream.port)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, HBONE_LOG_LEVEL: "error" },
  });
  child.on("error", () => undefined);
  let out = "";
  child.stdout!.setEncoding("utf8");
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`DNS proxy process did not start: ${out}`)), 15_000);
    child.stdout!.on("data", (d: string) => {
      out += d;
      const m = /READY (.*)\n/.exec(out);
      if (m) {
        clearTimeout(t);
        addr = JSON.parse(m[1]!) as typeof addr;
        resolve();
      }
    });
  });
});
afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill("SIGKILL");
    await once(child, "exit");
  }
  await upstream?.stop();
});

describe("DNS proxy process under hostile clients", () => {
  it("survives garbage, hanging TCP and a flood; keeps answering within its memory bound", async () => {
    expect(await legitUdp()).toEqual(["10.96.0.10"]);
    const rss0 = rssKiB(child.pid!);
    upstream.delayMs = 300;
    let seed = 99;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const sock = dgram.createSocket("udp4");
    sock.on("message", () => undefined);
    const tcps: net.Socket[] = [];
    try {
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 500; i++) {
          const kind = i % 3;
          let b: Buffer;
          if (kind === 0) {
            b = Buffer.alloc(Math.floor(rnd() * 1500));
            for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
          } else if (kind === 1) {
            b = packet.encode({
              type: "query",
              id: i,
              flags: packet.RECURSION_DESIRED,
              questions: [{ type: "A", name: `f${round}-${i}.example.org` }],
            });
          } else {
            b = Buffer.alloc(12 + Math.floor(rnd() * 40), 0xc0); // pointers everywhere, all counts 0xc0c0
            b[2] = 0x01;
          }
          sock.send(b, addr.udpPort, "127.0.0.1");
        }
        // TCP: a hanging half prefix, a lying length, random bytes.
        for (let k = 0; k < 5; k++) {
          const s = net.connect(addr.tcpPort, "127.0.0.1");
          s.on("error", () => undefined);
          s.resume(); // read, so the proxy's close is seen here
          s.on("connect", () =>
            s.write([Buffer.from([0x01]), Buffer.from([0x0f, 0xff, 1, 2]), Buffer.alloc(300, round)][k % 3]!),
          );
          tcps.push(s);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(child.exitCode).toBeNull();
      expect(await legitUdp()).toEqual(["10.96.0.10"]);
      // The hostile connections fill the TCP cap until the proxy's idle timeout (1 s) closes them, which it does
      // although this side never closes them.
      await new Promise((r) => setTimeout(r, 1500));
      expect(tcps.filter((s) => s.readyState === "open")).toHaveLength(0);
      expect(await legitTcp()).toBe("10.96.0.10");
    } finally {
      sock.close();
      for (const s of tcps) s.destroy();
      upstream.delayMs = 0;
    }
    expect(child.exitCode).toBeNull();
    const grownKiB = rssKiB(child.pid!) - rss0;
    expect(grownKiB).toBeLessThan(64 * 1024);
    expect(await legitUdp()).toEqual(["10.96.0.10"]);
    upstream.records.set("A example.org", ["192.0.2.7"]);
    const r = new Resolver({ timeout: 1000, tries: 3 });
    r.setServers([`127.0.0.1:${addr.udpPort}`]);
    expect(await r.resolve4("example.org")).toEqual(["192.0.2.7"]);
  });
});
