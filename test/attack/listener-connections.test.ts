// Established-connection caps on :15008 of a real `hbone proxy` process: one authenticated peer opening connection
// after connection gets at most HBONE_MAX_ESTABLISHED_PER_PEER (here 4) of them, all peers together at most
// HBONE_MAX_ESTABLISHED (here 6); a connection over a cap is closed after its handshake (its CONNECT fails), the ones
// within keep serving, a slot freed is usable again, and the process survives.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import { Identity } from "../../host/identity/identity.js";
import type { H2Session } from "../../host/h2/session.js";
import type { WorkloadCertificate } from "../../host/identity/ca.js";
import { hboneSession, issue, spawnProxy, type ProxyProcess } from "../helpers/attack.js";

const PER_PEER = 4;
const TOTAL = 6;
const ECHO = new Identity("cluster.local", "default", "echo");

let fx: MeshFixture;
let p: ProxyProcess;
let certA: WorkloadCertificate;
let certB: WorkloadCertificate;

beforeAll(async () => {
  fx = await meshFixture();
  certA = await issue(fx.caDir, "default", "sleep");
  certB = await issue(fx.caDir, "far", "other");
  p = await spawnProxy({
    config: fx.configPath,
    caDir: fx.caDir,
    workload: "default/echo/echo",
    env: { HBONE_MAX_ESTABLISHED_PER_PEER: String(PER_PEER), HBONE_MAX_ESTABLISHED: String(TOTAL) },
  });
}, 60_000);
afterAll(async () => {
  await p?.kill();
  await fx?.close();
});

/** Whether a tunnel works on `s` (echo answers). */
async function works(s: H2Session): Promise<boolean> {
  try {
    const stream = await s.connect(`127.0.0.3:${fx.echoPort}`);
    if (stream.status !== 200) return false;
    stream.end("ping");
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString() === "ping";
  } catch {
    return false;
  }
}

async function open(cert: WorkloadCertificate): Promise<H2Session> {
  const s = await hboneSession({ ...p.inbound, certificate: cert, expected: ECHO });
  s.on("error", () => {});
  // The server judges the client certificate after the client's handshake is done: give it a moment.
  await new Promise((r) => setTimeout(r, 100));
  return s;
}

describe("established HBONE connection caps", () => {
  it("caps connections per peer identity and in total; others keep working; freed slots are reused", async () => {
    const a: H2Session[] = [];
    for (let i = 0; i < PER_PEER + 2; i++) a.push(await open(certA));
    const aWorks = await Promise.all(a.map(works));
    expect(aWorks.filter(Boolean)).toHaveLength(PER_PEER);
    expect(aWorks.slice(0, PER_PEER).every(Boolean)).toBe(true);

    const b: H2Session[] = [];
    for (let i = 0; i < 3; i++) b.push(await open(certB));
    const bWorks = await Promise.all(b.map(works));
    // TOTAL − PER_PEER slots were left for B.
    expect(bWorks).toEqual([true, true, false]);

    // Freeing one of A's connections frees a slot (total and A's).
    a[0].destroy();
    await new Promise((r) => setTimeout(r, 200));
    const again = await open(certB);
    expect(await works(again)).toBe(true);
    // Those within the caps still serve.
    expect(await works(a[1])).toBe(true);
    expect(await works(b[0])).toBe(true);
    for (const s of [...a, ...b, again]) s.destroy();
    expect(p.alive()).toBe(true);
    const capped = p.logs().filter((l) => l.msg === "HBONE connection closed: established-connection cap");
    expect(capped.length).toBe(3); // A's two over its cap, B's one over the total
  });
});
