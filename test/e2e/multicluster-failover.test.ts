// The two-cluster demo's story as assertions: the default spread, PreferClose keeping traffic
// local, failover to the other cluster when the local pods stop (outlier detection + connect
// retries) and the return when they restart (ejection expiry), a local-only service that
// never leaves its cluster, and metric labels from both clusters with no "unknown".

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TwoClusters } from "../../host/demo/two-clusters.js";

const ECHO = "echo.default.svc.cluster.local:9000";
let dir: string;
let mc: TwoClusters;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hbone-mcfo-"));
  mc = await TwoClusters.start({ dir, octets: [41, 42], proxy: { outlier: { failures: 3, baseEjectionMs: 500 } } });
}, 60_000);
afterAll(async () => {
  await mc?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("multicluster traffic distribution and failover", () => {
  it("keeps a non-global service in its cluster", async () => {
    expect(await mc.tally("hello.default.svc.cluster.local:9000", 30)).toEqual({ local: 30, remote: 0, failed: 0 });
  });

  it("PreferClose keeps everything local while local endpoints are healthy", async () => {
    await mc.setDistribution("PreferClose");
    expect(await mc.tally(ECHO, 60)).toEqual({ local: 60, remote: 0, failed: 0 });
  });

  it("fails over to cluster2 when cluster1's echo pods stop, and comes back when they restart", async () => {
    await mc.stopProxy("cluster1", "echo-a");
    await mc.stopProxy("cluster1", "echo-b");
    const during = await mc.tally(ECHO, 40);
    // No tunnel is lost: a failed dial (or a 503) is retried on an endpoint not tried yet, and the
    // dead ones are ejected within the first tunnel's picks.
    expect(during).toEqual({ local: 0, remote: 40, failed: 0 });
    const tail = await mc.tally(ECHO, 20);
    expect(tail).toEqual({ local: 0, remote: 20, failed: 0 });
    await mc.restartProxy("cluster1", "echo-a");
    await mc.restartProxy("cluster1", "echo-b");
    const t0 = Date.now();
    let local = 0;
    while (Date.now() - t0 < 10_000 && local < 10) {
      if ((await mc.ask(ECHO)).who.endsWith("@cluster1")) local++;
    }
    expect(local).toBe(10);
    // Ejections were 500 ms (doubling at most twice here): recovery within a few seconds.
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("labels metric series from both clusters, with no unknown", async () => {
    const text = await (await fetch(`http://127.0.0.1:${mc.client.addresses.metrics!.port}/metrics`)).text();
    const opened = text.split("\n").filter((l) => l.startsWith("istio_tcp_connections_opened_total{"));
    expect(opened.some((l) => l.includes('destination_cluster="cluster2"'))).toBe(true);
    expect(opened.some((l) => l.includes('destination_cluster="cluster1"'))).toBe(true);
    for (const l of opened) {
      for (const k of [
        "source_workload",
        "source_cluster",
        "destination_workload",
        "destination_cluster",
        "destination_principal",
      ]) {
        expect(l).not.toContain(`${k}="unknown"`);
      }
    }
    const remote = mc.proxies.get("cluster2/echo-a")!;
    const rtext = await (await fetch(`http://127.0.0.1:${remote.addresses.metrics!.port}/metrics`)).text();
    const rOpened = rtext.split("\n").filter((l) => l.startsWith("istio_tcp_connections_opened_total{"));
    expect(rOpened.length).toBeGreaterThan(0);
    for (const l of rOpened) {
      expect(l).toContain('source_cluster="cluster1"');
      expect(l).toContain('source_workload="sleep"');
    }
  });
});
