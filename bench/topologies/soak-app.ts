// The soak's application, in its own process: `node soak-app.js HOST PORT RESET_PERMILLE`. An echo server (what a
// tunnel sends comes back, FIN answered with FIN) on a fixed port, so the soak can kill it and start it again on
// the same address. RESET_PERMILLE of the connections are reset (TCP RST) at a random moment mid-stream: an
// application connection dying under a tunnel. Prints "soak app ready {port}".

import net from "node:net";
import { once } from "node:events";

const [host = "127.0.0.1", portArg = "0", resetArg = "0"] = process.argv.slice(2);
const resetPermille = Number(resetArg);

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
  s.on("error", () => s.destroy());
  s.pipe(s);
  if (Math.random() * 1000 < resetPermille) {
    const t = setTimeout(() => s.resetAndDestroy(), 20 + Math.random() * 2000);
    s.once("close", () => clearTimeout(t));
  }
});
server.on("error", (e) => {
  console.error(`soak app: ${e.message}`);
  process.exit(1);
});
server.listen({ host, port: Number(portArg), backlog: 4096 });
await once(server, "listening");
console.log(`soak app ready ${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}`);
process.on("SIGTERM", () => process.exit(0));
