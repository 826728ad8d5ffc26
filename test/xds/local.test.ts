// LocalConfigSource on a real file in a temp dir with real fs watching: first load, good edits (in place and by
// rename, as editors save), a bad edit refused with file:line:field while the running config stays.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { type MeshConfig } from "../../host/model/index.js";
import { ConfigError } from "../../host/xds/local-format.js";
import { setSink, setLevel, getLevel, type LogRecord } from "../../host/log.js";
import { ProxyState, ProxyStateUpdater } from "../../host/state/index.js";
import { LocalConfigSource } from "../../host/xds/local.js";

const FIXTURE = fs.readFileSync(new URL("../fixtures/mesh.yaml", import.meta.url), "utf8");

let dir: string;
let file: string;
let logs: LogRecord[];
let restoreSink: () => void;
const sources: LocalConfigSource[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hbone-config-"));
  file = path.join(dir, "mesh.yaml");
  logs = [];
  // These tests read info-level lines; the suite runs at warn.
  const level = getLevel();
  setLevel("info");
  const restore = setSink((r) => logs.push(r));
  restoreSink = () => {
    restore();
    setLevel(level);
  };
});

afterEach(() => {
  for (const s of sources.splice(0)) s.close();
  restoreSink();
  fs.rmSync(dir, { recursive: true, force: true });
});

function source(state = new ProxyState()): { src: LocalConfigSource; state: ProxyState } {
  const src = new LocalConfigSource(file, new ProxyStateUpdater(state), { debounceMs: 20 });
  sources.push(src);
  return { src, state };
}

/** The next `event`, or a failure after 3 s. */
function next<T>(src: LocalConfigSource, event: "reloaded" | "rejected"): Promise<T> {
  return once(src, event, { signal: AbortSignal.timeout(3000) }).then(([v]) => v as T);
}

/** `text` with `from` replaced (which must be there, so a changed fixture cannot make an edit a no-op). */
function swap(text: string, from: string, to: string): string {
  expect(text).toContain(from);
  return text.replace(from, to);
}

/** Replaces the file the way editors save: write a sibling, rename over. */
function replaceByRename(text: string): void {
  const tmp = path.join(dir, ".mesh.yaml.swp");
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

describe("LocalConfigSource", () => {
  test("load applies the file and returns the config", () => {
    fs.writeFileSync(file, FIXTURE);
    const { src, state } = source();
    const updates: MeshConfig[] = [];
    state.on("updated", (c: MeshConfig) => updates.push(c));
    const cfg = src.load();
    expect(cfg.workloads).toHaveLength(4);
    expect(updates).toEqual([cfg]);
    expect(state.workloadByIp("127.0.0.2", "")?.name).toBe("echo-1");
    expect(logs.find((l) => l.msg === "config loaded")).toMatchObject({
      level: "info",
      scope: "config",
      file,
      workloads: 4,
      services: 4,
      policies: 2,
    });
  });

  test("a bad first load throws a located ConfigError and applies nothing", () => {
    fs.writeFileSync(
      file,
      swap(FIXTURE, "  serviceAccount: echo\n  trustDomain", "  serviceAcount: echo\n  trustDomain"),
    );
    const { src, state } = source();
    let err: unknown;
    try {
      src.load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/mesh\.yaml:7:3: workloads\[0\]\.serviceAcount: unknown field/);
    expect((err as ConfigError).file).toBe(file);
    expect(state.config.workloads).toEqual([]);
  });

  test("a missing file is a ConfigError naming it", () => {
    const { src } = source();
    expect(() => src.load()).toThrow(ConfigError);
    expect(() => src.load()).toThrow(/mesh\.yaml: cannot read: ENOENT/);
  });

  test("edits: good applies, bad is refused with line and field and the running config stays, good again applies", async () => {
    fs.writeFileSync(file, FIXTURE);
    const { src, state } = source();
    src.load();
    src.watch();

    // 1. A good edit written in place: echo-1 moves to 127.0.0.12.
    let reloaded = next<MeshConfig>(src, "reloaded");
    const echo1Ips = "workloadIps: [127.0.0.2]\n  protocol: HBONE\n  canonicalName"; // echo-1's, not echo-remote's
    fs.writeFileSync(file, swap(FIXTURE, echo1Ips, echo1Ips.replace("127.0.0.2", "127.0.0.12")));
    const cfg1 = await reloaded;
    expect(state.config).toBe(cfg1);
    expect(state.workloadByIp("127.0.0.12", "")?.name).toBe("echo-1");
    expect(state.workloadByIp("127.0.0.2", "")).toBeUndefined();

    // 2. A bad edit (a service port out of range): refused, state untouched.
    const rejected = next<ConfigError>(src, "rejected");
    const bad = swap(
      fs.readFileSync(file, "utf8"),
      "ports: {9000: 19000, 8080: 8081}",
      "ports: {9000: 190000, 8080: 8081}",
    );
    fs.writeFileSync(file, bad);
    const err = await rejected;
    const line = bad.split("\n").findIndex((l) => l.includes("190000")) + 1;
    const column = bad.split("\n")[line - 1]!.indexOf("190000") + 1;
    expect([err.file, err.line, err.column, err.field]).toEqual([file, line, column, "services[0].ports[9000]"]);
    expect(state.config).toBe(cfg1);
    expect(state.workloadByIp("127.0.0.12", "")?.name).toBe("echo-1");
    expect(state.serviceByVip("10.96.0.10")?.ports[9000]).toBe(19000);
    const warn = logs.find((l) => l.msg.startsWith("config change rejected"));
    expect(warn).toMatchObject({ level: "warn", scope: "config", file, line, field: "services[0].ports[9000]" });
    expect(warn!.error).toContain(`mesh.yaml:${line}:${column}: services[0].ports[9000]: 190000 is out of range`);

    // 3. A good edit saved by rename (the old inode goes away): applied.
    reloaded = next<MeshConfig>(src, "reloaded");
    replaceByRename(swap(FIXTURE, "capacity: 3", "capacity: 7"));
    const cfg3 = await reloaded;
    expect(state.config).toBe(cfg3);
    expect(state.findWorkload("default", "echo-2")?.capacity).toBe(7);
    expect(state.workloadByIp("127.0.0.2", "")?.name).toBe("echo-1");
  });

  test("an emptied file (as seen mid-rewrite) is refused; an explicit empty mesh is applied", async () => {
    fs.writeFileSync(file, FIXTURE);
    const { src, state } = source();
    src.load();
    src.watch();
    const rejected = next<ConfigError>(src, "rejected");
    fs.writeFileSync(file, "");
    expect((await rejected).reason).toMatch(/^empty file/);
    expect(state.config.workloads).toHaveLength(4);

    const reloaded = next<MeshConfig>(src, "reloaded");
    fs.writeFileSync(file, "workloads: []\n");
    await reloaded;
    expect(state.config.workloads).toEqual([]);
    expect(state.workloadByIp("127.0.0.2")).toBeUndefined();
  });

  test("rewriting the same text does not reload; close stops watching", async () => {
    fs.writeFileSync(file, FIXTURE);
    const { src, state } = source();
    src.load();
    src.watch();
    let events = 0;
    src.on("reloaded", () => events++);
    src.on("rejected", () => events++);
    state.on("updated", () => events++);

    fs.writeFileSync(file, FIXTURE);
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toBe(0);

    src.close();
    fs.writeFileSync(file, swap(FIXTURE, "capacity: 3", "capacity: 4"));
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toBe(0);
    expect(state.findWorkload("default", "echo-2")?.capacity).toBe(3);
  });
});
