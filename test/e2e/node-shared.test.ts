// Node mode from the config (PROXY_MODE=shared, no istio-cni): one proxy serves every workload whose `node` is
// NODE_NAME, each on its own IP with its own identity and certificate; a workload added to or moved off the node in
// the watched config is served or dropped live (its listener and certificate with it). A dedicated proxy of a
// workload on another node is the client: its outbound verifies each destination's own SPIFFE identity.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginCa } from "../../host/identity/ca.js";
import { startProxy, type NodeProxy } from "../../host/app.js";
import { waitFor } from "../helpers/node-proxy.js";
import { setSink, getLevel, setLevel, type LogRecord } from "../../host/log.js";

interface Dump {
  mode: string;
  workloads: { uid: string; certificate: { identity: string; notAfter?: string } }[];
}

describe("shared (node) mode on loopback", () => {
  let dir: string, configPath: string;
  let node: NodeProxy, client: NodeProxy;
  const apps: net.Server[] = [];
  let hbonePort: number;

  const yaml = (extra: { sleepNode?: string; late?: boolean } = {}) => `workloads:
  - {uid: sleep, name: sleep, namespace: default, serviceAccount: sleep, workloadIps: [127.0.40.2], protocol: HBONE, node: ${extra.sleepNode ?? "n1"}}
  - {uid: echo, name: echo, namespace: default, serviceAccount: echo, workloadIps: [127.0.40.3], protocol: HBONE, node: n1,
     services: {default/echo.default.svc.cluster.local: {80: 7000}}}
  - {uid: far, name: far, namespace: default, serviceAccount: far, workloadIps: [127.0.40.5], protocol: HBONE, node: n2}
  - {uid: client, name: client, namespace: default, serviceAccount: client, workloadIps: [127.0.40.6], protocol: HBONE, node: n3}
${extra.late ? "  - {uid: late, name: late, namespace: other, serviceAccount: late, workloadIps: [127.0.40.7], protocol: HBONE, node: n1}\n" : ""}services:
  - {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: [/10.96.40.10], ports: {80: 7000},
     subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]}
`;

  /** An app on ip:7000 that answers with its own name. */
  const app = async (ip: string, name: string) => {
    const s = net.createServer((c) => {
      c.on("error", () => undefined);
      c.end(`${name}\n`);
    });
    s.listen(7000, ip);
    await once(s, "listening");
    apps.push(s);
  };

  const ask = async (dest: string): Promise<string> => {
    const t = await client.connect(dest);
    const chunks: Buffer[] = [];
    t.on("data", (d: Buffer) => chunks.push(d));
    t.end();
    await once(t, "end");
    return Buffer.concat(chunks).toString().trim();
  };
  const dump = async (): Promise<Dump> =>
    (await (await fetch(`http://127.0.0.1:${node.addresses.admin!.port}/config_dump`)).json()) as Dump;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "hbone-shared-"));
    const caDir = join(dir, "ca");
    await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "test" });
    configPath = join(dir, "mesh.yaml");
    writeFileSync(configPath, yaml());
    for (const [ip, name] of [
      ["127.0.40.2", "sleep"],
      ["127.0.40.3", "echo"],
      ["127.0.40.7", "late"],
    ] as const)
      await app(ip, name);
    // A free port for every HBONE listener of the node proxy (the client's --hbone-port).
    const probe = net.createServer().listen(0, "127.0.40.1");
    await once(probe, "listening");
    hbonePort = (probe.address() as net.AddressInfo).port;
    probe.close();
    const common = {
      config: configPath,
      caDir,
      socks5Port: false as const,
      adminPort: 0,
      metricsPort: 0,
      readinessPort: 0,
    };
    node = await startProxy({ ...common, nodeName: "n1", inboundPort: hbonePort });
    client = await startProxy({ ...common, workload: "default/client/client", inboundPort: 0, hbonePort });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await node?.close();
    for (const s of apps) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves each workload of its node with its own identity; not the others'", async () => {
    const d = await dump();
    expect(d.mode).toBe("shared");
    expect(d.workloads.map((w) => w.uid).sort()).toEqual(["echo", "sleep"]);
    expect(d.workloads.find((w) => w.uid === "echo")!.certificate.identity).toBe(
      "spiffe://cluster.local/ns/default/sa/echo",
    );
    expect(d.workloads.every((w) => w.certificate.notAfter)).toBe(true);
    // The client checks the certificate of the workload it dials: each is served with its own.
    expect(await ask("echo.default.svc.cluster.local:80")).toBe("echo");
    expect(await ask("127.0.40.2:7000")).toBe("sleep");
    await expect(client.connect("127.0.40.5:7000")).rejects.toThrow(/HBONE/); // n2's workload: nobody here
  });

  it("access lines: on by default, switched off and on at run time through /logging", async () => {
    const lines: LogRecord[] = [];
    const level = getLevel();
    setLevel("info");
    const restore = setSink((r) => lines.push(r));
    const logging = async (spec: string) =>
      (await (
        await fetch(`http://127.0.0.1:${node.addresses.admin!.port}/logging?level=${encodeURIComponent(spec)}`, {
          method: "POST",
        })
      ).json()) as { level: string; access?: string };
    const complete = () => lines.filter((l) => l.msg === "connection complete" && l.scope === "access");
    try {
      expect(await ask("echo.default.svc.cluster.local:80")).toBe("echo");
      await waitFor("access lines", async () => complete().length >= 2); // the client's outbound, the node's inbound
      expect(await logging("access:off")).toMatchObject({ access: "off" });
      const before = complete().length;
      expect(await ask("echo.default.svc.cluster.local:80")).toBe("echo");
      await new Promise((r) => setTimeout(r, 200));
      expect(complete().length).toBe(before);
      expect(
        (await fetch(`http://127.0.0.1:${node.addresses.admin!.port}/logging?level=access:loud`, { method: "POST" }))
          .status,
      ).toBe(400);
    } finally {
      await logging("access:info");
      restore();
      setLevel(level);
    }
  });

  it("follows the config live: a workload leaving the node is dropped, one arriving is served", async () => {
    writeFileSync(configPath, yaml({ sleepNode: "n2", late: true }));
    await waitFor(
      "config reload",
      async () =>
        (await dump()).workloads
          .map((w) => w.uid)
          .sort()
          .join() === "echo,late",
    );
    expect(await ask("127.0.40.7:7000")).toBe("late");
    await expect(client.connect("127.0.40.2:7000")).rejects.toThrow(/HBONE/);
    expect(await ask("echo.default.svc.cluster.local:80")).toBe("echo");
  });
});
