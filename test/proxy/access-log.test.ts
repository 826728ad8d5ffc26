// Access log lines in ztunnel's shape: exact field names and values from a ConnectionResult-like record, the
// levels (INFO complete, ERROR complete with error, WARN failed), run-time switching through the /logging spec,
// and the refusal rate limit (with its count of suppressed lines).

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getLevel, setLevel, setSink, type Level, type LogRecord } from "../../host/log.js";
import {
  applyLoggingSpec,
  accessLogLevel,
  completeFields,
  logConnectionComplete,
  logConnectionFailed,
  peersFromLabels,
  resetRefusalLimiter,
  setAccessLogLevel,
  type ConnectionRecord,
} from "../../host/proxy/access-log.js";
import { tcpLabels } from "../../host/metrics.js";

const logs: LogRecord[] = [];
let restore: () => void;
let globalLevel: Level;

beforeEach(() => {
  globalLevel = getLevel();
  setLevel("info");
  restore = setSink((r) => logs.push(r));
  setAccessLogLevel("info");
  resetRefusalLimiter();
});
afterEach(() => {
  restore();
  setLevel(globalLevel);
  setAccessLogLevel("info");
  logs.length = 0;
});

const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO = "spiffe://cluster.local/ns/echo/sa/echo";

function outbound(o: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    direction: "outbound",
    srcAddr: "10.0.0.1:41000",
    dstAddr: "10.0.0.2:15008",
    hboneAddr: "10.0.0.2:8080",
    service: "echo.echo.svc.cluster.local",
    src: { workload: "sleep-7d9", namespace: "default", identity: SLEEP },
    dst: { workload: "echo-5f6", namespace: "echo", identity: ECHO },
    bytes: { clientToServer: 1234, serverToClient: 56789 },
    startMs: 1000,
    endMs: 1042.4,
    ...o,
  };
}

describe("access log", () => {
  it("connection complete: ztunnel's fields, names and order, INFO, scope access", () => {
    logConnectionComplete(outbound());
    expect(logs).toHaveLength(1);
    const { time, ...rest } = logs[0]!;
    expect(Date.parse(time)).toBeGreaterThan(0);
    expect(rest).toEqual({
      level: "info",
      scope: "access",
      msg: "connection complete",
      "src.addr": "10.0.0.1:41000",
      "src.workload": "sleep-7d9",
      "src.namespace": "default",
      "src.identity": SLEEP,
      "dst.addr": "10.0.0.2:15008",
      "dst.hbone_addr": "10.0.0.2:8080",
      "dst.service": "echo.echo.svc.cluster.local",
      "dst.workload": "echo-5f6",
      "dst.namespace": "echo",
      "dst.identity": ECHO,
      direction: "outbound",
      bytes_sent: 56789,
      bytes_recv: 1234,
      duration: "42ms",
    });
    expect(Object.keys(completeFields(outbound()))).toEqual([
      "src.addr",
      "src.workload",
      "src.namespace",
      "src.identity",
      "dst.addr",
      "dst.hbone_addr",
      "dst.service",
      "dst.workload",
      "dst.namespace",
      "dst.identity",
      "direction",
      "bytes_sent",
      "bytes_recv",
      "duration",
    ]);
  });

  it("a failure is ERROR with `error`; plaintext inbound has no identities and no hbone_addr", () => {
    logConnectionComplete(outbound({ error: new Error("connection reset by peer") }));
    logConnectionComplete({
      direction: "inbound",
      srcAddr: "192.168.1.9:5555",
      dstAddr: "10.0.0.2:8080",
      src: { workload: "unknown" },
      dst: { workload: "echo-5f6", namespace: "echo" },
      bytes: { clientToServer: 0, serverToClient: 0 },
      startMs: 5,
      endMs: 4,
    });
    expect(logs[0]).toMatchObject({ level: "error", msg: "connection complete", error: "connection reset by peer" });
    const { time: _t, ...plain } = logs[1]!;
    expect(plain).toEqual({
      level: "info",
      scope: "access",
      msg: "connection complete",
      "src.addr": "192.168.1.9:5555",
      "dst.addr": "10.0.0.2:8080",
      "dst.workload": "echo-5f6",
      "dst.namespace": "echo",
      direction: "inbound",
      bytes_sent: 0,
      bytes_recv: 0,
      duration: "0ms",
    });
  });

  it("fields from the istio_tcp_* labels of a tunnel ('unknown' left out)", () => {
    const labels = tcpLabels(
      "source",
      { workload: "sleep-7d9", namespace: "default", principal: SLEEP },
      { workload: "echo-5f6", namespace: "echo" },
      { hostname: "echo.echo.svc.cluster.local" },
    );
    expect(peersFromLabels(labels)).toEqual({
      src: { workload: "sleep-7d9", namespace: "default", identity: SLEEP },
      dst: { workload: "echo-5f6", namespace: "echo", identity: undefined },
      service: "echo.echo.svc.cluster.local",
    });
    const f = completeFields({ ...outbound(), ...peersFromLabels(labels) });
    expect(f).not.toHaveProperty("dst.identity");
  });

  it("connection failed: WARN with only src.addr, dst.addr, direction, error", () => {
    expect(
      logConnectionFailed({
        direction: "inbound",
        srcAddr: "10.0.0.1:1",
        dstAddr: "10.0.0.2:15008",
        error: "RBAC: denied",
      }),
    ).toBe(true);
    const { time: _t, ...rest } = logs[0]!;
    expect(rest).toEqual({
      level: "warn",
      scope: "access",
      msg: "connection failed",
      "src.addr": "10.0.0.1:1",
      "dst.addr": "10.0.0.2:15008",
      direction: "inbound",
      error: "RBAC: denied",
    });
  });

  it("refusals are rate-limited by a token bucket; the next line written counts what was dropped", () => {
    let now = 0;
    resetRefusalLimiter({ perSecond: 10, burst: 5 }, () => now);
    const r = { direction: "inbound" as const, srcAddr: "10.0.0.1:1", dstAddr: "10.0.0.2:15008", error: "denied" };
    let written = 0;
    for (let i = 0; i < 1000; i++) if (logConnectionFailed(r)) written++;
    expect(written).toBe(5);
    expect(logs).toHaveLength(5);
    now += 100; // one token back
    expect(logConnectionFailed(r)).toBe(true);
    expect(logs[5]).toMatchObject({ msg: "connection failed", suppressed: 995 });
    expect(logConnectionFailed(r)).toBe(false);
    // Completed connections are not limited.
    for (let i = 0; i < 50; i++) logConnectionComplete(outbound());
    expect(logs).toHaveLength(56);
  });

  it("switchable at run time: the /logging spec (access:off, access:error, a bare level for the rest)", () => {
    expect(applyLoggingSpec("access:off")).toBeUndefined();
    expect(accessLogLevel()).toBe("off");
    logConnectionComplete(outbound());
    logConnectionFailed({ direction: "outbound", srcAddr: "a", dstAddr: "b", error: "x" });
    expect(logs).toHaveLength(0);

    expect(applyLoggingSpec("access:error, debug")).toBe("debug");
    logConnectionComplete(outbound());
    logConnectionComplete(outbound({ error: "boom" }));
    expect(logs.map((l) => l.level)).toEqual(["error"]);

    // A bad spec changes nothing.
    expect(() => applyLoggingSpec("access:info,proxy:loud")).toThrow(/unknown log level loud/);
    expect(() => applyLoggingSpec("access:info,h2:debug")).toThrow(/unknown log target h2/);
    expect(() => applyLoggingSpec("off")).toThrow(/cannot be off/);
    expect(accessLogLevel()).toBe("error");
    expect(() => setAccessLogLevel("verbose" as never)).toThrow(/unknown access log level/);

    expect(applyLoggingSpec("access:info")).toBeUndefined();
    logConnectionComplete(outbound());
    expect(logs).toHaveLength(2);
  });

  it("the global level still applies (warn hides INFO lines)", () => {
    setLevel("warn");
    logConnectionComplete(outbound());
    expect(logs).toHaveLength(0);
    logConnectionComplete(outbound({ error: "e" }));
    expect(logs).toHaveLength(1);
  });
});
