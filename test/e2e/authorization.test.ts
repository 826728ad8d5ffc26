// L4 authorization end to end: a 401 for a denied peer (counted with response_flags DENY), and an open tunnel
// closed when a policy change now denies it. Policies come from the config file, as from istiod. The policy
// semantics themselves are a table test in test/state/policy.test.ts.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { DENY_SLEEP_YAML, meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { hboneSession, id, issue } from "../helpers/attack.js";

describe("authorization end to end", () => {
  let fx: MeshFixture;
  let a: Mesh, b: Mesh;
  let original: string;
  beforeAll(async () => {
    fx = await meshFixture();
    original = readFileSync(fx.configPath, "utf8");
    // Only sleep may reach echo.
    writeFileSync(
      fx.configPath,
      original +
        `policies:
  - name: only-sleep
    namespace: default
    scope: Namespace
    action: Allow
    rules: [[[{principals: [cluster.local/ns/default/sa/sleep]}]]]
`,
    );
    b = await fx.proxy({ workload: "default/echo/echo" });
    a = await fx.proxy({ workload: "default/sleep/sleep", hbonePort: b.addresses.inbound!.port });
  });
  afterAll(async () => fx?.close());

  it("answers 401 to a peer no policy allows, and counts it with response_flags DENY", async () => {
    const s = await hboneSession({
      host: "127.0.0.3",
      port: b.addresses.inbound!.port,
      certificate: await issue(fx.caDir, "default", "intruder"),
      expected: id("default", "echo"),
    });
    try {
      const stream = await s.connect(`127.0.0.3:${fx.echoPort}`);
      expect(stream.status).toBe(401);
    } finally {
      s.destroy();
    }
    const text = await (await fetch(`http://127.0.0.1:${b.addresses.metrics!.port}/metrics`)).text();
    expect(text).toMatch(
      /istio_tcp_connections_failed_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/intruder"[^}]*response_flags="DENY"[^}]*\} 1/,
    );
    // The allowed peer gets through.
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    t.end("ok");
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("ok");
  });

  it("closes an open tunnel that a policy change now denies", async () => {
    const t = await a.connect("echo.default.svc.cluster.local:9000");
    const closed = new Promise<void>((r) => t.on("close", () => r()));
    t.on("error", () => {});
    t.write("before");
    await new Promise((r) => t.once("data", r));
    writeFileSync(fx.configPath, original + DENY_SLEEP_YAML);
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(3000);
    await expect(a.connect("echo.default.svc.cluster.local:9000")).rejects.toMatchObject({ status: 401 });
  });
});
