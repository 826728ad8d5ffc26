// The proxy's GC ballast (host/gc-ballast.ts): sized by HBONE_GC_BALLAST_MB, 0 for none, a typo refused at start
// by the real CLI with the variable named, not an allocation that takes the machine's memory; and taken only when
// bulk traffic makes V8 churn mark-compacts, never by an idle proxy. Two real proxy processes (the source with
// HBONE_GC_BALLAST_MB=0, the destination with the default) run under the hbone command's NODE_FLAGS and
// --trace-gc, so each mark-compact V8 runs is a line we count.

import net from "node:net";
import { once } from "node:events";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../host/runtime-config.js";
import { meshFixture, type MeshFixture } from "./helpers/mesh.js";
import { NO_STATUS_PORTS, spawnHbone, type HboneProcess } from "./helpers/attack.js";

const CLI = fileURLToPath(new URL("../dist/host/cli.js", import.meta.url));

function proxyWith(value: string) {
  return spawnSync(
    process.execPath,
    [CLI, "proxy", "--config", "/nonexistent/mesh.yaml", "--ca-dir", "/nonexistent/ca", "--workload", "default/a/a"],
    {
      env: { ...process.env, HBONE_GC_BALLAST_MB: value },
      encoding: "utf8",
      timeout: 20_000,
    },
  );
}

describe("HBONE_GC_BALLAST_MB", () => {
  it("refuses a ballast too large or not a number, naming the variable", () => {
    for (const bad of ["100000", "-1", "6MB"]) {
      const r = proxyWith(bad);
      expect(r.status, bad).not.toBe(0);
      expect(r.stdout + r.stderr, bad).toContain("HBONE_GC_BALLAST_MB");
    }
  });

  it("accepts 0 (no ballast) and a few MB: start-up goes on to the config, which is what fails here", () => {
    for (const ok of ["0", "6"]) {
      const r = proxyWith(ok);
      expect(r.stdout + r.stderr, ok).not.toContain("HBONE_GC_BALLAST_MB");
      expect(r.stdout + r.stderr, ok).toMatch(/mesh\.yaml/);
    }
  });
});

const TAKEN = "GC ballast taken";
/** Bulk bytes through one tunnel: ~16 of V8's external-memory scavenges, each then a mark-compact without ballast. */
const BULK = 512 << 20;
/** How long the proxies idle from their start: V8's memory reducer runs its mark-compacts ~8 s after start-up. */
const IDLE_MS = 11_000;

/** One process's output as it comes: its mark-compacts (--trace-gc; memory-reducer ones apart) and ballast steps. */
interface Watched {
  proc: HboneProcess;
  markCompacts: number;
  /** Mark-compacts of V8's memory reducer (an idle heap's own). */
  reducer: number;
  /** markCompacts at each ballast step. */
  steps: number[];
}

function watch(onStep?: () => void): { watched: Partial<Watched>; onLine: (l: string) => void } {
  const watched: Partial<Watched> = { markCompacts: 0, reducer: 0, steps: [] };
  const onLine = (l: string) => {
    if (/Mark-Compact \(reduce\)/.test(l)) watched.reducer!++;
    else if (/Mark-Compact/.test(l)) watched.markCompacts!++;
    if (l.includes(TAKEN)) {
      watched.steps!.push(watched.markCompacts!);
      onStep?.();
    }
  };
  return { watched, onLine };
}

/** `bytes` into a --forward listener whose destination answers "got N bytes" after our FIN. */
async function send(forward: string, bytes: number): Promise<string> {
  const [host, port] = forward.split(":");
  const s = net.connect({ host, port: Number(port) });
  s.on("error", () => {});
  await once(s, "connect");
  const chunk = Buffer.alloc(64 << 10, 7);
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!s.write(chunk)) await once(s, "drain");
  }
  s.end();
  let reply = "";
  for await (const c of s) reply += String(c);
  return reply;
}

describe("the ballast is taken by bulk traffic, not by an idle proxy", () => {
  let fx: MeshFixture;
  let source: Watched;
  let dest: Watched;
  let forward: string;
  /** The source's mark-compacts when the destination took its first step. */
  let sourceAtFirstStep: number | undefined;
  let startedAt = 0;

  beforeAll(async () => {
    fx = await meshFixture();
    const common = ["--config", fx.configPath, "--ca-dir", fx.caDir, "--socks5-port", "off", ...NO_STATUS_PORTS];
    const nodeArgs = [...NODE_FLAGS, "--trace-gc"];
    startedAt = Date.now();
    const d = watch(() => (sourceAtFirstStep ??= source.markCompacts));
    d.watched.proc = await spawnHbone(
      "proxy",
      [...common, "--workload", "default/echo/echo", "--inbound-port", "0"],
      nodeArgs,
      { env: { HBONE_LOG_LEVEL: "info" }, onLine: d.onLine },
    );
    dest = d.watched as Watched;
    const s = watch();
    s.watched.proc = await spawnHbone(
      "proxy",
      [
        ...common,
        "--workload",
        "default/sleep/sleep",
        "--inbound-port",
        "off",
        "--hbone-port",
        (dest.proc.ready.inbound as string).split(":").at(-1)!,
        "--forward",
        "127.0.0.1:0=echo.default.svc.cluster.local:9001",
      ],
      nodeArgs,
      { env: { HBONE_LOG_LEVEL: "info", HBONE_GC_BALLAST_MB: "0" }, onLine: s.onLine },
    );
    source = s.watched as Watched;
    forward = (source.proc.ready.forward as string[])[0]!;
  }, 60_000);
  afterAll(async () => {
    await source?.proc.stop();
    await dest?.proc.stop();
    await fx?.close();
  });

  it("idle after a small tunnel, through V8's memory reducer (~8 s after start): neither proxy takes it", async () => {
    expect(await send(forward, 64 << 10)).toBe(`got ${64 << 10} bytes`);
    await new Promise((r) => setTimeout(r, Math.max(1500, startedAt + IDLE_MS - Date.now())));
    expect(dest.reducer + source.reducer, "the memory reducer ran (what must not take it)").toBeGreaterThan(0);
    expect(dest.steps, dest.proc.tail()).toEqual([]);
    expect(source.steps).toEqual([]);
  }, 30_000);

  it("bulk: the destination takes it once mark-compacts churn, and they stop; HBONE_GC_BALLAST_MB=0 never does", async () => {
    expect(await send(forward, BULK)).toBe(`got ${BULK} bytes`);
    await new Promise((r) => setTimeout(r, 300));
    const seen = `source ${source.markCompacts} mark-compacts (${sourceAtFirstStep ?? "none"} at the destination's first step), destination ${dest.markCompacts}, steps at ${dest.steps.join(", ")}`;
    // The source (no ballast) churned: the regime the ballast is for, which the destination would show too.
    expect(source.markCompacts, seen).toBeGreaterThanOrEqual(8);
    expect(source.steps, "HBONE_GC_BALLAST_MB=0 took a ballast").toEqual([]);
    // Taken early (two within 2 s take the first step), at most 12 MB in 6 MB steps, and then the churn is over.
    expect(dest.steps.length, seen).toBeGreaterThanOrEqual(1);
    expect(dest.steps.length, seen).toBeLessThanOrEqual(2);
    expect(dest.steps[0], seen).toBeLessThanOrEqual(5);
    expect(dest.markCompacts - dest.steps.at(-1)!, seen).toBeLessThanOrEqual(2);
    expect(dest.markCompacts - dest.steps[0]!, seen).toBeLessThan((source.markCompacts - (sourceAtFirstStep ?? 0)) / 2);
    expect(source.proc.alive() && dest.proc.alive()).toBe(true);
  }, 60_000);
});
