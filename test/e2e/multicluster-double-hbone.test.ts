// Multicluster ambient on loopback (host/demo/two-clusters.ts): a global service with
// endpoints in both clusters reached by double HBONE through the other network's east-west
// gateway (outer tunnel to the gateway, inner end-to-end mTLS to the destination proxy),
// byte-exact, half-closed, with pooled inner connections.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TwoClusters } from "../../host/demo/two-clusters.js";
import { pattern, drain, pump } from "../helpers/net.js";

let dir: string;
let mc: TwoClusters;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hbone-mc-"));
  mc = await TwoClusters.start({ dir, octets: [21, 22] });
}, 60_000);
afterAll(async () => {
  await mc?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("double HBONE through the east-west gateway", () => {
  it("spreads a global service over both clusters by default", async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const { who, echo } = await mc.ask("echo.default.svc.cluster.local:9000", `m${i}`);
      expect(echo).toBe(`m${i}`);
      seen.set(who, (seen.get(who) ?? 0) + 1);
    }
    const remote = [...seen].filter(([k]) => k.endsWith("@cluster2")).reduce((n, [, v]) => n + v, 0);
    expect(remote).toBeGreaterThan(10);
    expect(remote).toBeLessThan(50);
  });

  it("moves 16 MiB both ways byte-exact through a cross-network tunnel, with half-close", async () => {
    // Retry until the load balancer picks a remote endpoint.
    for (let i = 0; i < 40; i++) {
      const t = await mc.client.connect("echo.default.svc.cluster.local:9000");
      const first: Buffer = await new Promise((r) => t.once("data", r));
      if (!first.toString().includes("@cluster2")) {
        t.destroy();
        continue;
      }
      const data = pattern(16 << 20, 5);
      const [, got] = await Promise.all([pump(t, data), drain(t, data)]);
      expect(got).toEqual({ bytes: data.length, equal: true });
      return;
    }
    throw new Error("never reached cluster2");
  });

  it("reuses inner connections: many tunnels, few inner handshakes", async () => {
    const before = mc.client.innerPool.stats.dials;
    for (let i = 0; i < 40; i++) await mc.ask("echo.default.svc.cluster.local:9000");
    // One inner session per remote endpoint picked (2 in cluster2), whichever pod the gateway chose.
    expect(mc.client.innerPool.stats.dials - before).toBeLessThanOrEqual(2);
    expect(mc.client.innerPool.stats.reused).toBeGreaterThan(10);
  });
});
