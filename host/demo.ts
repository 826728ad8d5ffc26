// `npm start`: two clusters, an east-west gateway per network, echo apps, a global service `echo` with
// endpoints in both clusters and a local-only service `hello`. In node mode (root, iproute2, nftables:
// host/demo/node-clusters.ts) every pod is a network namespace with capture rules and one node proxy per node
// serves all its pods (in-pod mode over ZDS); otherwise (or with HBONE_DEMO_LAYOUT=loopback) the loopback layout
// (host/demo/two-clusters.ts: a proxy per workload on 127.0.x.y), and one line says why. It drives traffic from
// cluster1 and prints where tunnels went (default spread vs PreferClose), failover when cluster1's echo pods stop
// and recovery when they return, handshakes saved by pooling, and metric series labelled from both clusters.
// Then it keeps serving metrics and admin until Ctrl-C (or --duration). SIGINT/SIGTERM at any point cleans up.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TwoClusters, type Tally } from "./demo/two-clusters.js";
import { NodeClusters, nodeModeUnavailable } from "./demo/node-clusters.js";
import { setLevel } from "./log.js";

const ECHO = "echo.default.svc.cluster.local:9000";
const HELLO = "hello.default.svc.cluster.local:9000";

const pct = (x: number, n: number) => `${Math.round((100 * x) / Math.max(1, n))}%`;

function row(label: string, t: Tally, extra = ""): string {
  const n = t.local + t.remote + t.failed;
  return `| ${label} | ${n} | ${t.local} (${pct(t.local, n)}) | ${t.remote} (${pct(t.remote, n)}) | ${t.failed} | ${extra} |`;
}

/** Metric series of a proxy, reduced to the labels the table shows. */
async function series(port: number, reporter: string): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("istio_tcp_connections_opened_total{") || !line.includes(`reporter="${reporter}"`)) continue;
    const get = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(line)?.[1] ?? "?";
    out.add(
      `${get("source_workload")}.${get("source_cluster")} -> ${get("destination_workload")}.${get("destination_cluster")} ` +
        `(${get("destination_service")}, principal ${get("source_principal").replace("spiffe://cluster.local/", "")}): ` +
        `${line.slice(line.lastIndexOf(" ") + 1)}`,
    );
  }
  return [...out];
}

/** Why the demo runs the loopback layout, or undefined for node mode. */
function loopbackReason(): string | undefined {
  if (process.env.HBONE_DEMO_LAYOUT === "loopback") return "HBONE_DEMO_LAYOUT=loopback asks for it";
  return nodeModeUnavailable();
}

export async function runDemo(durationSec?: number): Promise<void> {
  setLevel((process.env.HBONE_LOG_LEVEL as "debug") ?? "error");
  const dir = mkdtempSync(join(tmpdir(), "hbone-demo-"));
  let mc: TwoClusters | undefined;
  // A signal before the serving phase exits at once: node mode's exit hook deletes its namespaces and stops its
  // gateways (synchronously); while serving, a signal ends serving and the finally below closes everything.
  let onSignal: () => void = () => {
    rmSync(dir, { recursive: true, force: true });
    console.log("interrupted; cleaned up");
    process.exit(130);
  };
  const handler = () => onSignal();
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  try {
    const t0 = Date.now();
    const why = loopbackReason();
    const options = { dir, proxy: { outlier: { baseEjectionMs: 1000 } } };
    if (why)
      console.log(`node mode unavailable: ${why}; running the loopback layout (a proxy per workload on 127.0.x.y)`);
    if (!why) {
      // Root with ip and nft may still be refused namespaces (a container without CAP_SYS_ADMIN): fall back then too.
      const announce = (tag: string) => console.log(`node mode: starting; its network namespaces are ${tag}-*`);
      mc = await NodeClusters.startNodes(options, announce).catch((err: Error) => {
        console.log(`node mode failed: ${err.message.split("\n")[0]}; running the loopback layout instead`);
        return undefined;
      });
    }
    mc ??= await TwoClusters.start({ ...options, dir: join(dir, "loopback") });
    const client = mc.client;
    console.log(`two clusters up in ${Date.now() - t0} ms: ${mc.describe()}`);
    if (mc instanceof NodeClusters) {
      for (const c of mc.clusters) console.log(`  ${c}-node's one proxy serves: ${(await mc.served(c)).join(", ")}`);
      const vip = await mc.lookupInPod("echo.default.svc.cluster.local");
      console.log(
        `  DNS inside cluster1's sleep pod (its DNS proxy, no /etc/hosts): echo.default.svc.cluster.local -> ${vip.join(",")}`,
      );
    }
    const rows: string[] = [
      "| traffic from cluster1 sleep | tunnels | local (cluster1) | cross-network (cluster2) | failed | note |",
      "| --- | ---: | ---: | ---: | ---: | --- |",
    ];
    rows.push(row("echo (global), default: spread evenly", await mc.tally(ECHO, 100)));
    rows.push(row("hello (local-only service)", await mc.tally(HELLO, 30), "never leaves its cluster"));
    await mc.setDistribution("PreferClose");
    rows.push(
      row("echo, trafficDistribution PreferClose", await mc.tally(ECHO, 100), "FAILOVER [NETWORK, REGION, ZONE]"),
    );
    await mc.stopProxy("cluster1", "echo-a");
    await mc.stopProxy("cluster1", "echo-b");
    rows.push(
      row(
        "echo, PreferClose, cluster1's echo pods stopped",
        await mc.tally(ECHO, 50),
        "outlier detection ejects them; failover to cluster2",
      ),
    );
    let exactLine = "";
    if (mc instanceof NodeClusters) {
      const x = await mc.exactRemote(ECHO, 1 << 20);
      exactLine =
        `byte-exact across clusters: 1 MiB from cluster1's sleep pod to ${x.who} through cluster2's east-west ` +
        `gateway (double HBONE) came back ${x.exact ? "identical" : "DIFFERENT"} (sha256 ${x.sha.slice(0, 16)}…)\n`;
    }
    await mc.restartProxy("cluster1", "echo-a");
    await mc.restartProxy("cluster1", "echo-b");
    const tRecover = Date.now();
    let back = 0;
    while (Date.now() - tRecover < 10_000) {
      const { who } = await mc.ask(ECHO);
      if (who.endsWith("@cluster1") && ++back >= 5) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    rows.push(
      row(
        "echo, PreferClose, pods restarted",
        await mc.tally(ECHO, 50),
        `back to local ${back >= 5 ? `within ${Date.now() - tRecover} ms` : "not yet"} (ejection expired)`,
      ),
    );
    console.log(`\n${rows.join("\n")}\n`);
    if (exactLine) console.log(exactLine);

    const outer = client.pool.stats,
      inner = client.innerPool.stats;
    const tunnels = 330;
    console.log(
      `pooling: ${tunnels} tunnels from cluster1 sleep cost ${outer.dials} outer TLS handshakes (to node proxies and ` +
        `the cluster2 gateway) and ${inner.dials} inner end-to-end handshakes through the gateway ` +
        `(${outer.reused} + ${inner.reused} reuses)\n`,
    );

    const at = mc instanceof NodeClusters ? "cluster1-node's proxy" : "cluster1 sleep";
    console.log(`metric series at ${at} (reporter=source):`);
    for (const s of await series(client.addresses.metrics!.port, "source")) console.log(`  ${s}`);
    const remoteEcho = mc.proxies.get("cluster2/echo-a")!;
    console.log(
      `metric series at ${mc instanceof NodeClusters ? "cluster2-node's proxy" : "cluster2 echo-a"} ` +
        "(reporter=destination; the source is known from baggage, via the gateway):",
    );
    for (const s of await series(remoteEcho.addresses.metrics!.port, "destination")) console.log(`  ${s}`);

    console.log(
      `\nadmin 127.0.0.1:${client.addresses.admin!.port}/config_dump, metrics 127.0.0.1:${client.addresses.metrics!.port}/metrics ` +
        `(${at})`,
    );
    if (durationSec === 0) return;
    console.log(durationSec ? `serving for ${durationSec} s…` : "serving; Ctrl-C to stop.");
    await new Promise<void>((resolve) => {
      const keepAlive = setInterval(() => {}, 1 << 30);
      const stop = () => {
        clearInterval(keepAlive);
        resolve();
      };
      onSignal = stop;
      if (durationSec) setTimeout(stop, durationSec * 1000).unref();
    });
  } finally {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
    await mc?.close();
    rmSync(dir, { recursive: true, force: true });
    console.log(mc instanceof NodeClusters ? `stopped; removed the namespaces ${mc.tag}-*` : "stopped");
  }
}
