// host/runtime-config.ts: flags win over variables, variables over defaults; aliases; every malformed
// value is refused with the name of the flag or variable; the defaults are ztunnel's.

import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveRuntime, RuntimeConfigError, DEFAULTS, ENV, PORTS, PATHS } from "../../host/runtime-config.js";

const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));

describe("resolveRuntime", () => {
  it("gives ztunnel's defaults with nothing set", () => {
    const r = resolveRuntime({}, {});
    expect(r.ports).toEqual({
      inbound: PORTS.hbone,
      socks5: PORTS.socks5,
      admin: PORTS.admin,
      metrics: PORTS.metrics,
      readiness: PORTS.readiness,
    });
    expect(r.drainTimeoutMs).toBe(30_000);
    expect(r.connectTimeoutMs).toBe(10_000);
    expect(r.tokenFile).toBe(PATHS.token);
    expect(r.rootCertPath).toBe(PATHS.rootCert);
    expect(r.inpodUds).toBe(PATHS.zdsSocket);
    expect(r.packetMark).toBe(DEFAULTS.packetMark);
    expect(r.responseBaggage).toBe(true);
    expect(r.proxyMode).toBe("shared");
    expect(r.statusAddress).toBe("127.0.0.1");
    expect(resolveRuntime({}, {}, { gateway: true }).ports.socks5).toBe(false);
  });

  it("reads ztunnel's variables, aliases included; flags win", () => {
    const env = {
      XDS_ADDRESS: "istiod.istio-system.svc:15012",
      ISTIO_META_CLUSTER_ID: "east",
      ISTIO_META_NETWORK: "n1",
      PROXY_WORKLOAD_INFO: "ns/pod/sa",
      ENABLE_RESPONSE_BAGGAGE: "false",
      TERMINATION_GRACE_PERIOD_SECONDS: "11",
      RUST_LOG: "debug",
      PACKET_MARK: "4660",
      INPOD_ENABLED: "true",
      KUBERNETES_SERVICE_HOST: "10.96.0.1",
      CA_ADDRESS: "",
    };
    const r = resolveRuntime({}, env);
    expect(r).toMatchObject({
      xdsAddress: env.XDS_ADDRESS,
      cluster: "east",
      network: "n1",
      workload: "ns/pod/sa",
      proxyMode: "dedicated",
      responseBaggage: false,
      drainTimeoutMs: 10_000,
      logLevel: "debug",
      packetMark: 4660,
      inpod: true,
      statusAddress: "0.0.0.0",
      caAddress: undefined,
    });
    const f = resolveRuntime(
      { cluster: "west", "drain-timeout": "2", "status-address": "127.0.0.9", "admin-port": "off" },
      env,
    );
    expect(f).toMatchObject({ cluster: "west", drainTimeoutMs: 2000, statusAddress: "127.0.0.9" });
    expect(f.ports.admin).toBe(false);
    // RUST_LOG filter lists are ztunnel's, not ours: ignored, not an error.
    expect(resolveRuntime({}, { RUST_LOG: "info,access=debug" }).logLevel).toBe("info");
  });

  it("takes the worker count from --workers or HBONE_WORKERS (default 1)", () => {
    expect(resolveRuntime({}, {}).workers).toBe(1);
    expect(resolveRuntime({}, { HBONE_WORKERS: "2" }).workers).toBe(2);
    expect(resolveRuntime({ workers: "3" }, { HBONE_WORKERS: "2" }).workers).toBe(3);
  });

  it.each([
    [{ "inbound-port": "70000" }, {}, /--inbound-port: not a port: 70000/],
    [{ "metrics-port": "" }, {}, /--metrics-port: not a port/],
    [{ "hbone-port": "0" }, {}, /--hbone-port/],
    [{ "drain-timeout": "soon" }, {}, /--drain-timeout/],
    [{ "status-address": "localhost" }, {}, /--status-address: not an IP/],
    [{}, { ENABLE_RESPONSE_BAGGAGE: "maybe" }, /ENABLE_RESPONSE_BAGGAGE: not a boolean: maybe/],
    [{}, { PROXY_MODE: "sidecar" }, /PROXY_MODE/],
    [{}, { PACKET_MARK: "-1" }, /PACKET_MARK/],
    [{}, { TERMINATION_GRACE_PERIOD_SECONDS: "x" }, /TERMINATION_GRACE_PERIOD_SECONDS/],
    [{}, { HBONE_LOG_LEVEL: "loud" }, /HBONE_LOG_LEVEL/],
    [{}, { LOG_FORMAT: "plain" }, /LOG_FORMAT/],
    [{ workers: "0" }, {}, /--workers: not a number of workers from 1 to 64: 0/],
    [{}, { HBONE_WORKERS: "many" }, /HBONE_WORKERS: not a number of workers/],
    [{ workers: "2" }, { INPOD_ENABLED: "true" }, /--workers: in-pod mode \(INPOD_ENABLED\) runs one process/],
  ] as const)("refuses %j %j", (flags, env, re) => {
    expect(() => resolveRuntime(flags, env)).toThrow(RuntimeConfigError);
    expect(() => resolveRuntime(flags, env)).toThrow(re);
  });
});

describe("hbone proxy with a bad variable", () => {
  it.each([
    ["ENABLE_RESPONSE_BAGGAGE", "maybe", /^hbone: ENABLE_RESPONSE_BAGGAGE: not a boolean: maybe$/m],
    [
      "TERMINATION_GRACE_PERIOD_SECONDS",
      "-3",
      /^hbone: TERMINATION_GRACE_PERIOD_SECONDS: not a non-negative number: -3$/m,
    ],
    ["PROXY_MODE", "sidecar", /^hbone: PROXY_MODE: shared or dedicated, not sidecar$/m],
  ])("%s=%s exits 1 naming it, before opening anything", (name, value, re) => {
    const r = spawnSync(process.execPath, [CLI, "proxy", "ztunnel"], {
      encoding: "utf8",
      timeout: 20_000,
      env: { PATH: process.env.PATH, [name]: value },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(re);
    expect(r.stdout).toBe("");
  });
});

describe("the runtime table", () => {
  it("lists every variable the proxy's source reads (envInt, envFlag, process.env.X, read(env, X))", () => {
    const hostDir = fileURLToPath(new URL("../../host/", import.meta.url));
    const declared = new Set(ENV.flatMap((e) => [e.name, ...(e.aliases ?? [])]));
    const read =
      /(?:envInt|envFlag)\("([A-Z0-9_]+)"|process\.env\.([A-Z0-9_]+)|process\.env\["([A-Z0-9_]+)"\]|(?:read|bool)\(env, "([A-Z0-9_]+)"/g;
    const found = new Map<string, string>();
    for (const f of readdirSync(hostDir, { recursive: true, encoding: "utf8" })) {
      if (!f.endsWith(".ts") || f.startsWith("xds/gen")) continue;
      for (const m of readFileSync(join(hostDir, f), "utf8").matchAll(read)) found.set(m.slice(1).find(Boolean)!, f);
    }
    expect(found.size).toBeGreaterThan(10); // the scan itself works
    const missing = [...found].filter(([name]) => !declared.has(name)).map(([name, f]) => `${name} (host/${f})`);
    expect(missing).toEqual([]);
  });
});
