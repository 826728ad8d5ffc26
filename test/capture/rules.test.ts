// Redirect mode rules: the printed ruleset (golden), option checks, the CLI; then, as root with iproute2 and
// nftables, the rules at work in namespaces this test creates: `hbone capture rules --netns NS --apply` installs
// table inet hbone; a plain connect inside the pod to one of its own addresses (IPv4 and IPv6) lands on :15001,
// DNS on :15053, loopback is left alone; from a second namespace TCP lands on :15006 except HBONE (15008), an
// excluded port and the probe source; a second apply does not duplicate; --remove restores the real destinations
// and leaves other tables alone.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CAPTURE_DEFAULTS,
  CaptureError,
  applyScript,
  captureRuleset,
  removeScript,
  runNft,
} from "../../host/capture/rules.js";
import {
  createNetns,
  requireNetns,
  runInNetns,
  spawnInNetns,
  vethPair,
  type Netns,
  type NetnsProcess,
} from "../helpers/netns.js";
import { asNobody } from "../helpers/system.js";

const CLI = join(import.meta.dirname, "..", "..", "dist", "host", "cli.js");

const GOLDEN = `table inet hbone {
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		ip saddr 169.254.7.127 return
		tcp dport 15008 return
		meta l4proto tcp redirect to :15006
	}
	chain output {
		type nat hook output priority -100; policy accept;
		meta mark & 0xfff == 0x539 return
		udp dport 53 redirect to :15053
		tcp dport 53 redirect to :15053
		ip daddr 127.0.0.1 return
		ip6 daddr ::1 return
		meta l4proto tcp redirect to :15001
	}
}
`;

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("capture rules (printed)", () => {
  it("the default ruleset, exactly (golden)", () => {
    expect(captureRuleset()).toBe(GOLDEN);
    expect(CAPTURE_DEFAULTS).toMatchObject({
      outboundPort: 15001,
      inboundPlaintextPort: 15006,
      hbonePort: 15008,
      dnsPort: 15053,
      mark: 0x539,
    });
  });

  it("ports, mark, table, exclusions and DNS capture are options", () => {
    const r = captureRuleset({
      table: "mesh",
      outboundPort: 25001,
      inboundPlaintextPort: 25006,
      hbonePort: 25008,
      dnsPort: 25053,
      mark: 0x100,
      excludeInboundPorts: [80, 22, 80],
    });
    expect(r).toContain("table inet mesh {");
    expect(r).toContain(
      "tcp dport 25008 return\n\t\ttcp dport { 22, 80 } return\n\t\tmeta l4proto tcp redirect to :25006",
    );
    expect(r).toContain("meta mark & 0xfff == 0x100 return");
    expect(r).toContain("udp dport 53 redirect to :25053");
    expect(r).toContain("redirect to :25001");
    expect(captureRuleset({ captureDns: false })).not.toContain("dport 53");
  });

  it("bad options are refused with the field named", () => {
    expect(() => captureRuleset({ outboundPort: 0 })).toThrow(/outboundPort: not a port: 0/);
    expect(() => captureRuleset({ excludeInboundPorts: [70000] })).toThrow(/excludeInboundPorts: not a port/);
    expect(() => captureRuleset({ table: "x; flush ruleset" })).toThrow(/bad table name/);
    expect(() => captureRuleset({ mark: 0x1000 })).toThrow(/does not fit mask 0xfff/);
    expect(() => captureRuleset({ probeSource: "::1" })).toThrow(/probeSource/);
    expect(() => removeScript("bad name")).toThrow(/bad table name/);
  });

  it("apply is one transaction that replaces only our table; remove deletes only our table", () => {
    expect(applyScript()).toBe(`table inet hbone\ndelete table inet hbone\n${GOLDEN}`);
    expect(removeScript()).toBe("table inet hbone\ndelete table inet hbone\n");
  });

  it("the CLI prints the rules (--host leaves SSH alone) and refuses bad usage", () => {
    const printed = cli("capture", "rules", "--netns", "pod-a");
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(GOLDEN);
    const host = cli("capture", "rules", "--host", "--dns-port", "off");
    expect(host.code).toBe(0);
    expect(host.stdout).toContain("tcp dport { 22 } return");
    expect(host.stdout).not.toContain("dport 53");
    expect(cli("capture", "rules", "--host", "--exclude-inbound-ports", "").stdout).toBe(GOLDEN);
    const neither = cli("capture", "rules");
    expect(neither.code).toBe(1);
    expect(neither.stderr).toMatch(/exactly one of --netns NAME or --host/);
    expect(cli("capture", "rules", "--host", "--apply", "--remove").stderr).toMatch(/exclude each other/);
    expect(cli("capture", "rules", "--host", "--outbound-port", "99999").stderr).toMatch(/--outbound-port: not a port/);
    expect(cli("capture", "nope").code).toBe(2);
  });

  it("without nft on PATH, --apply says what to install", () => {
    const r = spawnSync(process.execPath, [CLI, "capture", "rules", "--host", "--apply"], {
      encoding: "utf8",
      timeout: 20_000,
      env: { PATH: "/nonexistent" },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("hbone: nft not found: redirect mode needs nftables (apt-get install nftables)\n");
  });

  it("a missing namespace is a clear error", async () => {
    const err = await runNft({ netns: `hbt-missing-${process.pid}` }, removeScript()).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Without iproute2 the message names the package instead; both are CaptureErrors.
    expect(err).toBeInstanceOf(CaptureError);
    expect((err as Error).message).toMatch(/hbt-missing|iproute2/);
  });
});

// Listeners that answer with their name: TCP on each port given (host ::, so IPv4 and IPv6), UDP echo on others.
const TAGGED = `
import net from "node:net"; import dgram from "node:dgram";
const [tcp, udp] = process.argv.slice(1).map((s) => s ? s.split(",").map(Number) : []);
for (const p of tcp) net.createServer((s) => { s.on("error", () => {}); s.end("tcp:" + p); }).listen({ port: p, host: "::" });
for (const p of udp) { const u = dgram.createSocket("udp6"); u.on("message", (m, r) => u.send("udp:" + p, r.port, r.address)); u.bind(p, "::"); }
setTimeout(() => console.log("READY"), 300);
`;

// Connects to each host:port (TCP) or udp:host:port, prints what answered.
const PROBE = `
import net from "node:net"; import dgram from "node:dgram";
const tcp = (host, port) => new Promise((res) => {
  const c = net.connect({ host, port, timeout: 3000 }); let d = "";
  c.on("data", (x) => d += x); c.on("end", () => res(d)); c.on("timeout", () => { c.destroy(); res("timeout"); });
  c.on("error", (e) => res("error:" + e.code));
});
const udp = (host, port) => new Promise((res) => {
  const c = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  const t = setTimeout(() => { c.close(); res("timeout"); }, 2000);
  c.on("message", (m) => { clearTimeout(t); c.close(); res(String(m)); }); c.send("q", port, host);
});
const out = [];
for (const target of process.argv.slice(1)) {
  const u = target.startsWith("udp:"); const t = u ? target.slice(4) : target; const i = t.lastIndexOf(":");
  const host = t.slice(0, i).replace(/^\\[|\\]$/g, ""), port = Number(t.slice(i + 1));
  out.push(await (u ? udp(host, port) : tcp(host, port)));
}
console.log("RESULT " + JSON.stringify(out));
`;

const HAVE_NETNS = requireNetns();

describe.skipIf(!HAVE_NETNS)("capture rules in network namespaces (root, nftables)", () => {
  let pod: Netns;
  let peer: Netns;
  let listeners: NetnsProcess;
  const POD = "10.77.0.2";
  const POD6 = "fd00:77::2";
  const PEER = "10.77.0.3";

  beforeAll(async () => {
    pod = createNetns();
    peer = createNetns();
    const [, peerIf] = vethPair(pod, peer, `${POD}/24`, `${PEER}/24`, [`${POD6}/64`, "fd00:77::3/64"]);
    // The probe source sits on the peer too (as the kubelet's would on the node).
    peer.ip("addr", "add", "169.254.7.127/32", "dev", peerIf);
    pod.ip("route", "add", "169.254.7.127/32", "via", PEER);
    // Ports: 8080 the app, 15001/15006/15008 the proxy's, 22 ssh; UDP 53 a real resolver, 15053 the DNS proxy.
    listeners = spawnInNetns(pod, TAGGED, ["8080,15001,15006,15008,2222", "53,15053"]);
    await listeners.line((l) => l === "READY");
  });
  afterAll(async () => {
    await listeners?.stop();
    pod?.del();
    peer?.del();
  });

  const fromPod = (...targets: string[]) => runInNetns(pod, PROBE, targets).then((r) => JSON.parse(r) as string[]);
  const fromPeer = (...targets: string[]) => runInNetns(peer, PROBE, targets).then((r) => JSON.parse(r) as string[]);
  const fromProbeSource = () =>
    runInNetns(
      peer,
      PROBE.replace("net.connect({ host, port,", "net.connect({ host, port, localAddress: '169.254.7.127',"),
      [`${POD}:8080`],
    ).then((r) => JSON.parse(r) as string[]);
  const OUT = [`${POD}:8080`, `[${POD6}]:8080`, "127.0.0.1:8080", `udp:${POD}:53`];
  const IN = [`${POD}:8080`, `${POD}:15008`, `${POD}:2222`];

  it("without rules every connection reaches its real destination", async () => {
    expect(await fromPod(...OUT)).toEqual(["tcp:8080", "tcp:8080", "tcp:8080", "udp:53"]);
    expect(await fromPeer(...IN)).toEqual(["tcp:8080", "tcp:15008", "tcp:2222"]);
  });

  it("--apply: outbound to 15001 (IPv4 and IPv6), DNS to 15053, loopback untouched; inbound to 15006 except 15008, excluded ports and the probe source", async () => {
    const a = spawnSync(
      process.execPath,
      [CLI, "capture", "rules", "--netns", pod.name, "--apply", "--exclude-inbound-ports", "2222"],
      { encoding: "utf8", timeout: 20_000 },
    );
    expect(a.stderr).toBe("");
    expect(a.stdout).toBe(`applied table inet hbone in network namespace ${pod.name}\n`);
    const listed = pod.exec("nft", "list", "table", "inet", "hbone");
    for (const rule of [
      "redirect to :15001",
      "redirect to :15006",
      "udp dport 53 redirect to :15053",
      "tcp dport 15008 return",
      "ip saddr 169.254.7.127 return",
      "ip daddr 127.0.0.1 return",
      "ip6 daddr ::1 return",
      "== 0x00000539 return",
      "tcp dport 2222 return",
    ]) {
      expect(listed).toContain(rule);
    }
    expect(await fromPod(...OUT)).toEqual(["tcp:15001", "tcp:15001", "tcp:8080", "udp:15053"]);
    expect(await fromPeer(...IN)).toEqual(["tcp:15006", "tcp:15008", "tcp:2222"]);
    expect(await fromProbeSource()).toEqual(["tcp:8080"]);

    // Applying again replaces the table: the same rules, not twice as many.
    const count = (s: string) => s.split("\n").filter((l) => l.includes("redirect")).length;
    expect(
      spawnSync(process.execPath, [
        CLI,
        "capture",
        "rules",
        "--netns",
        pod.name,
        "--apply",
        "--exclude-inbound-ports",
        "2222",
      ]).status,
    ).toBe(0);
    expect(count(pod.exec("nft", "list", "table", "inet", "hbone"))).toBe(count(listed));
  });

  it("--remove deletes only our table; connections reach their real destinations again", async () => {
    pod.exec("nft", "add", "table", "inet", "someone-else");
    const r = spawnSync(process.execPath, [CLI, "capture", "rules", "--netns", pod.name, "--remove"], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(r.status).toBe(0);
    const ruleset = pod.exec("nft", "list", "ruleset");
    expect(ruleset).not.toContain("table inet hbone");
    expect(ruleset).toContain("table inet someone-else");
    expect(await fromPod(...OUT)).toEqual(["tcp:8080", "tcp:8080", "tcp:8080", "udp:53"]);
    expect(await fromPeer(...IN)).toEqual(["tcp:8080", "tcp:15008", "tcp:2222"]);
    // Removing what is not there succeeds.
    expect(spawnSync(process.execPath, [CLI, "capture", "rules", "--netns", pod.name, "--remove"]).status).toBe(0);
  });

  it("without CAP_NET_ADMIN (as nobody) --apply is refused with a message naming the capability", () => {
    // As nobody when nobody can run the CLI from this checkout; else as root with CAP_NET_ADMIN dropped.
    const without = asNobody(CLI) ?? ["--bounding-set=-net_admin", "--inh-caps=-net_admin", process.execPath, CLI];
    const r = spawnSync("setpriv", [...without, "capture", "rules", "--host", "--apply"], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^hbone: nft on the host: not permitted: installing rules needs root \(CAP_NET_ADMIN\): .*Operation not permitted/,
    );
  });

  it("inside a namespace without nft on PATH, --apply says what to install", () => {
    const bin = mkdtempSync(join(tmpdir(), "hbone-path-"));
    try {
      symlinkSync(execFileSync("sh", ["-c", "command -v ip"], { encoding: "utf8" }).trim(), join(bin, "ip"));
      const r = spawnSync(process.execPath, [CLI, "capture", "rules", "--netns", pod.name, "--apply"], {
        encoding: "utf8",
        timeout: 20_000,
        env: { PATH: bin },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /^hbone: nft not found: redirect mode needs nftables \(apt-get install nftables\): exec of "nft" failed/,
      );
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it("nft refusing the rules is reported with nft's message", async () => {
    const err = await runNft({ netns: pod.name }, "table inet hbone { chain c { bogus } }").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CaptureError);
    expect((err as Error).message).toMatch(
      new RegExp(`nft in network namespace ${pod.name} failed \\(exit 1\\): .*syntax error`, "s"),
    );
  });
});

// The DNS proxy (dist build) inside a pod namespace on 127.0.0.1:15053, with one global service; its upstream is
// a resolver in the peer namespace on port 5353 (port 53 would be redirected back to the proxy: its own sockets
// would need SO_MARK 0x539 for that, which the node proxy sets).
const DNS_IN_POD = `
import { DnsProxy } from ${JSON.stringify(new URL("../../dist/host/dns/server.js", import.meta.url).href)};
import { ProxyState, ProxyStateUpdater } from ${JSON.stringify(new URL("../../dist/host/state/index.js", import.meta.url).href)};
import { newService } from ${JSON.stringify(new URL("../../dist/host/model/index.js", import.meta.url).href)};
import net from "node:net";
const state = new ProxyState();
new ProxyStateUpdater(state).apply({ workloads: [], policies: [], serviceScopeConfigs: [], services: [
  newService({ name: "payments", namespace: "shop", hostname: "payments.shop.svc.cluster.local", labels: { "istio.io/global": "true" },
    vips: [{ network: "", address: "10.96.0.30" }] }) ] });
await DnsProxy.start({ state, namespace: "shop", upstreams: [{ host: process.argv[1], port: 5353 }], listen: { host: "127.0.0.1", port: 15053 } });
net.createServer((s) => { s.on("error", () => {}); s.end("tcp:15001"); }).listen(15001, "127.0.0.1", () => console.log("READY"));
`;

// A resolver on UDP 5353 that knows one outside name.
const UPSTREAM = `
import dgram from "node:dgram";
import * as packet from ${JSON.stringify(new URL("../../node_modules/dns-packet/index.js", import.meta.url).href)};
const u = dgram.createSocket("udp4");
u.on("message", (m, r) => {
  const q = packet.decode(m); const name = q.questions[0].name;
  const found = name === "example.org";
  u.send(packet.encode({ type: "response", id: q.id, flags: found ? 0 : 3, questions: q.questions,
    answers: found ? [{ type: "A", name, ttl: 60, data: "192.0.2.1" }] : [] }), r.port, r.address);
});
u.bind(5353, () => console.log("READY"));
`;

// An unmodified client: asks "the resolver" at the peer's address, port 53, then connects to what it got.
const LOOKUP_AND_CONNECT = `
import { Resolver } from "node:dns/promises"; import net from "node:net";
const r = new Resolver({ timeout: 2000, tries: 2 }); r.setServers([process.argv[1]]);
const vip = (await r.resolve4("payments.shop"))[0];
const outside = await r.resolve4("example.org").catch((e) => e.code);
const answer = await new Promise((res) => { const c = net.connect(9080, vip); let d = ""; c.on("data", (x) => d += x);
  c.on("end", () => res(d)); c.on("error", (e) => res("error:" + e.code)); });
console.log("RESULT " + JSON.stringify({ vip, outside, answer }));
`;

describe.skipIf(!HAVE_NETNS)("capture rules with the DNS proxy in a pod namespace (root, nftables)", () => {
  let pod: Netns;
  let peer: Netns;
  const procs: NetnsProcess[] = [];

  beforeAll(async () => {
    pod = createNetns();
    peer = createNetns();
    vethPair(pod, peer, "10.78.0.2/24", "10.78.0.3/24");
    pod.ip("route", "add", "default", "via", "10.78.0.3");
    for (const [ns, script, args] of [
      [pod, DNS_IN_POD, ["10.78.0.3"]],
      [peer, UPSTREAM, []],
    ] as const) {
      const p = spawnInNetns(ns, script, [...args]);
      procs.push(p);
      await p.line((l) => l === "READY");
    }
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    pod?.del();
    peer?.del();
  });

  it("a lookup of a global service's short name from the pod is answered by the proxy, and the connect to its VIP is captured", async () => {
    expect(spawnSync(process.execPath, [CLI, "capture", "rules", "--netns", pod.name, "--apply"]).status).toBe(0);
    const r = JSON.parse(await runInNetns(pod, LOOKUP_AND_CONNECT, ["10.78.0.3"])) as Record<string, unknown>;
    expect(r).toEqual({ vip: "10.96.0.30", outside: ["192.0.2.1"], answer: "tcp:15001" });
    // Without the rules the same client asks the peer's port 53, where nothing answers.
    expect(spawnSync(process.execPath, [CLI, "capture", "rules", "--netns", pod.name, "--remove"]).status).toBe(0);
    await expect(runInNetns(pod, LOOKUP_AND_CONNECT, ["10.78.0.3"], 10_000)).rejects.toThrow(
      /ECONNREFUSED|ETIMEOUT|exited/,
    );
  });
});
