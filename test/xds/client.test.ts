// The Delta ADS client against a real gRPC control plane over TLS on loopback: initial sync with ztunnel's headers
// and node, readiness only after both types are ACKed, incremental adds/changes/removals, a NACKed response that
// leaves the running config alone, an istiod restart resumed with initial_resource_versions, the reconnect backoff,
// and the TLS checks on istiod's certificate.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { newService, newWorkload, type Policy, type Workload } from "../../host/model/index.js";
import { Identity } from "../../host/identity/identity.js";
import { setSink, type LogRecord } from "../../host/log.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, XdsClient, type XdsClientOptions } from "../../host/xds/client.js";
import { workloadToXds } from "./encode.js";
import { Address } from "../../host/xds/gen/istio/workload/workload.js";
import { TestControlPlane, policyMatch } from "../helpers/control-plane.js";
import { TOKEN, connection, makeMesh, until, type MeshFixture } from "../helpers/control-plane-mesh.js";

const WAIT = 10_000;

let mesh: MeshFixture;
let otherMesh: MeshFixture; // another root: its certificates are not trusted by mesh's clients
const cleanups: (() => unknown)[] = [];
const logs: LogRecord[] = [];
let restoreSink: () => void;

beforeAll(async () => {
  restoreSink = setSink((r) => logs.push(r));
  [mesh, otherMesh] = await Promise.all([makeMesh("a"), makeMesh("b")]);
});
afterAll(() => {
  restoreSink();
  mesh?.cleanup();
  otherMesh?.cleanup();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  logs.length = 0;
});

function wl(i: number, extra: Partial<Workload> = {}): Workload {
  return newWorkload({
    uid: `c1//Pod/default/app-${i}`,
    name: `app-${i}`,
    namespace: "default",
    serviceAccount: "app",
    workloadIps: [`10.1.${i >> 8}.${i & 255}`],
    protocol: "HBONE",
    workloadType: "deployment",
    services: { "default/app.default.svc.cluster.local": { 80: 8080 } },
    ...extra,
  });
}
const SVC = newService({
  name: "app",
  namespace: "default",
  hostname: "app.default.svc.cluster.local",
  vips: [{ network: "", address: "10.96.0.1" }],
  ports: { 80: 8080 },
});
const POLICY: Policy = {
  name: "deny-bad",
  namespace: "default",
  scope: "Namespace",
  action: "Deny",
  dryRun: false,
  rules: [[[policyMatch({ principals: [{ kind: "exact", value: "cluster.local/ns/bad/sa/bad" }] })]]],
};

/** A started client of `cp` once its first two streams ended, with the reasons they gave. */
async function refusedTwice(cp: TestControlPlane, what: string): Promise<{ c: XdsClient; reasons: string[] }> {
  const { c } = client(cp);
  const reasons: string[] = [];
  c.on("disconnected", (r) => reasons.push(r));
  c.start();
  await until(() => reasons.length >= 2, WAIT, what);
  return { c, reasons };
}

async function controlPlane(o: Partial<Parameters<typeof TestControlPlane.start>[0]> = {}): Promise<TestControlPlane> {
  const cp = await TestControlPlane.start({ tls: mesh.istiodCert, token: TOKEN, ...o });
  cleanups.push(() => cp.stop());
  return cp;
}

function client(cp: TestControlPlane, o: Partial<XdsClientOptions> = {}) {
  const state = new ProxyState();
  let updates = 0;
  state.on("updated", () => updates++);
  const c = new XdsClient({
    ...connection(mesh, cp.address),
    updater: new ProxyStateUpdater(state),
    node: {
      ip: "10.1.0.1",
      podName: "app-1",
      namespace: "default",
      nodeName: "node-a",
      clusterId: "c1",
      env: { ISTIO_META_DNS_CAPTURE: "true", OTHER: "x" },
    },
    ...o,
  });
  cleanups.push(() => c.close());
  return { c, state, updates: () => updates };
}

function seed(cp: TestControlPlane): void {
  cp.batch(() => {
    for (let i = 1; i <= 3; i++) cp.setWorkload(wl(i));
    cp.setService(SVC);
    cp.setPolicy(POLICY);
  });
}

describe("XdsClient", () => {
  it("syncs over TLS with ztunnel's headers, node and wildcard subscriptions, and ACKs both types", async () => {
    const cp = await controlPlane();
    seed(cp);
    const { c, state } = client(cp);
    c.start();
    await c.waitReady(WAIT);

    expect(state.config.workloads.map((w) => w.uid).sort()).toEqual([1, 2, 3].map((i) => wl(i).uid));
    expect(state.workloadByIp("10.1.0.2")?.name).toBe("app-2");
    expect(state.serviceByVip("10.96.0.1")?.hostname).toBe(SVC.hostname);
    expect(state.endpoints(state.serviceByVip("10.96.0.1")!, 80)).toHaveLength(3);
    expect(state.policyByKey("default/deny-bad")).toEqual(POLICY);

    const s = cp.stream!;
    expect(s.headers.get("authorization")).toEqual([`Bearer ${TOKEN}`]);
    expect(s.headers.get("clusterid")).toEqual(["c1"]);
    const first = s.requests.slice(0, 2);
    expect(first.map((r) => r.typeUrl)).toEqual([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]);
    for (const r of first) {
      expect(r.node?.id).toBe("ztunnel~10.1.0.1~app-1.default~default.svc.cluster.local");
      expect(r.node?.metadata).toEqual({
        DNS_CAPTURE: "true",
        NAME: "app-1",
        NAMESPACE: "default",
        INSTANCE_IPS: "10.1.0.1",
        NODE_NAME: "node-a",
        CLUSTER_ID: "c1",
      });
      expect(r.resourceNamesSubscribe).toEqual([]);
      expect(r.initialResourceVersions.size).toBe(0);
      expect(r.responseNonce).toBe("");
    }
    // One ACK per response, carrying its nonce and no error.
    await cp.waitFor(() => s.acks().length === 2, WAIT, "2 ACKs");
    expect(
      s
        .acks()
        .map((r) => r.responseNonce)
        .sort(),
    ).toEqual(s.responses.map((r) => r.nonce).sort());
    expect(s.nacks()).toHaveLength(0);
    expect(c.stats).toMatchObject({ streams: 1, responses: 2, acks: 2, nacks: 0 });
  });

  it("is ready only after the first ACK of each type", async () => {
    const cp = await controlPlane();
    seed(cp);
    cp.hold(AUTHORIZATION_TYPE_URL);
    const { c, state } = client(cp);
    let resolved = false;
    void c.ready.then(() => (resolved = true));
    c.start();
    await cp.waitFor(() => (cp.stream?.acks(ADDRESS_TYPE_URL).length ?? 0) === 1, WAIT, "the Address ACK");
    // Workloads are in force already, but with no Authorization ACK the proxy is not ready.
    expect(state.config.workloads).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.isReady).toBe(false);
    expect(resolved).toBe(false);
    await expect(c.waitReady(50)).rejects.toThrow(
      /not ready after 50 ms \(no ACK yet for istio\.security\.Authorization\)/,
    );

    cp.release(AUTHORIZATION_TYPE_URL);
    await c.waitReady(WAIT);
    expect(resolved).toBe(true);
    expect(state.config.policies).toHaveLength(1);
  });

  it("applies incremental adds, changes and removals, one state update per response", async () => {
    const cp = await controlPlane();
    seed(cp);
    const { c, state, updates } = client(cp);
    c.start();
    await c.waitReady(WAIT);
    const s = cp.stream!;
    const before = updates();

    cp.batch(() => {
      cp.setWorkload(wl(4));
      cp.setWorkload(wl(2, { status: "Unhealthy", capacity: 5 }));
      cp.remove(ADDRESS_TYPE_URL, wl(1).uid);
    });
    await cp.waitFor(() => s.acks(ADDRESS_TYPE_URL).length === 2, WAIT, "the second Address ACK");
    const delta = s.responses[s.responses.length - 1]!;
    expect(delta.resources.map((r) => r.name).sort()).toEqual([wl(2).uid, wl(4).uid]);
    expect(delta.removedResources).toEqual([wl(1).uid]);
    expect(updates()).toBe(before + 1);
    expect(state.workloadByUid(wl(1).uid)).toBeUndefined();
    expect(state.workloadByIp("10.1.0.1")).toBeUndefined();
    expect(state.workloadByUid(wl(2).uid)).toMatchObject({ status: "Unhealthy", capacity: 5 });
    expect(state.workloadByUid(wl(4).uid)?.workloadIps).toEqual(["10.1.0.4"]);
    expect(
      state
        .endpoints(SVC, 80)
        .map((e) => e.workload.name)
        .sort(),
    ).toEqual(["app-2", "app-3", "app-4"]);
    expect(c.versions(ADDRESS_TYPE_URL)).toEqual(cp.versions(ADDRESS_TYPE_URL));

    cp.remove(AUTHORIZATION_TYPE_URL, "default/deny-bad");
    cp.remove(ADDRESS_TYPE_URL, "default/app.default.svc.cluster.local");
    await cp.waitFor(() => s.acks().length === 5, WAIT, "ACKs of both removals");
    expect(state.policyByKey("default/deny-bad")).toBeUndefined();
    expect(state.serviceByVip("10.96.0.1")).toBeUndefined();
    expect(state.config.workloads).toHaveLength(3);
    expect(c.versions(AUTHORIZATION_TYPE_URL).size).toBe(0);
  });

  it("NACKs a response with a bad resource, naming it, and keeps the previous state whole", async () => {
    const cp = await controlPlane();
    seed(cp);
    const { c, state, updates } = client(cp);
    const nacks: string[] = [];
    c.on("nack", (_t, _n, msg) => nacks.push(msg));
    c.start();
    await c.waitReady(WAIT);
    const s = cp.stream!;
    const before = { config: state.config, updates: updates(), versions: new Map(c.versions(ADDRESS_TYPE_URL)) };

    const bad = workloadToXds(wl(9));
    bad.addresses = [Uint8Array.from([10, 0, 0, 0, 9])];
    cp.batch(() => {
      cp.setWorkload(wl(5)); // good, but in the same response as the bad one
      cp.set(ADDRESS_TYPE_URL, "bad-uid", Address.encode({ type: { $case: "workload", workload: bad } }).finish());
      cp.remove(ADDRESS_TYPE_URL, wl(3).uid);
    });
    await cp.waitFor(() => s.nacks().length === 1, WAIT, "the NACK");
    const nack = s.nacks()[0]!;
    expect(nack.typeUrl).toBe(ADDRESS_TYPE_URL);
    expect(nack.responseNonce).toBe(s.responses[s.responses.length - 1]!.nonce);
    expect(nack.errorDetail?.message).toBe(
      'Address "bad-uid": workload.addresses[0]: 5 bytes is neither an IPv4 (4) nor an IPv6 (16) address',
    );
    expect(nacks).toEqual([nack.errorDetail?.message]);
    expect(logs.some((l) => l.msg.startsWith("xDS response rejected (NACK)") && l.error === nacks[0])).toBe(true);
    // Nothing of that response was applied: not the good workload, not the removal.
    expect(state.config).toBe(before.config);
    expect(updates()).toBe(before.updates);
    expect(state.workloadByUid(wl(5).uid)).toBeUndefined();
    expect(state.workloadByUid(wl(3).uid)).toBeDefined();
    expect(c.versions(ADDRESS_TYPE_URL)).toEqual(before.versions);

    // The fix arrives with what the client still lacks; it is ACKed and applied.
    cp.set(
      ADDRESS_TYPE_URL,
      "bad-uid",
      Address.encode({ type: { $case: "workload", workload: workloadToXds(wl(9)) } }).finish(),
    );
    await cp.waitFor(() => s.acks(ADDRESS_TYPE_URL).length === 2, WAIT, "the ACK of the fix");
    expect(state.workloadByUid(wl(9).uid)?.workloadIps).toEqual(["10.1.0.9"]);
    expect(state.workloadByUid(wl(5).uid)).toBeDefined();
    expect(state.workloadByUid(wl(3).uid)).toBeUndefined();
    expect(c.stats.nacks).toBe(1);
  });

  it("reconnects after an istiod restart and resumes with initial_resource_versions", async () => {
    const cp = await controlPlane();
    seed(cp);
    const { c, state } = client(cp);
    const disconnects: string[] = [];
    c.on("disconnected", (reason) => disconnects.push(reason));
    c.start();
    await c.waitReady(WAIT);
    const held = new Map(c.versions(ADDRESS_TYPE_URL));
    const heldPolicies = new Map(c.versions(AUTHORIZATION_TYPE_URL));
    expect(held.size).toBe(4);

    await cp.stop();
    await until(() => disconnects.length > 0, WAIT, "the client to see the stream end");
    // While istiod is away the proxy keeps its config and stays ready.
    expect(c.isReady).toBe(true);
    expect(state.config.workloads).toHaveLength(3);
    // istiod comes back with changes made meanwhile.
    cp.batch(() => {
      cp.remove(ADDRESS_TYPE_URL, wl(2).uid);
      cp.setWorkload(wl(3, { node: "node-b" }));
      cp.setWorkload(wl(7));
    });
    await cp.restart();
    await cp.waitFor(() => cp.streams.length >= 2 && cp.stream!.acks().length === 2, WAIT, "ACKs on the new stream");

    const s = cp.stream!;
    const init = s.requests.filter((r) => r.responseNonce === "");
    expect(init.map((r) => r.typeUrl)).toEqual([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]);
    expect(init[0]!.initialResourceVersions).toEqual(held);
    expect(init[1]!.initialResourceVersions).toEqual(heldPolicies);
    // Only the difference travels.
    const addr = s.responses.find((r) => r.typeUrl === ADDRESS_TYPE_URL)!;
    expect(addr.resources.map((r) => r.name).sort()).toEqual([wl(3).uid, wl(7).uid]);
    expect(addr.removedResources).toEqual([wl(2).uid]);
    expect(s.responses.find((r) => r.typeUrl === AUTHORIZATION_TYPE_URL)!.resources).toHaveLength(0);
    expect(state.config.workloads.map((w) => w.name).sort()).toEqual(["app-1", "app-3", "app-7"]);
    expect(state.workloadByUid(wl(3).uid)?.node).toBe("node-b");
    expect(c.versions(ADDRESS_TYPE_URL)).toEqual(cp.versions(ADDRESS_TYPE_URL));
    expect(c.stats.streams).toBeGreaterThanOrEqual(2);
  });

  it("backs off 10 ms doubling up to the cap while istiod is down", async () => {
    const cp = await controlPlane();
    await cp.stop(); // a port nobody listens on
    const { c } = client(cp, { maxBackoffMs: 100 });
    const delays: number[] = [];
    c.on("disconnected", (_r, ms) => delays.push(ms));
    c.start();
    await until(() => delays.length >= 7, WAIT, "7 reconnect attempts");
    expect(delays.slice(0, 7)).toEqual([10, 20, 40, 80, 100, 100, 100]);
    expect(c.isReady).toBe(false);
  });

  it("re-reads the token file on every stream: refused (UNAUTHENTICATED) until the token is right", async () => {
    const cp = await controlPlane();
    seed(cp);
    writeFileSync(mesh.tokenFile, "wrong-token\n");
    cleanups.push(() => writeFileSync(mesh.tokenFile, `${TOKEN}\n`));
    const { c, reasons } = await refusedTwice(cp, "refused streams");
    expect(reasons[0]).toMatch(/^UNAUTHENTICATED: bad or missing bearer token \(Bearer wrong-token\)/);
    expect(c.isReady).toBe(false);
    writeFileSync(mesh.tokenFile, `${TOKEN}\n`);
    await c.waitReady(WAIT);
  });

  it("refuses an istiod whose certificate does not chain to the mesh root", async () => {
    const cp = await controlPlane({ tls: otherMesh.istiodCert });
    seed(cp);
    const { c, reasons } = await refusedTwice(cp, "failed attempts");
    expect(reasons[0]).toMatch(/^UNAVAILABLE: .*unable to get local issuer certificate/);
    expect(cp.streams).toHaveLength(0);
    expect(c.isReady).toBe(false);
  });

  it("refuses an istiod whose identity is neither the expected name nor istiod's SPIFFE id", async () => {
    const cp = await controlPlane({ tls: await mesh.ca.issue(new Identity("cluster.local", "default", "impostor")) });
    seed(cp);
    const { c, reasons } = await refusedTwice(cp, "failed attempts");
    expect(reasons[0]).toMatch(/^UNAVAILABLE: .*does not match certificate's altnames/);
    expect(cp.streams).toHaveLength(0);
    expect(c.isReady).toBe(false);

    // The same server is accepted by a client that names that identity (so the refusal above was the name check).
    const ok = client(cp, { serverIdentities: ["spiffe://cluster.local/ns/default/sa/impostor"] });
    ok.c.start();
    await ok.c.waitReady(WAIT);
  });

  it("waitReady rejects when the client is closed first", async () => {
    const cp = await controlPlane();
    cp.hold(ADDRESS_TYPE_URL);
    const { c } = client(cp);
    c.start();
    const p = c.waitReady(WAIT);
    c.close();
    await expect(p).rejects.toThrow(/closed before it was ready/);
  });
});
