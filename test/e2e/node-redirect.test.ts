// Redirect mode (a host without istio-cni, e.g. a VM): two "hosts" (network namespaces joined by a veth), each
// with a node proxy serving its workload through one listener set inside that namespace (--capture NETNS), and
// the rules `hbone capture rules` prints, applied with --apply. An unmodified client on host 1 (`net.connect` to
// the service VIP) reaches the app on host 2 through HBONE byte-exact, named in both proxies' access logs; with
// the rules removed (--remove) its connection is no longer captured.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPluginCa } from "../../host/identity/ca.js";
import {
  createNetns,
  requireNetns,
  runInNetns,
  spawnInNetns,
  vethPair,
  type Netns,
  type NetnsProcess,
} from "../helpers/netns-lite.js";
import {
  ECHO_APP,
  ECHO_CLIENT,
  ECHO_EXPECTED,
  spawnNodeProxy,
  waitFor,
  type SpawnedProxy,
} from "../helpers/node-proxy.js";

const OK = requireNetns();
const VIP = "10.96.0.20";

const config = `workloads:
  - {uid: vm1, name: client-vm, namespace: default, serviceAccount: client, workloadIps: [10.89.0.2], protocol: HBONE, node: vm1}
  - {uid: vm2, name: echo-vm, namespace: default, serviceAccount: echo, workloadIps: [10.89.0.3], protocol: HBONE, node: vm2,
     services: {default/echo.default.svc.cluster.local: {80: 8080}}}
services:
  - {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: [/${VIP}], ports: {80: 8080},
     subjectAltNames: [spiffe://cluster.local/ns/default/sa/echo]}
`;

const hbone = (...args: string[]) =>
  execFileSync(process.execPath, ["dist/host/cli.js", ...args], { encoding: "utf8", timeout: 20_000 });

describe.skipIf(!OK)("redirect mode: hbone capture rules + a node proxy per host", () => {
  let h1: Netns, h2: Netns, app: NetnsProcess;
  const proxies: SpawnedProxy[] = [];

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "hbone-redirect-"));
    const caDir = join(dir, "ca");
    await createPluginCa({ outDir: caDir, trustDomain: "cluster.local", cluster: "test" });
    writeFileSync(join(dir, "mesh.yaml"), config);
    h1 = createNetns();
    h2 = createNetns();
    const [if1] = vethPair(h1, h2, "10.89.0.2/24", "10.89.0.3/24");
    h1.ip("route", "add", "10.96.0.0/16", "dev", if1);
    app = spawnInNetns(h2, ECHO_APP, ["8080"]);
    await app.line((l) => l === "LISTENING");
    for (const [ns, node] of [
      [h1, "vm1"],
      [h2, "vm2"],
    ] as const) {
      proxies.push(
        await spawnNodeProxy(["--config", join(dir, "mesh.yaml"), "--ca-dir", caDir, "--capture", ns.name], {
          NODE_NAME: node,
          HBONE_LOG_LEVEL: "info",
        }),
      );
    }
  }, 60_000);

  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await app?.stop();
    h1?.del();
    h2?.del();
  });

  it("prints the rules, applies them: the client's VIP connection is carried by HBONE; removed, it is not captured", async () => {
    const rules = hbone("capture", "rules", "--netns", h1.name);
    expect(rules).toMatch(/redirect to :15001/);
    expect(rules).toMatch(/meta mark & 0x00000fff == 0x00000539|0x539/);
    // Without the rules, nothing captures the VIP connection (no host has the VIP).
    expect(await runInNetns(h1, ECHO_CLIENT, [VIP, "80"])).toMatch(/^ERR/);
    for (const ns of [h1, h2]) expect(hbone("capture", "rules", "--netns", ns.name, "--apply")).toMatch(/applied/);
    expect(await runInNetns(h1, ECHO_CLIENT, [VIP, "80"])).toBe(ECHO_EXPECTED);
    await waitFor("access lines on both hosts", async () => {
      const named = (p: SpawnedProxy, direction: string) =>
        p
          .accessLines()
          .some(
            (l) =>
              l.direction === direction &&
              l["src.workload"] === "client-vm" &&
              l["dst.workload"] === "echo-vm" &&
              l.bytes_recv === 65536,
          );
      return named(proxies[0]!, "outbound") && named(proxies[1]!, "inbound");
    });
    for (const ns of [h1, h2]) expect(hbone("capture", "rules", "--netns", ns.name, "--remove")).toMatch(/removed/);
    expect(await runInNetns(h1, ECHO_CLIENT, [VIP, "80"])).toMatch(/^ERR/);
  }, 60_000);
});
