// The tls-pipe topology: the practical ceiling of any TLS tunnel in Node on this machine. Two
// processes, no HTTP/2, one TLS connection per tunnel, the same TLS as HBONE (TLS 1.3, AES-GCM,
// mutual, certificates from the mesh's plug-in CA, SPIFFE SAN checked):
//
//   node tls-pipe.js relay CA_DIR TLS_HOST:TLS_PORT...   plain TCP listeners on 127.0.0.1 (one per
//        destination, in that order), each connection piped into a TLS connection to TLS_HOST:TLS_PORT
//   node tls-pipe.js terminator CA_DIR HOST APP_PORT...   TLS listeners on HOST (one per app port),
//        each connection piped to HOST:APP_PORT (or to APP_HOST:APP_PORT where one is given)
//   node tls-pipe.js relay-via CA_DIR GW_HOST:GW_PORT...   as relay, with a second TLS connection inside
//        the first (TLS over TLS, both in Node's native TLS): the double-HBONE floor, where the first
//        ends at a terminator that stands for the east-west gateway (topologies-double.ts)
//
// Prints "bench tls-pipe ready {ports: [...]}". Half-close is passed on both ways (TCP FIN <->
// TLS close_notify + FIN), as the sink workload needs.

import net from "node:net";
import tls from "node:tls";
import { once } from "node:events";
import { checkPeer, spiffe, tlsOptions } from "./certs.js";

const [role, caDir, ...rest] = process.argv.slice(2);

/** Pipes a and b both ways with half-close; either side's error tears both down. */
function join(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  const down = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", down);
  b.on("error", down);
  a.on("close", () => {
    if (!b.writableEnded) b.destroy();
  });
  b.on("close", () => {
    if (!a.writableEnded) a.destroy();
  });
}

async function listen(srv: net.Server, host: string): Promise<number> {
  srv.listen({ host, port: 0, backlog: 4096 });
  await once(srv, "listening");
  return (srv.address() as net.AddressInfo).port;
}

async function relay(via: boolean): Promise<number[]> {
  const opts = await tlsOptions(caDir, "client");
  const server = spiffe("server");
  const ports: number[] = [];
  for (const dest of rest) {
    const [host, port] = dest.split(":");
    const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (app) => {
      // Our own TCP socket, so the TLS socket is half-open capable (it takes allowHalfOpen from it).
      const tcp = net.connect({ host, port: Number(port), allowHalfOpen: true, noDelay: true });
      const tlsOver = (socket: net.Socket) => {
        const t = tls.connect({ socket, ...opts, checkServerIdentity: () => undefined });
        t.once("secureConnect", () => {
          const why = checkPeer(t.getPeerCertificate(), server);
          if (why) t.destroy(new Error(why));
        });
        return t;
      };
      const outer = tlsOver(tcp);
      if (!via) return join(app, outer);
      const inner = tlsOver(outer);
      // Inner records that fill an outer record exactly (16 KiB with TLS 1.3's 22 bytes of framing): a
      // 16 KiB inner record would take two outer ones, a full and a 22-byte one.
      inner.setMaxSendFragment(16384 - 22);
      outer.on("error", () => inner.destroy());
      join(app, inner);
    });
    ports.push(await listen(srv, "127.0.0.1"));
  }
  return ports;
}

async function terminator(): Promise<number[]> {
  const [host, ...appPorts] = rest;
  const opts = await tlsOptions(caDir, "server");
  const client = spiffe("client");
  const ports: number[] = [];
  for (const p of appPorts) {
    const srv = tls.createServer(
      { ...opts, requestCert: true, rejectUnauthorized: true, allowHalfOpen: true, noDelay: true },
      (t) => {
        if (checkPeer(t.getPeerCertificate(), client)) return t.destroy();
        const [to, port] = p.includes(":") ? p.split(":") : [host, p];
        join(t, net.connect({ host: to, port: Number(port), noDelay: true, allowHalfOpen: true }));
      },
    );
    srv.on("tlsClientError", () => {});
    ports.push(await listen(srv, host));
  }
  return ports;
}

const ports =
  role === "relay" || role === "relay-via"
    ? await relay(role === "relay-via")
    : role === "terminator"
      ? await terminator()
      : null;
if (!ports) throw new Error("usage: tls-pipe.js relay|relay-via|terminator CA_DIR …");
console.log(`bench tls-pipe ready ${JSON.stringify({ ports })}`);
process.on("SIGTERM", () => process.exit(0));
