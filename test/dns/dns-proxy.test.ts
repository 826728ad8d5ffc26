// The DNS proxy over real UDP and TCP on loopback, asked by node:dns (c-ares) and by a raw TCP client: mesh names
// (a local service, a global service whose endpoints are all in the other cluster, short names relative to the
// client's namespace, a search domain appended to a complete name, AAAA, NODATA, namespace visibility, a live
// state update) answered from ProxyState; everything else relayed to a fake upstream resolver on loopback
// (answers and NXDOMAIN, over the client's transport), SERVFAIL when the upstream is silent. Then what a hostile
// client would send: garbage datagrams, crafted headers, responses, oversized queries, truncated and lying TCP
// length prefixes, idle and excess TCP connections, a flood of queries past the in-flight cap. The proxy keeps
// answering, and its in-flight and connection counts stay within their caps and return to zero.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import dgram from "node:dgram";
import net from "node:net";
import { once } from "node:events";
import { Resolver } from "node:dns/promises";
import * as packet from "dns-packet";
import { newService, newWorkload, type MeshConfig } from "../../host/model/index.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { DnsProxy, type DnsProxyOptions } from "../../host/dns/server.js";
import { MeshNames } from "../../host/dns/names.js";
import { parseResolvConf } from "../../host/dns/upstream.js";
import { FakeUpstream } from "../helpers/dns-upstream.js";

const REVIEWS = "reviews.default.svc.cluster.local";
const PAYMENTS = "payments.shop.svc.cluster.local";

function meshConfig(): MeshConfig {
  return {
    workloads: [
      newWorkload({
        uid: "c1//Pod/default/reviews-1",
        name: "reviews-1",
        namespace: "default",
        workloadIps: ["10.1.0.5"],
        clusterId: "c1",
        services: { [`default/${REVIEWS}`]: {} },
      }),
      // The global service's only endpoint is in the other cluster (no IP here, behind its network's gateway).
      newWorkload({
        uid: "c2//Pod/shop/payments-1",
        name: "payments-1",
        namespace: "shop",
        clusterId: "c2",
        network: "net2",
        networkGateway: { destination: { network: "net2", address: "172.16.0.1" }, hboneMtlsPort: 15008 },
        services: { [`shop/${PAYMENTS}`]: {} },
      }),
    ],
    services: [
      newService({
        name: "reviews",
        namespace: "default",
        hostname: REVIEWS,
        ports: { 9080: 9080 },
        vips: [
          { network: "", address: "10.96.0.10" },
          { network: "", address: "fd00:96::10" },
        ],
      }),
      newService({
        name: "ratings",
        namespace: "other",
        hostname: "ratings.other.svc.cluster.local",
        vips: [{ network: "", address: "10.96.0.20" }],
      }),
      newService({
        name: "payments",
        namespace: "shop",
        hostname: PAYMENTS,
        labels: { "istio.io/global": "true" },
        vips: [
          { network: "net1", address: "10.96.0.30" },
          { network: "net2", address: "10.200.0.30" },
        ],
      }),
      newService({
        name: "api",
        namespace: "default",
        hostname: "api.example.com",
        vips: [{ network: "", address: "240.240.0.1" }],
      }),
      newService({
        name: "private",
        namespace: "secret",
        hostname: "private.secret.svc.cluster.local",
        visibility: "NAMESPACE",
        vips: [{ network: "", address: "10.96.0.99" }],
      }),
    ],
    policies: [],
    serviceScopeConfigs: [],
  };
}

const state = new ProxyState();
const updater = new ProxyStateUpdater(state);
updater.apply(meshConfig());

let upstream: FakeUpstream;
const proxies: DnsProxy[] = [];

async function startProxy(o: Partial<DnsProxyOptions> = {}): Promise<DnsProxy> {
  const p = await DnsProxy.start({
    state,
    namespace: "default",
    network: "net1",
    upstreams: [upstream.upstream],
    listen: { host: "127.0.0.1", port: 0 },
    ...o,
  });
  proxies.push(p);
  return p;
}

function resolver(p: DnsProxy): Resolver {
  const r = new Resolver({ timeout: 3000, tries: 1 });
  r.setServers([`127.0.0.1:${p.address.udpPort}`]);
  return r;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** One UDP exchange; undefined when nothing came back within `ms`. */
async function udpAsk(port: number, msg: Buffer, ms = 1000): Promise<Buffer | undefined> {
  const s = dgram.createSocket("udp4");
  try {
    const reply = once(s, "message").then(([m]) => m as Buffer);
    s.send(msg, port, "127.0.0.1");
    return await Promise.race([reply, new Promise<undefined>((r) => setTimeout(r, ms))]);
  } finally {
    s.close();
  }
}

/** Queries over one TCP connection (all written at once); the decoded replies in order of arrival. */
async function tcpAsk(port: number, queries: packet.Packet[]): Promise<packet.DecodedPacket[]> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  await once(s, "connect");
  s.write(Buffer.concat(queries.map((q) => packet.streamEncode(q))));
  const out: packet.DecodedPacket[] = [];
  let buf: Buffer = Buffer.alloc(0);
  const deadline = Date.now() + 5000;
  for await (const chunk of s) {
    buf = Buffer.concat([buf, chunk as Buffer]);
    while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
      out.push(packet.streamDecode(buf) as packet.DecodedPacket);
      buf = buf.subarray(buf.readUInt16BE(0) + 2);
    }
    if (out.length === queries.length || Date.now() > deadline) break;
  }
  s.destroy();
  return out;
}

/** dns-packet decodes the rcode; its type declarations leave it out. */
const rcodeOf = (m: Buffer): string => (packet.decode(m) as packet.DecodedPacket & { rcode?: string }).rcode ?? "?";

async function until(check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const query = (name: string, type: packet.RecordType = "A", id = 4242): packet.Packet => ({
  type: "query",
  id,
  flags: packet.RECURSION_DESIRED,
  questions: [{ type, name, class: "IN" }],
});

beforeAll(async () => {
  upstream = await FakeUpstream.start();
  upstream.records.set("A example.org", ["192.0.2.1"]);
  upstream.records.set("AAAA example.org", ["2001:db8::1"]);
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await upstream?.stop();
});

describe("DNS proxy: mesh names", () => {
  let dns: DnsProxy;
  let r: Resolver;
  beforeAll(async () => {
    dns = await startProxy();
    r = resolver(dns);
  });

  it("a local service's hostname: A and AAAA with its VIPs, authoritative, TTL 30", async () => {
    upstream.asked.length = 0;
    expect(await r.resolve4(REVIEWS, { ttl: true })).toEqual([{ address: "10.96.0.10", ttl: 30 }]);
    expect(await r.resolve6(REVIEWS)).toEqual(["fd00:96::10"]);
    expect(await r.resolve4(`${REVIEWS.toUpperCase()}`)).toEqual(["10.96.0.10"]);
    const raw = packet.decode((await udpAsk(dns.address.udpPort, packet.encode(query(REVIEWS))))!);
    expect(raw).toMatchObject({ id: 4242, flag_qr: true, flag_aa: true, flag_rd: true, rcode: "NOERROR" });
    expect(upstream.asked).toEqual([]);
  });

  it("a global service that exists only in the other cluster resolves to its VIP on the client's network", async () => {
    expect(await r.resolve4(PAYMENTS)).toEqual(["10.96.0.30"]);
    expect(await r.resolve4("payments.shop")).toEqual(["10.96.0.30"]);
    // A client on the other network gets that network's VIP.
    const other = await startProxy({ network: "net2" });
    expect(await resolver(other).resolve4(PAYMENTS)).toEqual(["10.200.0.30"]);
  });

  it("short names relative to the client's namespace; a search domain after a complete name", async () => {
    for (const n of ["reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local."]) {
      expect(await r.resolve4(n), n).toEqual(["10.96.0.10"]);
    }
    expect(await r.resolve4("ratings.other")).toEqual(["10.96.0.20"]);
    expect(await r.resolve4("api.example.com.default.svc.cluster.local")).toEqual(["240.240.0.1"]);
    // `ratings` alone is not in the client's namespace: not ours, forwarded, NXDOMAIN from upstream.
    upstream.asked.length = 0;
    expect(await code(r.resolve4("ratings"))).toBe("ENOTFOUND");
    expect(upstream.asked).toEqual([{ name: "ratings", type: "A", tcp: false }]);
  });

  it("a mesh name without a record of the asked type is NODATA, not forwarded", async () => {
    upstream.asked.length = 0;
    expect(await code(r.resolve6("ratings.other"))).toBe("ENODATA");
    expect(await code(r.resolveTxt(REVIEWS))).toBe("ENODATA");
    expect(upstream.asked).toEqual([]);
  });

  it("a NAMESPACE-visible service answers only clients in its namespace", async () => {
    expect(await code(r.resolve4("private.secret.svc.cluster.local"))).toBe("ENOTFOUND");
    const inSecret = await startProxy({ namespace: "secret" });
    expect(await resolver(inSecret).resolve4("private")).toEqual(["10.96.0.99"]);
  });

  it("follows state updates live", async () => {
    expect(await code(r.resolve4("details"))).toBe("ENOTFOUND");
    updater.update({
      services: [
        newService({
          name: "details",
          namespace: "default",
          hostname: "details.default.svc.cluster.local",
          vips: [{ network: "", address: "10.96.0.40" }],
        }),
      ],
    });
    expect(await r.resolve4("details")).toEqual(["10.96.0.40"]);
    updater.update({ removeServices: ["default/details.default.svc.cluster.local"] });
    expect(await code(r.resolve4("details"))).toBe("ENOTFOUND");
  });

  it("the names rules, directly", () => {
    const names = new MeshNames(state, { clusterDomain: "cluster.local." });
    const c = { namespace: "default" };
    expect(names.lookup("reviews.default.svc.cluster.local", c)?.name).toBe("reviews");
    expect(names.lookup("reviews.default.svc.cluster", c)).toBeUndefined();
    expect(names.lookup("", c)).toBeUndefined();
    expect(names.lookup(`${"a".repeat(254)}`, c)).toBeUndefined();
    expect(names.resolve("ratings.other", 6, c)).toMatchObject({ addresses: [] });
    expect(parseResolvConf("# c\nnameserver 10.0.0.1\nsearch x\nnameserver fe80::1%eth0\nnameserver bogus\n")).toEqual([
      { host: "10.0.0.1", port: 53 },
      { host: "fe80::1%eth0", port: 53 },
    ]);
  });
});

describe("DNS proxy: forwarding", () => {
  let dns: DnsProxy;
  beforeAll(async () => {
    dns = await startProxy();
  });

  it("other names go to the upstream: its answers and its NXDOMAIN come back", async () => {
    const r = resolver(dns);
    upstream.asked.length = 0;
    expect(await r.resolve4("example.org")).toEqual(["192.0.2.1"]);
    expect(await r.resolve6("example.org")).toEqual(["2001:db8::1"]);
    expect(await code(r.resolve4("nope.example.org"))).toBe("ENOTFOUND");
    expect(upstream.asked.map((a) => `${a.type} ${a.name} ${a.tcp}`)).toEqual([
      "A example.org false",
      "AAAA example.org false",
      "A nope.example.org false",
    ]);
  });

  it("over TCP: pipelined queries, mesh answers and forwards (relayed over TCP)", async () => {
    upstream.asked.length = 0;
    const replies = await tcpAsk(dns.address.tcpPort, [
      query(REVIEWS, "A", 1),
      query("example.org", "A", 2),
      query("nope.example.org", "A", 3),
      query("reviews", "AAAA", 4),
    ]);
    const byId = new Map(replies.map((p) => [p.id, p]));
    expect(byId.get(1)!.answers).toMatchObject([{ type: "A", data: "10.96.0.10" }]);
    expect(byId.get(2)!.answers).toMatchObject([{ type: "A", data: "192.0.2.1" }]);
    expect(byId.get(3)).toMatchObject({ rcode: "NXDOMAIN" });
    expect(byId.get(4)!.answers).toMatchObject([{ type: "AAAA", data: "fd00:96::10" }]);
    expect(upstream.asked.every((a) => a.tcp)).toBe(true);
    expect(upstream.asked).toHaveLength(2);
  });

  it("a silent upstream: SERVFAIL after the upstream timeout; the proxy keeps answering", async () => {
    const quick = await startProxy({ upstreamTimeoutMs: 300 });
    upstream.silent = true;
    try {
      const t0 = Date.now();
      expect(await code(resolver(quick).resolve4("example.org"))).toBe("ESERVFAIL");
      expect(Date.now() - t0).toBeLessThan(2500);
      expect(quick.stats.upstreamFailures).toBe(1);
      expect(await resolver(quick).resolve4("reviews")).toEqual(["10.96.0.10"]);
    } finally {
      upstream.silent = false;
    }
    expect(quick.load.inflight).toBe(0);
  });

  it("on IPv6 loopback too (UDP and TCP)", async () => {
    const v6 = await startProxy({ listen: { host: "::1", port: 0 } });
    const r = new Resolver({ timeout: 3000, tries: 1 });
    r.setServers([`[::1]:${v6.address.udpPort}`]);
    expect(await r.resolve6("reviews")).toEqual(["fd00:96::10"]);
    expect(await r.resolve4("example.org")).toEqual(["192.0.2.1"]);
    const s = net.connect(v6.address.tcpPort, "::1");
    s.on("error", () => undefined);
    await once(s, "connect");
    s.write(packet.streamEncode(query("reviews")));
    const [chunk] = (await once(s, "data")) as [Buffer];
    s.destroy();
    expect(packet.streamDecode(chunk).answers).toMatchObject([{ data: "10.96.0.10" }]);
  });

  it("no upstream at all: SERVFAIL for names outside the mesh", async () => {
    const none = await startProxy({ upstreams: [] });
    expect(await code(resolver(none).resolve4("example.org"))).toBe("ESERVFAIL");
    expect(await resolver(none).resolve4("reviews")).toEqual(["10.96.0.10"]);
  });
});

describe("DNS proxy: hostile clients", () => {
  it("garbage datagrams, crafted headers, responses and oversized queries: FORMERR or silence, never a crash", async () => {
    const dns = await startProxy();
    const port = dns.address.udpPort;
    const sock = dgram.createSocket("udp4");
    const replies: Buffer[] = [];
    sock.on("message", (m) => replies.push(m));
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.alloc(Math.floor(rnd() * 600));
      for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
      if (b.length >= 3) b[2]! &= 0x7f; // mostly queries, so the parser is reached
      sock.send(b, port, "127.0.0.1");
      if (i % 200 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    const header = (qd: number, flags = 0x0100) => {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(0xbeef, 0);
      h.writeUInt16BE(flags, 2);
      h.writeUInt16BE(qd, 4);
      return h;
    };
    const loop = Buffer.concat([header(1), Buffer.from([0xc0, 12, 0, 1, 0, 1])]); // a name pointing at itself
    const counts = Buffer.concat([header(65535), Buffer.alloc(4)]);
    const asResponse = packet.encode({ ...query(REVIEWS), type: "response" });
    const fatLabel = Buffer.concat([
      header(1),
      Buffer.from([63]),
      Buffer.alloc(63, 0x61),
      Buffer.from([0, 0, 1, 0, 1]),
    ]);
    // Let the proxy drain what the kernel queued (UDP drops what overflows its receive buffer, as it should).
    await new Promise((r) => setTimeout(r, 300));
    const formerr = packet.decode((await udpAsk(port, loop))!);
    expect(formerr).toMatchObject({ id: 0xbeef, rcode: "FORMERR", flag_qr: true });
    expect(packet.decode((await udpAsk(port, counts))!)).toMatchObject({ id: 0xbeef, rcode: "FORMERR" });
    expect(await udpAsk(port, asResponse, 300)).toBeUndefined();
    expect(await udpAsk(port, Buffer.alloc(5), 300)).toBeUndefined();
    expect(await udpAsk(port, Buffer.concat([packet.encode(query(REVIEWS)), Buffer.alloc(5000)]), 300)).toBeUndefined();
    expect(packet.decode((await udpAsk(port, header(2)))!)).toMatchObject({ rcode: "FORMERR" });
    expect(
      packet.decode((await udpAsk(port, Buffer.concat([header(1, 0x2900), Buffer.from([0, 0, 1, 0, 1])])))!),
    ).toMatchObject({ rcode: "NOTIMP" });
    expect(rcodeOf((await udpAsk(port, fatLabel))!)).toMatch(/NOERROR|NXDOMAIN/);
    sock.close();
    expect(dns.stats.malformed).toBeGreaterThan(100);
    expect(await resolver(dns).resolve4("reviews")).toEqual(["10.96.0.10"]);
  });

  it("TCP: lying and truncated length prefixes, idle and excess connections are closed; fresh queries still work", async () => {
    const dns = await startProxy({ tcpIdleMs: 300, maxTcpConnections: 16 });
    const port = dns.address.tcpPort;
    const open = async (bytes?: Buffer): Promise<net.Socket> => {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => undefined);
      await once(s, "connect");
      if (bytes) s.write(bytes);
      return s;
    };
    const closed = (s: net.Socket) => (s.destroyed ? Promise.resolve() : once(s, "close").then(() => undefined));
    const tooLong = await open(Buffer.from([0xff, 0xff, 1, 2, 3]));
    const tooShort = await open(Buffer.from([0, 3, 1, 2, 3]));
    const halfPrefix = await open(Buffer.from([0]));
    const promised = await open(Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.alloc(100)])); // 4000 promised, 100 sent
    const silent = await open();
    const t0 = Date.now();
    await Promise.all([tooLong, tooShort, halfPrefix, promised, silent].map(closed));
    expect(Date.now() - t0).toBeLessThan(5000);

    // More connections than allowed: the excess are closed at once, the allowed ones work.
    const many = await Promise.all(Array.from({ length: 40 }, () => open()));
    await new Promise((r) => setTimeout(r, 100));
    expect(dns.load.tcpConnections).toBeLessThanOrEqual(16);
    for (const s of many) s.destroy();

    // Too many queries outstanding on one connection (a slow upstream) ends it.
    upstream.delayMs = 500;
    try {
      const greedy = await open(
        Buffer.concat(Array.from({ length: 20 }, (_, i) => packet.streamEncode(query(`slow${i}.example.org`, "A", i)))),
      );
      await closed(greedy);
    } finally {
      upstream.delayMs = 0;
    }
    const [reply] = await tcpAsk(port, [query("reviews")]);
    expect(reply!.answers).toMatchObject([{ data: "10.96.0.10" }]);
    await new Promise((r) => setTimeout(r, 700));
    expect(dns.load.tcpConnections).toBe(0);
  });

  it("TCP: a byte now and then does not keep a connection; a client that never reads is cut off", async () => {
    const dns = await startProxy({ tcpIdleMs: 300 });
    const port = dns.address.tcpPort;
    const slow = net.connect(port, "127.0.0.1");
    slow.on("error", () => undefined);
    await once(slow, "connect");
    const whole = packet.streamEncode(query("reviews"));
    let sent = 0;
    const drip = setInterval(
      () => sent < whole.length && !slow.destroyed && slow.write(whole.subarray(sent, ++sent)),
      100,
    );
    slow.resume();
    const t0 = Date.now();
    await once(slow, "close");
    clearInterval(drip);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(sent).toBeLessThan(whole.length);

    // 60k queries written, no answer read: the proxy stops once 256 KiB of answers wait unread.
    const deaf = net.connect(port, "127.0.0.1");
    deaf.on("error", () => undefined);
    await once(deaf, "connect");
    const refused = dns.stats.refused;
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => packet.streamEncode(query("reviews", "A", i))));
    for (let i = 0; i < 60 && !deaf.destroyed; i++) {
      if (!deaf.write(batch))
        await Promise.race([once(deaf, "drain"), once(deaf, "close"), new Promise((r) => setTimeout(r, 2000))]);
    }
    await until(() => dns.load.tcpConnections === 0, 5000);
    expect(dns.stats.refused).toBe(refused + 1);
    deaf.destroy();
    const [reply] = await tcpAsk(port, [query("reviews")]);
    expect(reply!.answers).toMatchObject([{ data: "10.96.0.10" }]);
  });

  it("a flood of queries: forwards in flight stay under the cap (REFUSED beyond), mesh answers keep coming", async () => {
    const dns = await startProxy({ maxInflight: 32 });
    upstream.delayMs = 200;
    const sock = dgram.createSocket("udp4");
    const rcodes = new Map<string, number>();
    sock.on("message", (m) => {
      try {
        const rc = rcodeOf(m);
        rcodes.set(rc, (rcodes.get(rc) ?? 0) + 1);
      } catch {
        rcodes.set("undecodable", (rcodes.get("undecodable") ?? 0) + 1);
      }
    });
    let maxInflight = 0;
    const rss0 = process.memoryUsage().rss;
    try {
      for (let i = 0; i < 3000; i++) {
        sock.send(packet.encode(query(`flood${i}.example.org`, "A", i & 0xffff)), dns.address.udpPort, "127.0.0.1");
        if (i % 100 === 0) {
          await new Promise((r) => setTimeout(r, 2));
          maxInflight = Math.max(maxInflight, dns.load.inflight);
        }
      }
      // Mid-flood, a mesh name is still answered (over TCP: a UDP query may be dropped by the full socket buffer).
      const [mid] = await tcpAsk(dns.address.tcpPort, [query("reviews")]);
      expect(mid!.answers).toMatchObject([{ data: "10.96.0.10" }]);
      await new Promise((r) => setTimeout(r, 800));
    } finally {
      upstream.delayMs = 0;
      sock.close();
    }
    expect(maxInflight).toBeLessThanOrEqual(32);
    expect(rcodes.get("REFUSED")).toBeGreaterThan(1000);
    expect(rcodes.get("NXDOMAIN")).toBeGreaterThan(0);
    expect(dns.load.inflight).toBe(0);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(100 * 1024 * 1024);
    expect(await resolver(dns).resolve4("example.org")).toEqual(["192.0.2.1"]);
  });
});
