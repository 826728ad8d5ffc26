// host/net.ts: dialTcp and listen with real loopback sockets. Node 20's V8 (11.3) gives an object copied with
// `{ ...o }` a map outside the transition tree, so net.Socket's constructor, which copies its options and adds three
// fields, made three maps and descriptor arrays per socket in the old generation (~1 KB of garbage per tunnel that
// only a mark-compact frees) unless the options hold those fields already. The first tests count, in a child process
// under V8's --log-maps, the map transitions made for those fields while sockets are accepted and dialled: by a
// server bound with listen() and dialTcp, and by in-pod mode's FFI path (host/sys adoptServer, dialFrom). The others
// check that a server bound with listen() still accepts as Node's own accept does (half-open, paused, Nagle off,
// counted connections, maxConnections drops).

import net from "node:net";
import { once } from "node:events";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { listen } from "../host/net.js";
import { nativeAvailable } from "../host/sys/index.js";

const dist = (f: string) => JSON.stringify(fileURLToPath(new URL(`../dist/host/${f}`, import.meta.url)));
const SOCKETS = 300;

/** How the child binds its server and dials: host/net.ts listen() and dialTcp, or the FFI path in-pod mode takes
 *  (host/sys: a listening fd adopted with adoptServer, dials with dialFrom). */
const BIND_AND_DIAL = {
  net: `
    import { dialTcp, listen } from ${dist("net.js")};
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, () => {});
    const { port } = await listen(server, { host: "127.0.0.1", port: 0 });
    const dial = () => new Promise((ok, fail) => dialTcp({ host: "127.0.0.1", port, timeoutMs: 5000 }, ok, fail));`,
  ffi: `
    import { adoptServer, createListenSocket, dialFrom } from ${dist("sys/index.js")};
    const { fd } = createListenSocket({ host: "127.0.0.1", port: 0 });
    const server = await adoptServer(net.createServer({ pauseOnConnect: false }, () => {}), fd);
    const { port } = server.address();
    const dial = () => new Promise((ok, fail) => {
      const s = dialFrom(null, "127.0.0.1", port);
      s.once("connect", () => ok(s)).once("error", fail);
    });`,
};

/** `n` sockets accepted by a server from `n` dials in a child under --log-maps; V8's map log. */
function mapLog(how: keyof typeof BIND_AND_DIAL, n: number): string {
  const dir = mkdtempSync(join(tmpdir(), "hbone-maps-"));
  try {
    const log = join(dir, "v8.log");
    const script = `
      import net from "node:net";
      ${BIND_AND_DIAL[how]}
      const open = [];
      for (let i = 0; i < ${n}; i++) open.push(await dial());
      while (server._connections < ${n}) await new Promise((r) => setTimeout(r, 5));
      for (const s of open) s.destroy();
      server.close();`;
    const r = spawnSync(
      process.execPath,
      ["--log-maps", `--logfile=${log}`, "--no-logfile-per-isolate", "--input-type=module", "-e", script],
      { encoding: "utf8", timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    return readFileSync(log, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("sockets made without a map of their own", () => {
  for (const how of ["net", "ffi"] as const) {
    it.skipIf(how === "ffi" && !nativeAvailable())(
      `accepting and dialling ${SOCKETS} sockets (${how}) adds no map per socket for net.Socket's options`,
      () => {
        const lines = mapLog(how, SOCKETS).split("\n");
        const made = (field: string) => lines.filter((l) => l.startsWith("map,Transition,") && l.endsWith(`,${field}`));
        // Each socket (accepted and dialled: 2 per connection) made one map per field before; now a handful in all.
        for (const field of ["emitClose", "autoDestroy", "decodeStrings"]) expect(made(field).length).toBeLessThan(20);
        // The log is V8's map log: the child made maps for other things (the check would pass on an empty log).
        expect(lines.filter((l) => l.startsWith("map,Transition,")).length).toBeGreaterThan(100);
      },
    );
  }
});

describe("listen(): accepted connections", () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  async function bound(opts: net.ServerOpts, maxConnections?: number) {
    const accepted: net.Socket[] = [];
    const server = net.createServer(opts, (s) => {
      s.on("error", () => {});
      accepted.push(s);
    });
    if (maxConnections !== undefined) server.maxConnections = maxConnections;
    const { port } = await listen(server, { host: "127.0.0.1", port: 0 });
    const clients: net.Socket[] = [];
    cleanup.push(() => {
      for (const s of [...accepted, ...clients]) s.destroy();
      server.close();
    });
    const connect = async () => {
      const c = net.connect({ host: "127.0.0.1", port });
      c.on("error", () => {});
      clients.push(c);
      await once(c, "connect");
      return c;
    };
    return { server, accepted, connect };
  }

  const until = async (f: () => boolean) => {
    for (let i = 0; i < 400 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(f()).toBe(true);
  };

  it("are half-open, paused until resumed, Nagle off, and counted until closed", async () => {
    const { server, accepted, connect } = await bound({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    const c = await connect();
    await until(() => accepted.length === 1);
    const s = accepted[0];
    expect(s.allowHalfOpen).toBe(true);
    expect(s.isPaused()).toBe(true);
    expect((s as net.Socket & { server?: net.Server }).server).toBe(server);
    const count = () => new Promise<number>((ok, fail) => server.getConnections((e, n) => (e ? fail(e) : ok(n))));
    expect(await count()).toBe(1);
    c.write("ping");
    c.end(); // half-close: the accepted side may still answer
    await new Promise((r) => setTimeout(r, 50));
    expect(s.readableLength).toBe(0); // paused: nothing read
    s.resume();
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    await once(s, "end");
    expect(Buffer.concat(got).toString()).toBe("ping");
    expect(s.writable).toBe(true);
    s.end("pong");
    const reply: Buffer[] = [];
    c.on("data", (d: Buffer) => reply.push(d));
    await once(c, "end");
    expect(Buffer.concat(reply).toString()).toBe("pong");
    if (!s.closed) await once(s, "close"); // both halves ended: the socket closes itself
    expect(await count()).toBe(0);
  });

  it("without allowHalfOpen the client's FIN ends the accepted socket", async () => {
    const { accepted, connect } = await bound({});
    const c = await connect();
    await until(() => accepted.length === 1);
    expect(accepted[0].allowHalfOpen).toBe(false);
    expect(accepted[0].isPaused()).toBe(false);
    accepted[0].resume();
    c.end();
    await once(accepted[0], "close");
  });

  it("over maxConnections a connection is dropped ('drop') and the server keeps serving", async () => {
    const { server, accepted, connect } = await bound({}, 1);
    let drops = 0;
    server.on("drop", () => drops++);
    await connect();
    await until(() => accepted.length === 1);
    const over = await connect();
    await once(over, "close");
    expect(drops).toBe(1);
    expect(accepted).toHaveLength(1);
    accepted[0].destroy();
    await until(() => !accepted[0].readable);
    await new Promise((r) => setTimeout(r, 20));
    await connect();
    await until(() => accepted.length === 2);
  });
});
