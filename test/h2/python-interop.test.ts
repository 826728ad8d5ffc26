// Interop with a second, unrelated HTTP/2 stack: Python's hyper-h2 (apt python3-h2), as
// client and as server. Skipped with a line when python3-h2 is missing, a failure under CI=true.

import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { H2Session, type H2Stream } from "../../host/h2/session.js";
import { listen, drain, pump, pattern } from "../helpers/net.js";
import { PYTHON, H2PEER, haveH2, runH2Peer } from "../helpers/python.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.skipIf(!haveH2())("interop with Python hyper-h2", () => {
  it("h2 client -> our server: 10 CONNECT streams x 1 MiB echoed byte-exact", async () => {
    const sessions: H2Session[] = [];
    const srv = net.createServer((sock) => {
      const s = H2Session.server(sock);
      sessions.push(s);
      s.on("connect", (stream: H2Stream, headers, respond) => {
        respond(200, [["baggage", `echo;${headers.find(([n]) => n === "baggage")?.[1]}`]]);
        stream.pipe(stream);
      });
    });
    const port = await listen(srv);
    cleanups.push(
      () => new Promise((r) => srv.close(r)),
      () => sessions.forEach((s) => s.destroy()),
    );
    const { code, out, err } = await runH2Peer(["client", String(port), "10", String(1 << 20)]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report).toMatchObject({ streams: 10, ended: 10, equal: true, bytes: 10 << 20, status: [200], resets: {} });
    expect(report.baggage).toEqual(["echo;k8s.cluster.name=python"]);
  });

  it("our client -> h2 server: 4 streams x 2 MiB both ways, half-close honoured", async () => {
    const child = spawn(PYTHON, [H2PEER, "server"], { stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => child.kill());
    const [line] = (await once(child.stdout, "data")) as [Buffer];
    const port = Number(line.toString().trim());
    const sock = net.connect(port, "127.0.0.1");
    await once(sock, "connect");
    const c = H2Session.client(sock);
    cleanups.push(() => c.destroy());
    const results = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const s = await c.connect(`10.0.0.${i}:80`, [["baggage", "k8s.cluster.name=node"]]);
        expect(s.status).toBe(200);
        expect(s.header("baggage")).toBe("k8s.cluster.name=python");
        const data = pattern(2 << 20, 50 + i);
        const [, got] = await Promise.all([pump(s, data), drain(s, data)]);
        return got;
      }),
    );
    for (const r of results) expect(r).toEqual({ bytes: 2 << 20, equal: true });
  });
});
