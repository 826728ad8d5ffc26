// A pod's DNS proxy forwards names outside the mesh from the pod's own network namespace, marked, as ztunnel
// does: the upstream resolver here (a fake one, test/helpers/dns-upstream.ts) listens on 127.0.0.1:53 inside the
// pod's namespace only, and the pod carries istio-cni's capture rules (port 53 → 15053 unless marked 0x539).
// A client in the pod asks over UDP and TCP: the answer is the pod-only resolver's, and the resolver saw both
// queries. The control — the same proxy forwarding from the test's namespace (LOCAL_SOCKETS) — never gets that
// answer, so the test fails if forwarding leaves from the wrong namespace. Mesh names are still answered locally.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSync } from "node:fs";
import * as packet from "dns-packet";
import { newService, type MeshConfig } from "../../host/model/index.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { captureRuleset } from "../../host/capture/rules.js";
import { openNetns } from "../../host/sys/netns.js";
import { PROXY_MARK, createListenSocketIn, createUdpSocketIn } from "../../host/sys/socket.js";
import { DnsProxy } from "../../host/dns/server.js";
import { LOCAL_SOCKETS } from "../../host/dns/upstream.js";
import { startPodDns } from "../../host/node/workload-proxy.js";
import { FakeUpstream } from "../helpers/dns-upstream.js";
import { createNetns, requireNetns, runInNetns, type Netns } from "../helpers/netns.js";

const OK = requireNetns();

/** Asks 127.0.0.1:PORT inside the pod: argv = port, hex of a query; over UDP and TCP; prints both replies' hex. */
const ASK = `
import dgram from "node:dgram"; import net from "node:net";
const [port, hex] = process.argv.slice(-2); const q = Buffer.from(hex, "hex");
const t = setTimeout(() => { console.log("RESULT timeout"); process.exit(0); }, 8000);
const udp = await new Promise((res) => { const s = dgram.createSocket("udp4");
  s.on("message", (m) => { s.close(); res(m.toString("hex")); }); s.send(q, Number(port), "127.0.0.1"); });
const tcp = await new Promise((res) => { const s = net.connect(Number(port), "127.0.0.1"); let b = Buffer.alloc(0);
  s.on("error", () => res("ERR")); s.on("connect", () => s.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q])));
  s.on("data", (d) => { b = Buffer.concat([b, d]); if (b.length >= 2 && b.length >= b.readUInt16BE(0) + 2) { s.destroy(); res(b.subarray(2).toString("hex")); } }); });
clearTimeout(t); console.log("RESULT " + udp + " " + tcp); process.exit(0);`;

const query = (name: string) =>
  packet
    .encode({ type: "query", id: 4242, flags: packet.RECURSION_DESIRED, questions: [{ type: "A", name }] })
    .toString("hex");

/** The A answers (or the rcode) of each of ASK's replies. */
const answers = (result: string) =>
  result.split(" ").map((h) => {
    if (!/^[0-9a-f]+$/.test(h)) return h;
    const r = packet.decode(Buffer.from(h, "hex"));
    const a = (r.answers ?? []).map((x) => ("data" in x ? String(x.data) : "?"));
    return a.length ? a.join(",") : `rcode ${r.flags! & 15}`;
  });

const state = new ProxyState();
new ProxyStateUpdater(state).apply({
  workloads: [],
  services: [
    newService({
      name: "echo",
      namespace: "default",
      hostname: "echo.default.svc.cluster.local",
      vips: [{ network: "", address: "10.96.0.10" }],
    }),
  ],
  policies: [],
  serviceScopeConfigs: [],
} satisfies MeshConfig);

describe.skipIf(!OK)("a pod's DNS proxy forwards from the pod's network namespace", () => {
  let pod: Netns, podFd: number, upstream: FakeUpstream;
  const proxies: DnsProxy[] = [];

  beforeAll(async () => {
    pod = createNetns("dns");
    pod.nft(captureRuleset());
    podFd = openNetns(pod.path);
    upstream = await FakeUpstream.start({ netnsFd: podFd, port: 53 });
    upstream.records.set("A outside.example", ["192.0.2.7"]);
    proxies.push(
      await startPodDns({ state }, podFd, { mark: PROXY_MARK }, { namespace: "default", network: "" }, [
        { host: "127.0.0.1", port: 53 },
      ]),
    );
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    await upstream?.stop();
    if (podFd !== undefined) closeSync(podFd);
    pod?.del();
  });

  it("a name outside the mesh is answered by the resolver only the pod reaches, over UDP and TCP", async () => {
    expect(answers(await runInNetns(pod, ASK, ["15053", query("outside.example")]))).toEqual([
      "192.0.2.7",
      "192.0.2.7",
    ]);
    expect(upstream.asked.filter((a) => a.name === "outside.example").map((a) => a.tcp)).toEqual([false, true]);
    // Mesh names are the proxy's own answer, not forwarded.
    expect(answers(await runInNetns(pod, ASK, ["15053", query("echo.default.svc.cluster.local")]))).toEqual([
      "10.96.0.10",
      "10.96.0.10",
    ]);
    expect(upstream.asked.some((a) => a.name.startsWith("echo."))).toBe(false);
  });

  it("control: the same proxy forwarding from the test's namespace never gets the pod's answer", async () => {
    const tcp = createListenSocketIn(podFd, { host: "127.0.0.1", port: 15054 });
    const udpFd = createUdpSocketIn(podFd, { host: "127.0.0.1", port: 15054 });
    proxies.push(
      await DnsProxy.start({
        state,
        namespace: "default",
        listen: { udpFd, tcpFd: tcp.fd, family: 4 },
        upstreams: [{ host: "127.0.0.1", port: 53 }],
        upstreamSockets: LOCAL_SOCKETS,
        upstreamTimeoutMs: 1000,
      }),
    );
    const before = upstream.asked.length;
    const got = answers(await runInNetns(pod, ASK, ["15054", query("outside.example")]));
    expect(got).toHaveLength(2);
    expect(got).not.toContain("192.0.2.7");
    expect(upstream.asked.length).toBe(before);
  });
});
