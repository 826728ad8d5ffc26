// What NODE_FLAGS' --initial-old-space-size does for a bulk tunnel on a proxy that has idled: once V8 has idled past
// its first recomputation of the old generation's limit, that limit is the live heap plus a few MB, less room than
// the young generation's capacity, so V8 started a mark-compact after nearly every scavenge of a bulk tunnel (one
// per ~32 MB of socket buffers). Two real proxy processes idle ~11 s, then carry 512 MiB: the source runs with the
// hbone command's NODE_FLAGS, the destination with the same flags but that one (the regime it is for, on the same
// bytes), both under --trace-gc, so each mark-compact V8 runs is a line we count. How deep the regime goes hangs on
// the live heap's exact size: the control ran 26-30 mark-compacts on earlier trees, 17-19 with Node's root
// certificates loaded (0.2 MB more), 4-7 since they are not (host/tls/node-tls.ts); the proxy with the flag ran 0.

import net from "node:net";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../host/runtime-config.js";
import { meshFixture, type MeshFixture } from "./helpers/mesh.js";
import { NO_STATUS_PORTS, forwardSourceArgs, spawnHbone, type HboneProcess } from "./helpers/attack.js";

const OLD_SPACE_FLAG = "--initial-old-space-size=64";
const BULK = 512 << 20;
/** How long the proxies idle from their start before the bulk tunnel. */
const IDLE_MS = 11_000;

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

describe("NODE_FLAGS and garbage collection of a bulk tunnel after an idle spell", () => {
  let fx: MeshFixture;
  let source: HboneProcess;
  let dest: HboneProcess;
  const markCompacts = { source: 0, dest: 0 };
  const counter = (who: keyof typeof markCompacts) => (l: string) => {
    // V8's memory reducer runs its own on an idle heap: not the churn this is about.
    if (/Mark-Compact/.test(l) && !/Mark-Compact \(reduce\)/.test(l)) markCompacts[who]++;
  };
  let startedAt = 0;

  beforeAll(async () => {
    expect(NODE_FLAGS).toContain(OLD_SPACE_FLAG);
    fx = await meshFixture();
    const common = ["--config", fx.configPath, "--ca-dir", fx.caDir, "--socks5-port", "off", ...NO_STATUS_PORTS];
    startedAt = Date.now();
    dest = await spawnHbone(
      "proxy",
      [...common, "--workload", "default/echo/echo", "--inbound-port", "0"],
      [...NODE_FLAGS.filter((f) => f !== OLD_SPACE_FLAG), "--trace-gc"],
      { onLine: counter("dest") },
    );
    source = await spawnHbone(
      "proxy",
      [...common, ...forwardSourceArgs(dest, "127.0.0.1:0=echo.default.svc.cluster.local:9001")],
      [...NODE_FLAGS, "--trace-gc"],
      { onLine: counter("source") },
    );
  }, 60_000);
  afterAll(async () => {
    await source?.stop();
    await dest?.stop();
    await fx?.close();
  });

  it("idled, the proxy with NODE_FLAGS runs at most 2 mark-compacts in 512 MiB; without the old-space floor, more", async () => {
    const forward = (source.ready.forward as string[])[0]!;
    expect(await send(forward, 64 << 10)).toBe(`got ${64 << 10} bytes`);
    await new Promise((r) => setTimeout(r, Math.max(1500, startedAt + IDLE_MS - Date.now())));
    const before = { ...markCompacts };
    expect(await send(forward, BULK)).toBe(`got ${BULK} bytes`);
    await new Promise((r) => setTimeout(r, 300));
    const seen = `mark-compacts during the bulk tunnel: source ${markCompacts.source - before.source}, destination ${markCompacts.dest - before.dest}`;
    // The control churns on the same bytes: the regime exists here, so the check below can fail.
    expect(markCompacts.dest - before.dest, seen).toBeGreaterThanOrEqual(3);
    expect(markCompacts.source - before.source, seen).toBeLessThanOrEqual(2);
    expect(source.alive() && dest.alive()).toBe(true);
  }, 60_000);
});
