// A minimal SOCKS5 client (CONNECT, no auth), for the demo and for tests that play the
// application: what `curl --socks5-hostname` does.

import net from "node:net";
import { once } from "node:events";

export async function socks5Connect(
  proxy: { host: string; port: number },
  host: string,
  port: number,
): Promise<net.Socket> {
  const sock = net.connect(proxy.port, proxy.host);
  sock.setNoDelay(true);
  await once(sock, "connect");
  const read = async (n: number): Promise<Buffer> => {
    let buf = Buffer.alloc(0);
    while (buf.length < n) {
      const chunk = sock.read() as Buffer | null;
      if (chunk) buf = Buffer.concat([buf, chunk]);
      else
        await Promise.race([
          once(sock, "readable"),
          once(sock, "close").then(() => {
            throw new Error("SOCKS5 proxy closed the connection");
          }),
        ]);
    }
    if (buf.length > n) sock.unshift(buf.subarray(n));
    return buf.subarray(0, n);
  };
  sock.write(Buffer.from([5, 1, 0]));
  const greeting = await read(2);
  if (greeting[1] !== 0) throw new Error("SOCKS5 proxy refused no-auth");
  const name = Buffer.from(host, "latin1");
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  const addr = net.isIPv4(host)
    ? Buffer.from([1, ...host.split(".").map(Number)])
    : Buffer.concat([Buffer.from([3, name.length]), name]);
  sock.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, p]));
  const rep = await read(10);
  if (rep[1] !== 0) {
    sock.destroy();
    throw Object.assign(new Error(`SOCKS5 CONNECT ${host}:${port} refused (code ${rep[1]})`), { socksCode: rep[1] });
  }
  return sock;
}
