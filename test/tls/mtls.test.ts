// Real mutual-TLS handshakes on loopback between createHboneServer and connectHbone (and plain node:tls peers
// that break one rule each), with certificates from createPluginCa CAs; then certificate rotation through the
// SecretManager while connections stay open.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import tls from "node:tls";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { CertificateAuthority, createPluginCa, type WorkloadCertificate } from "../../host/identity/ca.js";
import { Identity } from "../../host/identity/identity.js";
import { SecretManager } from "../../host/identity/manager.js";
import { connectHbone, createHboneServer, type HboneServer } from "../../host/tls/contexts.js";
import { H2Session, type H2Stream } from "../../host/h2/session.js";
import { setSink, type LogRecord } from "../../host/log.js";
import { listen, pattern } from "../helpers/net.js";

const SERVER_ID = Identity.parse("spiffe://cluster.local/ns/server/sa/srv");
const CLIENT_ID = Identity.parse("spiffe://cluster.local/ns/client/sa/cli");
const OTHER_TD_ID = Identity.parse("spiffe://other.local/ns/client/sa/cli");
const LOCALHOST = "127.0.0.1";

let tmp: string;
let ca: CertificateAuthority; // cluster.local
let otherTdCa: CertificateAuthority; // other.local, same root
let unrelatedCa: CertificateAuthority; // cluster.local, another root
let serverCert: WorkloadCertificate;
let clientCert: WorkloadCertificate;

const logs: LogRecord[] = [];
let restoreSink: () => void;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  restoreSink = setSink((r) => logs.push(r));
  tmp = mkdtempSync(join(tmpdir(), "hbone-mtls-"));
  await createPluginCa({ outDir: join(tmp, "c1"), trustDomain: "cluster.local", cluster: "c1" });
  await Promise.all([
    createPluginCa({ outDir: join(tmp, "other"), trustDomain: "other.local", rootDir: join(tmp, "c1") }),
    createPluginCa({ outDir: join(tmp, "unrelated"), trustDomain: "cluster.local" }),
  ]);
  [ca, otherTdCa, unrelatedCa] = await Promise.all(
    ["c1", "other", "unrelated"].map((d) => CertificateAuthority.load(join(tmp, d))),
  );
  [serverCert, clientCert] = await Promise.all([ca.issue(SERVER_ID), ca.issue(CLIENT_ID)]);
});
afterAll(() => {
  restoreSink();
  rmSync(tmp, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  logs.length = 0;
});

interface Server {
  server: HboneServer;
  port: number;
  accepted: { socket: tls.TLSSocket; peer: Identity }[];
}

/** An HBONE TLS server on loopback that echoes every accepted connection. */
async function hboneServer(certificate: WorkloadCertificate, trustDomain = "cluster.local"): Promise<Server> {
  const accepted: Server["accepted"] = [];
  const server = createHboneServer({ certificate, trustDomain }, (socket, peer) => {
    accepted.push({ socket, peer });
    socket.on("error", () => undefined);
    socket.pipe(socket);
  });
  // Every TCP connection, accepted or not, so that closing the server never waits on one.
  const connections = new Set<net.Socket>();
  server.on("connection", (c: net.Socket) => connections.add(c));
  const port = await listen(server);
  cleanups.push(async () => {
    for (const c of connections) c.destroy();
    for (const a of accepted) a.socket.destroy();
    await new Promise((r) => server.close(r));
  });
  return { server, port, accepted };
}

/** Tracks a client socket for cleanup and swallows its late errors (the peer may reset it). */
function track<T extends net.Socket>(socket: T): T {
  socket.on("error", () => undefined);
  cleanups.push(() => socket.destroy());
  return socket;
}

async function echo(socket: net.Socket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= data.length) {
        socket.off("data", onData);
        resolve();
      }
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error("closed before the echo")));
  });
  socket.write(data);
  await done;
  return Buffer.concat(chunks);
}

async function waitFor<T>(fn: () => T | undefined, what: string, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const refusal = (re: RegExp) =>
  waitFor(
    () =>
      logs.find(
        (r) =>
          r.scope === "tls" && r.level === "warn" && r.msg === "inbound HBONE TLS refused" && re.test(String(r.reason)),
      ),
    `a refusal log matching ${re}`,
  );

/** How a client connection that the server refuses ends: a rejected handshake, or (TLS 1.3: the client is done
 *  first) a connection the server closes. */
async function refusedOutcome(p: Promise<{ socket: tls.TLSSocket }>): Promise<string> {
  try {
    const { socket } = await p;
    track(socket).resume();
    const closed = await Promise.race([
      new Promise((r) => socket.once("close", () => r(true))),
      new Promise((r) => setTimeout(() => r(false), 3_000)),
    ]);
    return closed ? "closed by the server" : "still open";
  } catch (err) {
    return `rejected: ${(err as Error).message}`;
  }
}

/** A plain node:tls client that breaks one HBONE rule. */
function rawClient(port: number, opts: tls.ConnectionOptions): tls.TLSSocket {
  return track(
    tls.connect({
      host: LOCALHOST,
      port,
      ca: clientCert.rootsPem,
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
      ...opts,
    }),
  );
}

const serial = (pem: string) => new X509Certificate(pem).serialNumber;

describe("HBONE mTLS handshake", () => {
  it("succeeds with both identities verified, TLS 1.3, ALPN h2 and no SNI", async () => {
    const s = await hboneServer(serverCert);
    const { socket, peer } = await connectHbone({
      host: LOCALHOST,
      port: s.port,
      certificate: clientCert,
      expected: [SERVER_ID],
    });
    track(socket);
    expect(peer.equals(SERVER_ID)).toBe(true);
    expect(socket.alpnProtocol).toBe("h2");
    expect(socket.getProtocol()).toBe("TLSv1.3");
    expect(["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]).toContain(socket.getCipher().name);
    expect(socket.isSessionReused()).toBe(false);
    const data = pattern(100_000);
    expect((await echo(socket, data)).equals(data)).toBe(true);

    expect(s.accepted).toHaveLength(1);
    const inbound = s.accepted[0];
    expect(inbound.peer.equals(CLIENT_ID)).toBe(true);
    expect(inbound.socket.servername).toBeFalsy();
    expect(inbound.socket.alpnProtocol).toBe("h2");
    expect(inbound.socket.getProtocol()).toBe("TLSv1.3");
    // Each side saw the other's leaf.
    expect(socket.getPeerCertificate().serialNumber).toBe(serial(serverCert.certChainPem));
    expect(inbound.socket.getPeerCertificate().serialNumber).toBe(serial(clientCert.certChainPem));
    expect(s.server.refused).toBe(0);
    expect(logs.filter((r) => r.level === "warn")).toEqual([]);
  });

  it("sends no SNI over a given socket even when the host is a name, and accepts any expected identity", async () => {
    const s = await hboneServer(serverCert);
    const tcp = track(net.connect(s.port, LOCALHOST));
    await once(tcp, "connect");
    const { socket, peer } = await connectHbone({
      host: "istiod.istio-system.svc",
      port: 15008,
      socket: tcp,
      certificate: clientCert,
      expected: [Identity.parse("spiffe://cluster.local/ns/x/sa/waypoint"), SERVER_ID],
    });
    track(socket);
    expect(peer.equals(SERVER_ID)).toBe(true);
    await waitFor(() => s.accepted.length === 1, "the inbound connection");
    expect(s.accepted[0].socket.servername).toBeFalsy();
    expect((await echo(socket, Buffer.from("ping"))).toString()).toBe("ping");
  });

  it("refuses a client without a certificate", async () => {
    const s = await hboneServer(serverCert);
    const c = rawClient(s.port, {});
    await new Promise((r) => c.once("close", r));
    const log = await refusal(/^client sent no certificate$/);
    expect(log.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.server.refused).toBe(1);
    expect(s.accepted).toEqual([]);
  });

  it("refuses a client from another trust domain (same root)", async () => {
    const s = await hboneServer(serverCert);
    const otherClient = await otherTdCa.issue(OTHER_TD_ID);
    const outcome = await refusedOutcome(
      connectHbone({ host: LOCALHOST, port: s.port, certificate: otherClient, expected: [SERVER_ID] }),
    );
    expect(outcome).toMatch(/closed by the server|rejected/);
    const log = await refusal(
      /client identity spiffe:\/\/other\.local\/ns\/client\/sa\/cli is outside trust domain cluster\.local/,
    );
    expect(log.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.server.refused).toBe(1);
    expect(s.accepted).toEqual([]);
    // The same certificate is fine for a server of that trust domain.
    const s2 = await hboneServer(
      await otherTdCa.issue(Identity.parse("spiffe://other.local/ns/server/sa/srv")),
      "other.local",
    );
    const ok = await connectHbone({
      host: LOCALHOST,
      port: s2.port,
      certificate: otherClient,
      expected: [Identity.parse("spiffe://other.local/ns/server/sa/srv")],
    });
    track(ok.socket);
    await waitFor(() => s2.accepted.length === 1, "the inbound connection");
    expect(s2.accepted[0].peer.equals(OTHER_TD_ID)).toBe(true);
  });

  it("refuses a server whose identity is not expected", async () => {
    const s = await hboneServer(serverCert);
    const expected = [Identity.parse("spiffe://cluster.local/ns/server/sa/someone-else")];
    await expect(connectHbone({ host: LOCALHOST, port: s.port, certificate: clientCert, expected })).rejects.toThrow(
      /^HBONE TLS to 127\.0\.0\.1:\d+: server identity spiffe:\/\/cluster\.local\/ns\/server\/sa\/srv is not the expected spiffe:\/\/cluster\.local\/ns\/server\/sa\/someone-else$/,
    );
    const log = logs.find((r) => r.scope === "tls" && r.msg === "outbound HBONE TLS failed");
    expect(log?.reason).toMatch(/is not the expected/);
    expect(log?.target).toBe(`127.0.0.1:${s.port}`);
    await expect(
      connectHbone({ host: LOCALHOST, port: s.port, certificate: clientCert, expected: [] }),
    ).rejects.toThrow(/no expected server identity/);
  });

  it("refuses expired certificates on both sides", async () => {
    const past = { notBefore: new Date(Date.now() - 2 * 3600e3), notAfter: new Date(Date.now() - 3600e3) };
    const expiredServer = await hboneServer(await ca.issue(SERVER_ID, past));
    await expect(
      connectHbone({ host: LOCALHOST, port: expiredServer.port, certificate: clientCert, expected: [SERVER_ID] }),
    ).rejects.toThrow(/certificate has expired/);
    expect(logs.find((r) => r.msg === "outbound HBONE TLS failed")?.reason).toMatch(/certificate has expired/);

    const s = await hboneServer(serverCert);
    const outcome = await refusedOutcome(
      connectHbone({
        host: LOCALHOST,
        port: s.port,
        certificate: await ca.issue(CLIENT_ID, past),
        expected: [SERVER_ID],
      }),
    );
    expect(outcome).toMatch(/closed by the server|rejected/);
    const log = await refusal(/^client certificate rejected: CERT_HAS_EXPIRED$/);
    expect(log.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.server.refused).toBe(1);
    expect(s.accepted).toEqual([]);
  });

  it("refuses certificates from an unrelated CA on both sides", async () => {
    const foreignServer = await hboneServer(await unrelatedCa.issue(SERVER_ID));
    await expect(
      connectHbone({ host: LOCALHOST, port: foreignServer.port, certificate: clientCert, expected: [SERVER_ID] }),
    ).rejects.toThrow(/unable to get local issuer certificate/);

    const s = await hboneServer(serverCert);
    // The client trusts our roots (so it accepts the server) but its own certificate is from another CA.
    const foreignClient = { ...(await unrelatedCa.issue(CLIENT_ID)), rootsPem: ca.rootsPem };
    const outcome = await refusedOutcome(
      connectHbone({ host: LOCALHOST, port: s.port, certificate: foreignClient, expected: [SERVER_ID] }),
    );
    expect(outcome).toMatch(/closed by the server|rejected/);
    const log = await refusal(/^client certificate rejected: UNABLE_TO_GET_ISSUER_CERT_LOCALLY$/);
    expect(log.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.server.refused).toBe(1);
    expect(s.accepted).toEqual([]);
  });

  it("refuses clients without ALPN h2 or TLS 1.3", async () => {
    const s = await hboneServer(serverCert);
    const withCert = { key: clientCert.keyPem, cert: clientCert.certChainPem };
    rawClient(s.port, { ...withCert, ALPNProtocols: undefined });
    await refusal(/client did not negotiate ALPN h2/);
    rawClient(s.port, { ...withCert, ALPNProtocols: ["http/1.1"] });
    await refusal(/no application protocol/);
    rawClient(s.port, { ...withCert, maxVersion: "TLSv1.2" });
    await refusal(/unsupported protocol/);
    expect(s.server.refused).toBe(3);
    expect(s.accepted).toEqual([]);
  });

  it("fails against a server that does not pick h2", async () => {
    const plain = tls.createServer({ key: serverCert.keyPem, cert: serverCert.certChainPem }, (sock) =>
      sock.on("error", () => undefined),
    );
    const port = await listen(plain);
    cleanups.push(() => new Promise((r) => plain.close(r)));
    await expect(
      connectHbone({ host: LOCALHOST, port, certificate: clientCert, expected: [SERVER_ID] }),
    ).rejects.toThrow(/server did not negotiate ALPN h2/);
  });

  it("times out against a server that never answers", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((sock) => sockets.push(sock));
    const port = await listen(silent);
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => silent.close(r));
    });
    const t0 = Date.now();
    await expect(
      connectHbone({ host: LOCALHOST, port, certificate: clientCert, expected: [SERVER_ID], timeoutMs: 200 }),
    ).rejects.toThrow(/handshake timed out after 200 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
  });

  it("runs the inner TLS of double HBONE inside an HTTP/2 CONNECT stream", async () => {
    const gatewayId = Identity.parse("spiffe://cluster.local/ns/istio-system/sa/eastwest");
    const inner = await hboneServer(serverCert);
    // The gateway: HBONE TLS, then HTTP/2 CONNECT tunnels to the authority, bytes passed through opaquely.
    const gatewaySessions: H2Session[] = [];
    const gateway = createHboneServer(
      { certificate: await ca.issue(gatewayId), trustDomain: "cluster.local" },
      (socket) => {
        const session = H2Session.server(socket);
        gatewaySessions.push(session);
        session.on("connect", (stream: H2Stream, headers, respond) => {
          const authority = headers.find(([n]) => n === ":authority")![1];
          const [host, port] = authority.split(":");
          const upstream = net.connect(Number(port), host, () => {
            respond(200);
            stream.pipe(upstream).pipe(stream);
          });
          upstream.on("error", () => stream.destroy());
        });
      },
    );
    const gatewayPort = await listen(gateway);
    cleanups.push(() => {
      for (const s of gatewaySessions) s.destroy();
      return new Promise((r) => gateway.close(r));
    });

    const outer = await connectHbone({
      host: LOCALHOST,
      port: gatewayPort,
      certificate: clientCert,
      expected: [gatewayId],
    });
    track(outer.socket);
    const session = H2Session.client(outer.socket);
    cleanups.push(() => session.destroy());
    const stream = await session.connect(`127.0.0.1:${inner.port}`);
    expect(stream.status).toBe(200);
    const { socket, peer } = await connectHbone({
      host: LOCALHOST,
      port: inner.port,
      socket: stream,
      certificate: clientCert,
      expected: [SERVER_ID],
    });
    track(socket);
    expect(peer.equals(SERVER_ID)).toBe(true);
    expect(socket.alpnProtocol).toBe("h2");
    await waitFor(() => inner.accepted.length === 1, "the inner connection");
    expect(inner.accepted[0].peer.equals(CLIENT_ID)).toBe(true);
    const data = pattern(200_000, 7);
    expect((await echo(socket, data)).equals(data)).toBe(true);
  });
});

describe("rotation", () => {
  it("renews at half-life, serves new connections with the new certificate and keeps the old ones", async () => {
    let issued = 0;
    // A small minimum backoff: it is also the soonest renewal, which would otherwise dominate a 2 s certificate.
    const secrets = new SecretManager(
      { issue: (id) => (issued++, ca.issue(id, { validityMs: 2_000 })) },
      { minBackoffMs: 50 },
    );
    cleanups.push(() => secrets.close());
    // Single flight: concurrent fetches share one issue.
    const [first, again] = await Promise.all([secrets.fetch(SERVER_ID), secrets.fetch(SERVER_ID)]);
    expect(first).toBe(again);
    expect(issued).toBe(1);
    expect(await secrets.fetch(SERVER_ID)).toBe(first);
    expect(secrets.current(SERVER_ID)).toBe(first);
    expect(issued).toBe(1);

    const s = await hboneServer(first);
    const rotatedEvents: [Identity, WorkloadCertificate][] = [];
    secrets.on("rotated", (id, cert) => {
      rotatedEvents.push([id, cert]);
      s.server.setCertificate(cert);
    });
    const before = await connectHbone({
      host: LOCALHOST,
      port: s.port,
      certificate: clientCert,
      expected: [SERVER_ID],
    });
    track(before.socket);
    expect(before.socket.getPeerCertificate().serialNumber).toBe(serial(first.certChainPem));

    const [id, second] = await new Promise<[Identity, WorkloadCertificate]>((r) =>
      secrets.once("rotated", (i, c) => r([i, c])),
    );
    const halfLife = (first.notBefore.getTime() + first.notAfter.getTime()) / 2;
    expect(Date.now()).toBeGreaterThanOrEqual(halfLife);
    expect(Date.now()).toBeLessThan(halfLife + 600); // slack for a loaded machine; a renewal at 80% would miss it
    expect(id.equals(SERVER_ID)).toBe(true);
    expect(issued).toBe(2);
    expect(rotatedEvents).toHaveLength(1);
    expect(serial(second.certChainPem)).not.toBe(serial(first.certChainPem));
    expect(secrets.current(SERVER_ID)).toBe(second);
    expect(await secrets.fetch(SERVER_ID)).toBe(second);

    // The connection opened before the rotation still carries data; a new one gets the new certificate.
    const data = pattern(50_000, 3);
    expect((await echo(before.socket, data)).equals(data)).toBe(true);
    const after = await connectHbone({ host: LOCALHOST, port: s.port, certificate: clientCert, expected: [SERVER_ID] });
    track(after.socket);
    expect(after.socket.getPeerCertificate().serialNumber).toBe(serial(second.certChainPem));
    expect((await echo(after.socket, data)).equals(data)).toBe(true);
    expect(s.accepted).toHaveLength(2);
  });

  it("keeps the old certificate while renewals fail, retrying with backoff", async () => {
    let calls = 0;
    const failing = 2;
    const secrets = new SecretManager(
      {
        issue: async (id) => {
          calls++;
          // The 2nd and 3rd calls (the first renewal and its first retry) fail.
          if (calls >= 2 && calls <= 1 + failing) throw new Error(`CA unavailable (${calls})`);
          return ca.issue(id, { validityMs: 2_000 });
        },
      },
      { minBackoffMs: 100, maxBackoffMs: 150 },
    );
    cleanups.push(() => secrets.close());
    const first = await secrets.fetch(CLIENT_ID);
    const rotated = new Promise<WorkloadCertificate>((r) => secrets.once("rotated", (_id, cert) => r(cert)));
    const failure = await waitFor(
      () => logs.find((r) => r.scope === "identity" && r.msg === "certificate fetch failed"),
      "a failure log",
    );
    expect(failure).toMatchObject({
      identity: CLIENT_ID.toString(),
      error: "CA unavailable (2)",
      serving: "previous certificate",
    });
    expect(failure.retryInMs).toBeGreaterThanOrEqual(80);
    expect(failure.retryInMs).toBeLessThanOrEqual(120);
    expect(secrets.current(CLIENT_ID)).toBe(first);
    expect(await secrets.fetch(CLIENT_ID)).toBe(first);

    const second = await rotated;
    expect(calls).toBe(2 + failing);
    const failures = logs.filter((r) => r.msg === "certificate fetch failed");
    expect(failures.map((r) => r.error)).toEqual(["CA unavailable (2)", "CA unavailable (3)"]);
    // Doubled, then capped at maxBackoffMs (jitter 0.2).
    expect(failures[1].retryInMs).toBeGreaterThanOrEqual(120);
    expect(failures[1].retryInMs).toBeLessThanOrEqual(180);
    expect(serial(second.certChainPem)).not.toBe(serial(first.certChainPem));
    expect(secrets.current(CLIENT_ID)).toBe(second);
    expect(first.notAfter.getTime()).toBeGreaterThan(Date.now()); // the old one was still valid throughout
  });

  it("fails a first fetch that fails, and stops renewing after forget() and close()", async () => {
    let calls = 0;
    let fail = true;
    const secrets = new SecretManager(
      {
        issue: async (id) => {
          calls++;
          if (fail) throw new Error("no CA yet");
          return ca.issue(id, { validityMs: 1_000 });
        },
      },
      { minBackoffMs: 50 },
    );
    cleanups.push(() => secrets.close());
    await expect(secrets.fetch(SERVER_ID)).rejects.toThrow("no CA yet");
    expect(secrets.current(SERVER_ID)).toBeUndefined();
    fail = false;
    const cert = await secrets.fetch(SERVER_ID);
    expect(secrets.current(SERVER_ID)).toBe(cert);
    secrets.forget(SERVER_ID);
    expect(secrets.current(SERVER_ID)).toBeUndefined();
    await secrets.fetch(CLIENT_ID);
    secrets.close();
    const n = calls;
    await new Promise((r) => setTimeout(r, 700)); // past both half-lives and the first failure's retry
    expect(calls).toBe(n);
    await expect(secrets.fetch(CLIENT_ID)).rejects.toThrow(/closed/);
  });
});
