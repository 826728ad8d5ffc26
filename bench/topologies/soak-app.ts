// The soak's application, in its own process: `node soak-app.js HOST PORT RESET_PERMILLE`. An echo server (what a
// tunnel sends comes back, FIN answered with FIN) on a fixed port, so the soak can kill it and start it again on
// the same address. RESET_PERMILLE of the connections are reset (TCP RST) at a random moment mid-stream: an
// application connection dying under a tunnel. Prints "soak app ready {port}".

import net from "node:net";
import { once } from "node:events";
import { libc, C } from "../../host/sys/libc.js";

const SO_LINGER = 13;

const [host = "127.0.0.1", portArg = "0", resetArg = "0"] = process.argv.slice(2);
const resetPermille = Number(resetArg);

// SO_LINGER {on, 0} until the echo is complete: a kill (SIGKILL) then always ends an unfinished connection with a
// TCP RST, as a crash with unread or unsent bytes does. Without it, a connection killed before a tunnel's first byte
// reached it (its receive queue empty) ends with a FIN: TCP's "the server closed", which no proxy can tell from a
// real close, and which the soak would count as a clean tunnel that lost every byte. Once the echo has written its
// last byte and FIN, the default close returns (queued bytes are still delivered).
const lib = libc();
const abortive = Buffer.alloc(8),
  graceful = Buffer.alloc(8);
abortive.writeInt32LE(1, 0); // l_onoff = 1, l_linger = 0
const linger = (s: net.Socket, v: Buffer) => {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd !== undefined && fd >= 0) lib.setsockopt(fd, C.SOL_SOCKET, SO_LINGER, v, v.length);
};

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
  s.on("error", () => s.destroy());
  linger(s, abortive);
  s.once("finish", () => linger(s, graceful));
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
// On the listener too: an accepted socket inherits it, so a kill between the kernel's accept and the handler's
// setsockopt (a connection no byte has reached yet) resets too instead of ending with a FIN.
linger(server as unknown as net.Socket, abortive);
console.log(`soak app ready ${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}`);
process.on("SIGTERM", () => process.exit(0));
