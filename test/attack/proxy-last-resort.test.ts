// The last resort of a spawned `hbone proxy`: errors that nobody owns (here thrown and rejected on
// purpose by a preloaded module, as a bug in some room would) are logged with their stack, at most
// 10 a minute, and the proxy keeps serving every other tunnel instead of exiting.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import {
  CLI,
  spawnHbone,
  expectRssBelow,
  roundTrip,
  eventually,
  type HboneProcess,
  proxyArgs,
} from "../helpers/attack.js";

const BUGS = 60;
/** On SIGUSR2: 60 planted bugs 5 ms apart, uncaught exceptions and unhandled rejections in turn (a data: URL: no "%"). */
const BUGGY = `data:text/javascript,process.once("SIGUSR2", () => {
  let n = 0;
  const tick = () => {
    n++;
    if ((n & 1) === 1) setTimeout(() => { throw new Error("planted bug " + n); }, 0);
    else void Promise.reject(new Error("planted rejection " + n));
    if (n < ${BUGS}) setTimeout(tick, 5);
  };
  tick();
});`;

let fx: MeshFixture;
let proxy: HboneProcess;
let client: Mesh;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` (npm test does)`);
  fx = await meshFixture();
  proxy = await spawnHbone("proxy", proxyArgs(fx, "default/echo/echo"), ["--import", BUGGY]);
  const inbound = Number(String(proxy.ready.inbound).split(":")[1]);
  client = await fx.proxy({ workload: "default/sleep/sleep", inboundPort: false, hbonePort: inbound });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await fx?.close();
});

describe("last-resort handler (spawned hbone proxy)", () => {
  it("logs unowned errors with their stack, rate-limited, and keeps serving", async () => {
    expect(proxy.unowned).toEqual([]);
    proxy.proc.kill("SIGUSR2");
    await eventually(async () => expect(proxy.unowned.join("\n")).toMatch(/planted/), 10_000);
    await new Promise((r) => setTimeout(r, 2000)); // all have fired
    expect(proxy.alive(), proxy.tail()).toBe(true);
    const logged = proxy.unowned.filter((l) => l.includes("last-resort handler caught"));
    expect(logged.length).toBe(10);
    const records = logged.map((l) => JSON.parse(l) as { kind: string; stack: string });
    expect(new Set(records.map((r) => r.kind))).toEqual(new Set(["uncaughtException", "unhandledRejection"]));
    expect(records[0].stack).toMatch(/planted bug 1\n\s+at /);
    await roundTrip(await client.connect("echo.default.svc.cluster.local:9000"));
    expectRssBelow(proxy);
  });
});
