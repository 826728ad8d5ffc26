// Node apps over the mesh: real node:http, Node's own fetch (undici) and node:http2 over real HBONE
// tunnels between two node proxies on loopback. The README's "Node apps" example runs here as
// written (the README block is checked to be this text verbatim); then byte-exact 1 MiB bodies
// both ways, keep-alive reuse (one tunnel per kept-alive HTTP connection, one HBONE connection
// under all of them), idle keep-alive timeouts closing tunnels, and failures that must not crash.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";
import { meshFixture, meshYaml, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import type { TunnelSocket } from "../../host/http/socket.js";
import { asSocket } from "../../host/http/socket.js";
import { pattern } from "../helpers/net.js";

const HOST = "echo.default.svc.cluster.local";
const MiB = 1024 * 1024;
let fx: MeshFixture;
let echo: Mesh;
let sleep: Mesh;
const servers: { close(): unknown }[] = [];

beforeAll(async () => {
  fx = await meshFixture();
  // Service ports 9000 and 9001 map to the same target ports; the apps below are in-process acceptors.
  const config = join(fx.dir, "apps.yaml");
  writeFileSync(config, meshYaml(9000, 9001));
  echo = await fx.proxy({ config, workload: "default/echo/echo" });
  sleep = await fx.proxy({
    config,
    workload: "default/sleep/sleep",
    inboundPort: false,
    hbonePort: echo.addresses.inbound!.port,
  });
});
afterAll(async () => {
  for (const s of servers) s.close();
  await fx?.close();
});

function readme(): string {
  return readFileSync(new URL("../../README.md", import.meta.url), "utf8");
}

/** The text between the markers of this file (the README's example, verbatim). */
function exampleText(): string {
  const src = readFileSync(new URL(import.meta.url), "utf8");
  const [, body] = /\/\/ --- README example starts here ---\n([\s\S]*?)\n\s*\/\/ --- README example ends here ---/.exec(
    src,
  )!;
  return body!
    .split("\n")
    .map((l) => l.replace(/^ {4}/, ""))
    .join("\n");
}

async function body(res: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function request(
  o: http.RequestOptions & { agent: http.Agent },
  payload?: Buffer,
): Promise<{ res: http.IncomingMessage; data: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: 9000, ...o },
      (res) => void body(res).then((data) => resolve({ res, data }), reject),
    );
    req.on("error", reject);
    req.end(payload);
  });
}

describe("README example", () => {
  it("runs as written: http.Server via accept, http Agent and fetch through the mesh", async () => {
    // --- README example starts here ---
    // Serve: tunnels to echo's port 9000 become connections of a plain http.Server.
    const server = http.createServer((req, res) => {
      const peer = (req.socket as TunnelSocket).peerIdentity; // verified SPIFFE identity of the caller
      res.end(`hello ${peer}`);
    });
    echo.accept(9000, server);

    // Call with node:http: an Agent whose connections are HBONE tunnels (service names from the mesh, no DNS).
    const agent = sleep.agent();
    const viaHttp = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://echo.default.svc.cluster.local:9000/`, { agent }, (res) => {
          let text = "";
          res
            .setEncoding("utf8")
            .on("data", (c: string) => (text += c))
            .on("end", () => resolve(text));
        })
        .on("error", reject);
    });

    // Or with Node's own fetch and an undici Dispatcher.
    const res = await fetch("http://echo.default.svc.cluster.local:9000/", { dispatcher: sleep.dispatcher() });
    const viaFetch = await res.text(); // both: "hello spiffe://cluster.local/ns/default/sa/sleep"
    // --- README example ends here ---
    servers.push(server);
    agent.destroy();
    expect(viaHttp).toBe("hello spiffe://cluster.local/ns/default/sa/sleep");
    expect(viaFetch).toBe("hello spiffe://cluster.local/ns/default/sa/sleep");
    expect(readme()).toContain("```ts\n" + exampleText() + "\n```");
  });
});

describe("node:http and fetch over tunnels", () => {
  const connections: TunnelSocket[] = [];
  let server: http.Server;
  beforeAll(() => {
    // Echo the request body, with its digest in a header; count the connections the server sees.
    server = http.createServer((req, res) => {
      const hash = createHash("sha256");
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => {
        hash.update(c);
        chunks.push(c);
      });
      req.on("end", () => {
        const all = Buffer.concat(chunks);
        const out = req.url === "/big" ? pattern(MiB, 7) : all;
        res.writeHead(200, {
          "x-sha256": hash.digest("hex"),
          "x-peer": String((req.socket as TunnelSocket).peerIdentity),
          "content-length": out.length,
        });
        res.end(out);
      });
    });
    server.on("connection", (s: TunnelSocket) => connections.push(s));
    echo.accept(9000, server);
    servers.push(server);
  });

  it("carries 1 MiB each way byte-exactly through an http Agent", async () => {
    const agent = sleep.agent();
    const payload = pattern(MiB, 3);
    const { res, data } = await request({ agent, method: "POST", path: "/" }, payload);
    expect(res.statusCode).toBe(200);
    expect(res.headers["x-sha256"]).toBe(createHash("sha256").update(payload).digest("hex"));
    expect(Buffer.compare(data, payload)).toBe(0);
    expect(res.headers["x-peer"]).toBe("spiffe://cluster.local/ns/default/sa/sleep");
    agent.destroy();
  });

  it("carries 1 MiB each way byte-exactly through fetch with the dispatcher", async () => {
    const dispatcher = sleep.dispatcher();
    const payload = pattern(MiB, 5);
    const res = await fetch(`http://${HOST}:9000/`, { method: "POST", body: new Uint8Array(payload), dispatcher });
    const data = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get("x-sha256")).toBe(createHash("sha256").update(payload).digest("hex"));
    expect(Buffer.compare(data, payload)).toBe(0);
    const big = Buffer.from(await (await fetch(`http://${HOST}:9000/big`, { dispatcher })).arrayBuffer());
    expect(Buffer.compare(big, pattern(MiB, 7))).toBe(0);
    await dispatcher.close();
  });

  it("reuses one tunnel per kept-alive HTTP connection, all on one HBONE connection", async () => {
    const before = connections.length;
    const opened = () => connections.length - before;
    const agent = sleep.agent({ maxSockets: 1 });
    for (let i = 0; i < 10; i++) {
      const { data } = await request({ agent, method: "POST", path: "/" }, Buffer.from(`request ${i}`));
      expect(data.toString()).toBe(`request ${i}`);
    }
    expect(opened()).toBe(1); // ten requests, one HTTP connection = one tunnel
    agent.destroy();

    // Without keep-alive every request is a new tunnel, yet the HBONE pool keeps one connection.
    const oneShot = sleep.agent({ keepAlive: false });
    for (let i = 0; i < 5; i++) await request({ agent: oneShot, path: "/" });
    expect(opened()).toBe(1 + 5);
    expect(sleep.pool.size).toBe(1);

    // fetch: the dispatcher keeps its connections too. undici opens a second one for the second
    // request (its idle-socket check; it does the same over plain TCP and with Node's own
    // dispatcher), then reuses them: ten requests, at most two tunnels.
    const dispatcher = sleep.dispatcher();
    for (let i = 0; i < 10; i++)
      expect(await (await fetch(`http://${HOST}:9000/`, { method: "POST", body: `f${i}`, dispatcher })).text()).toBe(
        `f${i}`,
      );
    expect(opened() - 6).toBeGreaterThanOrEqual(1);
    expect(opened() - 6).toBeLessThanOrEqual(2);
    expect(sleep.pool.size).toBe(1);
    await dispatcher.close();
  });

  it("closes an idle kept-alive tunnel when the server's keep-alive timeout passes", async () => {
    // 2.5 s: with a Keep-Alive hint under 2 s the Agent drops the connection itself (Node's 1 s margin).
    const idle = http.createServer((_req, res) => res.end("ok"));
    idle.keepAliveTimeout = 2500;
    const events: string[] = [];
    const closed: Promise<unknown>[] = [];
    idle.on("connection", (s: Duplex) => {
      s.on("timeout", () => events.push("timeout"));
      closed.push(once(s, "close"));
    });
    echo.accept(9001, idle);
    servers.push(idle);
    const agent = sleep.agent();
    const { data } = await request({ agent, port: 9001, path: "/" });
    expect(data.toString()).toBe("ok");
    expect(closed.length).toBe(1);
    const t0 = Date.now();
    await closed[0];
    const waited = Date.now() - t0;
    expect(events).toEqual(["timeout"]); // the server's idle timer closed it, on the tunnel's own timer
    expect(waited).toBeGreaterThan(1000);
    expect(waited).toBeLessThan(10_000);
    agent.destroy();
  });

  it("shows the original client (the CONNECT's forwarded header) as the socket's remote address", async () => {
    const seen = new Promise<[string | undefined, number | undefined]>((resolve) => {
      const s = http.createServer((req, res) => {
        resolve([req.socket.remoteAddress, req.socket.remotePort]);
        res.end();
      });
      echo.accept(9001, s);
      servers.push(s);
    });
    const tunnel = asSocket(await sleep.connect(`${HOST}:9001`, { host: "127.0.0.2", port: 40123 }));
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: HOST, port: 9001, path: "/", createConnection: () => tunnel }, (res) => {
          res.resume().on("end", resolve);
        })
        .on("error", reject);
    });
    expect(await seen).toEqual(["127.0.0.2", 40123]);
  });

  it("fails an unknown host with a clear error, and keeps serving", async () => {
    const agent = sleep.agent();
    await expect(request({ agent, host: "nope.default.svc.cluster.local", path: "/" })).rejects.toThrow(/nope/);
    const dispatcher = sleep.dispatcher();
    await expect(fetch("http://nope.default.svc.cluster.local:80/", { dispatcher })).rejects.toThrow();
    await expect(fetch(`https://${HOST}:9000/`, { dispatcher })).rejects.toThrow();
    const { data } = await request({ agent, method: "POST", path: "/" }, Buffer.from("still here"));
    expect(data.toString()).toBe("still here");
    agent.destroy();
    await dispatcher.close();
  });

  it("survives a server that resets mid-response", async () => {
    const rude = http.createServer((_req, res) => {
      res.writeHead(200, { "content-length": 1000 });
      res.write("partial");
      setTimeout(() => res.socket?.destroy(), 10);
    });
    echo.accept(9001, rude);
    servers.push(rude);
    const agent = sleep.agent();
    await expect(request({ agent, port: 9001, path: "/" })).rejects.toThrow();
    echo.accept(
      9001,
      http.createServer((_req, res) => res.end("fine")),
    );
    const { data } = await request({ agent, port: 9001, path: "/" });
    expect(data.toString()).toBe("fine");
    agent.destroy();
  });
});

describe("the app's own TLS inside tunnels", () => {
  let cert: string;
  let key: string;
  beforeAll(() => {
    // A server certificate for the service's name, made by openssl (the app's TLS, not the mesh's).
    const args = [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=echo",
      "-addext",
      `subjectAltName=DNS:${HOST}`,
      "-keyout",
      join(fx.dir, "app-key.pem"),
      "-out",
      join(fx.dir, "app-cert.pem"),
    ];
    execFileSync("openssl", args, { stdio: "ignore" });
    cert = readFileSync(join(fx.dir, "app-cert.pem"), "utf8");
    key = readFileSync(join(fx.dir, "app-key.pem"), "utf8");
    const server = https.createServer({ key, cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => res.end(Buffer.concat(chunks)));
    });
    echo.accept(9001, server);
    servers.push(server);
  });

  it("https.Agent: TLS to the app's certificate, 1 MiB byte-exact, kept alive", async () => {
    const agent = sleep.httpsAgent({ ca: cert, maxSockets: 1 });
    let sockets = 0;
    agent.on("free", () => sockets++);
    const payload = pattern(MiB, 11);
    for (let i = 0; i < 3; i++) {
      const data = await new Promise<Buffer>((resolve, reject) => {
        const req = https.request(
          { host: HOST, port: 9001, method: "POST", path: "/", agent },
          (res) => void body(res).then(resolve, reject),
        );
        req.on("error", reject);
        req.end(payload);
      });
      expect(Buffer.compare(data, payload)).toBe(0);
    }
    expect(sockets).toBe(3); // freed three times: the same socket reused, not three handshakes
    expect(Object.values(agent.freeSockets).flat().length).toBe(1);
    agent.destroy();
  });

  it("fetch https:// with the dispatcher's tls options; a wrong CA is refused", async () => {
    const dispatcher = sleep.dispatcher({ tls: { ca: cert } });
    const res = await fetch(`https://${HOST}:9001/`, { method: "POST", body: "over TLS over HBONE", dispatcher });
    expect(await res.text()).toBe("over TLS over HBONE");
    await dispatcher.close();
    const wrong = sleep.dispatcher(); // no CA: the system roots do not know this certificate
    await expect(fetch(`https://${HOST}:9001/`, { dispatcher: wrong })).rejects.toThrow();
    await wrong.close();
  });
});

describe("http2 server via accept", () => {
  it("serves h2c requests over a tunnel and shows the peer identity", async () => {
    const h2 = http2.createServer();
    h2.on("stream", (stream) => {
      const peer = (stream.session?.socket as unknown as TunnelSocket | undefined)?.peerIdentity;
      stream.respond({ ":status": 200, "x-peer": String(peer) });
      stream.end(pattern(MiB, 9));
    });
    echo.accept(9001, h2);
    servers.push(h2);
    const tunnel = asSocket(await sleep.connect(`${HOST}:9001`));
    const client = http2.connect(`http://${HOST}:9001`, { createConnection: () => tunnel });
    client.on("error", () => {});
    const req = client.request({ ":path": "/" });
    const [headers] = (await once(req, "response")) as [http2.IncomingHttpHeaders];
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    expect(headers[":status"]).toBe(200);
    expect(headers["x-peer"]).toBe("spiffe://cluster.local/ns/default/sa/sleep");
    expect(Buffer.compare(Buffer.concat(chunks), pattern(MiB, 9))).toBe(0);
    client.close();
  });
});
