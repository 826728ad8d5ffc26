// The server application of the proxy benchmarks, in its own process: `node app-server.js HOST`.
// Three listeners on HOST (127.0.0.3, the server workload), one per workload:
//   sink  counts what it receives; at the client's FIN it answers "<count>\n" and closes;
//   rr    answers every 1 KiB request with a 1 KiB response;
//   ping  echoes (1 byte each way for the tunnel-rate and idle-tunnel workloads).
// Prints "bench app-server ready {sink, rr, ping}" with the ports.

import net from "node:net";
import { once } from "node:events";

export const RR_SIZE = 1024;

const host = process.argv[2] ?? "127.0.0.3";
const response = Buffer.alloc(RR_SIZE, 0x72);

function server(onSocket: (s: net.Socket) => void): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on("error", () => s.destroy());
    onSocket(s);
  });
}

const sink = server((s) => {
  let n = 0;
  s.on("data", (d: Buffer) => (n += d.length));
  s.on("end", () => s.end(`${n}\n`));
});

const rr = server((s) => {
  let pending = 0;
  s.on("data", (d: Buffer) => {
    pending += d.length;
    while (pending >= RR_SIZE) {
      pending -= RR_SIZE;
      s.write(response);
    }
  });
  s.on("end", () => s.end());
});

const ping = server((s) => s.pipe(s));

async function listen(srv: net.Server): Promise<number> {
  srv.listen({ host, port: 0, backlog: 4096 });
  await once(srv, "listening");
  return (srv.address() as net.AddressInfo).port;
}

const ports = { sink: await listen(sink), rr: await listen(rr), ping: await listen(ping) };
console.log(`bench app-server ready ${JSON.stringify(ports)}`);
process.on("SIGTERM", () => process.exit(0));
