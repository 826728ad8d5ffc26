// Redirect mode (a host without istio-cni, e.g. a VM): two "hosts" (network namespaces joined by a veth), each
// with a node proxy serving its workload through one listener set in that namespace, and the rules
// `hbone capture rules` prints, applied with --apply. Twice: driven from outside (`--capture NETNS`, rules with
// `--netns NAME`), and as the host itself would run it (proxy and `hbone capture rules --host` started inside the
// namespace, `--capture host`). An unmodified client on host 1 (`net.connect` to the service VIP) reaches the app
// on host 2 through HBONE byte-exact, named in both proxies' access logs; with the rules removed (--remove) its
// connection is no longer captured and `nft list ruleset` is what it was before (nothing left behind).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createNetns, requireNetns, runInNetns, vethPair, type Netns, type NetnsProcess } from "../helpers/netns.js";
import * as node from "../helpers/node-proxy.js";

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

/** `hbone ARGS`, here or (as that host's own command) inside `ns`. */
const hbone = (args: string[], ns?: Netns) =>
  ns
    ? ns.exec(process.execPath, "dist/host/cli.js", ...args)
    : execFileSync(process.execPath, ["dist/host/cli.js", ...args], { encoding: "utf8", timeout: 20_000 });

for (const mode of ["netns", "host"] as const) {
  describe.skipIf(!OK)(`redirect mode (${mode === "netns" ? "--capture NETNS" : "--capture host, run inside"})`, () => {
    let h1: Netns, h2: Netns, app: NetnsProcess;
    const proxies: node.SpawnedProxy[] = [];
    /** Rules for host `ns`: `--netns NAME` from outside, or `--host` inside it. */
    const rules = (ns: Netns, ...extra: string[]) =>
      mode === "netns"
        ? hbone(["capture", "rules", "--netns", ns.name, ...extra])
        : hbone(["capture", "rules", "--host", ...extra], ns);

    beforeAll(async () => {
      const m = await node.meshDir("redirect", { "mesh.yaml": config });
      h1 = createNetns("vm1");
      h2 = createNetns("vm2");
      const [if1] = vethPair(h1, h2, "10.89.0.2/24", "10.89.0.3/24");
      h1.ip("route", "add", "10.96.0.0/16", "dev", if1);
      app = await node.startEchoApp(h2);
      for (const [ns, nodeName] of [
        [h1, "vm1"],
        [h2, "vm2"],
      ] as const) {
        const args = ["--config", m.file("mesh.yaml"), "--ca-dir", m.caDir];
        proxies.push(
          mode === "netns"
            ? await node.spawnNodeProxy([...args, "--capture", ns.name], {
                NODE_NAME: nodeName,
                HBONE_LOG_LEVEL: "info",
              })
            : await node.spawnNodeProxy(
                [...args, "--capture", "host"],
                { NODE_NAME: nodeName, HBONE_LOG_LEVEL: "info" },
                { netns: ns.name },
              ),
        );
      }
    }, 60_000);

    afterAll(async () => {
      for (const p of proxies) await p.stop();
      await app?.stop();
      h1?.del();
      h2?.del();
    });

    it("prints the rules, applies them: the client's VIP connection is carried by HBONE; removed, it is not captured and nothing is left", async () => {
      const printed = rules(h1);
      expect(printed).toMatch(/redirect to :15001/);
      expect(printed).toMatch(/meta mark & 0x00000fff == 0x00000539|0x539/);
      if (mode === "host") expect(printed).toMatch(/tcp dport \{ 22 \} return/); // SSH stays reachable on a real host
      const before = [h1, h2].map((ns) => ns.exec("nft", "list", "ruleset"));
      // Without the rules, nothing captures the VIP connection (no host has the VIP).
      expect(await runInNetns(h1, node.ECHO_CLIENT, [VIP, "80"])).toMatch(/^ERR/);
      for (const ns of [h1, h2]) expect(rules(ns, "--apply")).toMatch(/applied/);
      expect(h1.exec("nft", "list", "ruleset")).toContain("redirect to :15001");
      expect(await runInNetns(h1, node.ECHO_CLIENT, [VIP, "80"])).toBe(node.ECHO_EXPECTED);
      await node.waitFor("access lines on both hosts", async () => {
        const named = (p: node.SpawnedProxy, direction: string) =>
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
      for (const ns of [h1, h2]) expect(rules(ns, "--remove")).toMatch(/removed/);
      expect([h1, h2].map((ns) => ns.exec("nft", "list", "ruleset"))).toEqual(before);
      expect(await runInNetns(h1, node.ECHO_CLIENT, [VIP, "80"])).toMatch(/^ERR/);
    }, 60_000);
  });
}
