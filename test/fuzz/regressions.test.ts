// Crashes the fuzzers found in code other helpers own, as minimal reproducers. Each runs in its own Node process
// (a crash there is the finding; in this worker it would abort the whole test run) and asserts the process
// survives. `it.fails` marks a bug still open: when it is fixed the test starts failing, and `.fails` goes.

import { spawnSync } from "node:child_process";
import net from "node:net";
import { writeFileSync } from "node:fs";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { meshFixture } from "../helpers/mesh.js";

const session = fileURLToPath(new URL("../../dist/host/h2/session.js", import.meta.url));

/** Runs an ES module snippet in a fresh node; `SESSION` is host/h2/session.js (built). */
function child(code: string): { status: number | null; output: string } {
  const r = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", code.replaceAll("SESSION", JSON.stringify(session))],
    { encoding: "utf8", timeout: 20_000 },
  );
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe("fuzz regressions", () => {
  // session fuzz target, client role (found with HBONE_FUZZ_LATE_LISTENER=1, e.g. seed 173064265). The peer
  // answers a CONNECT with 200 and, in the same read, resets the stream (or breaks the connection): the session
  // resolves connect() and then destroys the delivered stream with the error. The 'error' event is emitted on
  // process.nextTick, which runs before the promise's reaction, so even `connect().then(s => s.on("error"))` is too
  // late: "Unhandled 'error' event" and the process exits 1. (Mesh.connect in the source proxy hits the same.)
  it("client stream: 200 and RST_STREAM in one write do not crash the process", () => {
    const r = child(`
      import net from "node:net";
import { writeFileSync } from "node:fs";
      import { H2Session } from SESSION;
      const frame = (type, flags, id, payload) => {
        const h = Buffer.alloc(9); h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5);
        return Buffer.concat([h, payload]);
      };
      const server = net.createServer((sock) => {
        sock.on("error", () => {});
        sock.once("data", () => sock.write(Buffer.concat([
          frame(4, 0, 0, Buffer.alloc(0)),                // SETTINGS
          frame(1, 4, 1, Buffer.from([0x88])),            // HEADERS :status 200 (static index 8), END_HEADERS
          frame(3, 0, 1, Buffer.from([0, 0, 0, 2])),      // RST_STREAM INTERNAL_ERROR
        ])));
      });
      server.listen(0, "127.0.0.1", () => {
        const sock = net.connect(server.address().port, "127.0.0.1", () => {
          const s = H2Session.client(sock);
          s.connect("10.0.0.1:80").then((stream) => stream.on("error", () => {}), () => {});
          setTimeout(() => { console.log("survived"); process.exit(0); }, 300);
        });
      });
    `);
    expect(r.output).toContain("survived");
    expect(r.status).toBe(0);
  });

  // Soak (bench/topologies/soak.ts, --app-reset-permille 10, no kills): 3 of ~2,900 tunnels ended with a clean FIN and bytes
  // missing, e.g. "sent 59430, clean FIN after 0". The destination app reset its connection (TCP RST) mid-echo;
  // host/proxy/pipe.ts turns an app reset into END_STREAM ("as ztunnel does") and the far side into a FIN, so the
  // client cannot tell a lost tail from a complete answer. The rule: a tunnel whose peer died ends with an
  // error, never with a clean FIN and missing bytes.
  it("an application's TCP RST reaches the client as an error, not a clean FIN", async () => {
    const fx = await meshFixture();
    // The destination app: takes the first chunk, then resets.
    const rst = net.createServer((s) => {
      s.on("error", () => {});
      s.once("data", () => s.resetAndDestroy());
    });
    rst.listen(0, "127.0.0.3");
    await once(rst, "listening");
    // Workloads without services: the inbound takes any port of 127.0.0.3.
    const workload = (name: string, ip: string) =>
      `  - {uid: t//v1/Pod/default/${name}, name: ${name}, namespace: default, ` +
      `serviceAccount: ${name}, workloadIps: [${ip}], protocol: HBONE, clusterId: test}\n`;
    writeFileSync(fx.configPath, `workloads:\n${workload("sleep", "127.0.0.2")}${workload("echo", "127.0.0.3")}`);
    try {
      const b = await fx.proxy({ workload: "default/echo/echo" });
      const a = await fx.proxy({ workload: "default/sleep/sleep", hbonePort: b.addresses.inbound!.port });
      const t = await a.connect(`127.0.0.3:${(rst.address() as net.AddressInfo).port}`);
      const outcome = new Promise<string>((resolve) => {
        t.on("error", (e: Error) => resolve(`error ${e.message}`));
        t.on("end", () => resolve("clean FIN"));
        t.resume();
      });
      t.write(Buffer.alloc(64 * 1024, 1));
      expect(await outcome).toMatch(/^error/);
    } finally {
      rst.close();
      await fx.close();
    }
  });

  // Soak (bench/topologies/soak.ts, an app killed behind destination proxy a): the source proxy exited 1 twice in 40 s with
  // "H2Error: ENHANCE_YOUR_CALM: RST_STREAM flood (rapid reset)" as an unhandled 'error' on an H2Stream. The
  // destination refused each new CONNECT as it should (503 with END_STREAM, then RST_STREAM NO_ERROR); host/h2/session.ts
  // counts every received RST_STREAM against maxResetsPerWindow (400 / 10 s) in the client role too, so a server
  // refusing our own streams ends the pooled connection with every other tunnel on it (the crash is then the
  // client-stream bug above). Rapid reset (CVE-2023-44487) is a client resetting streams it opened.
  it("a client session survives a server refusing 500 of its streams", async () => {
    const server = net.createServer((sock) => {
      sock.on("error", () => {});
      let buf = Buffer.alloc(0),
        preface = true;
      sock.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // SETTINGS
      sock.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (preface && buf.length >= 24) {
          buf = buf.subarray(24);
          preface = false;
        }
        while (!preface && buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const len = buf.readUIntBE(0, 3),
            type = buf[3]!,
            flags = buf[4]!,
            id = buf.readUInt32BE(5) & 0x7fffffff;
          buf = buf.subarray(9 + len);
          if (type === 4 && !(flags & 1)) sock.write(Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0])); // SETTINGS ACK
          if (type !== 1) continue;
          // The inbound's refusal: HEADERS :status 503 (END_STREAM, END_HEADERS), then RST_STREAM NO_ERROR.
          const h = Buffer.from([0, 0, 5, 1, 5, 0, 0, 0, 0, 0x08, 0x03, 0x35, 0x30, 0x33]);
          h.writeUInt32BE(id, 5);
          const r = Buffer.from([0, 0, 4, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
          r.writeUInt32BE(id, 5);
          sock.write(Buffer.concat([h, r]));
        }
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { H2Session } = await import("../../host/h2/session.js");
    const sock = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    await once(sock, "connect");
    const session = H2Session.client(sock);
    // Own each stream from its creation (the client-stream bug above would otherwise crash this worker).
    const set = session.streams.set.bind(session.streams);
    session.streams.set = (id, st) =>
      set(
        id,
        st.on("error", () => {}),
      );
    let protocolError = "";
    session.on("protocolError", (e: Error) => (protocolError = e.message));
    session.on("error", () => {});
    try {
      let refused = 0;
      for (let i = 0; i < 500 && session.open; i++) {
        const s = await session.connect("10.0.0.1:80").catch(() => null);
        if (s?.status === 503) refused++;
        s?.resume();
      }
      expect(protocolError).toBe("");
      expect(refused).toBe(500);
      expect(session.open).toBe(true);
    } finally {
      session.destroy();
      server.close();
    }
  });

  it("the reproducer harness itself catches a crash", () => {
    const r = child(
      `import { H2Session } from SESSION; void H2Session; setImmediate(() => { throw new Error("boom"); });`,
    );
    expect(r.status).toBe(1);
    expect(r.output).toContain("boom");
  });
});
