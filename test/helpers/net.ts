// Loopback sockets for tests: real TCP on 127.0.0.1, port 0.

import net from "node:net";
import { once } from "node:events";
import type { Readable } from "node:stream";

/** Listens on an ephemeral loopback port; returns the server and its port. */
export async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

/** A connected pair of real TCP sockets on loopback (`allowHalfOpen`: a FIN does not end the other half). */
export async function tcpPair(
  o: { allowHalfOpen?: boolean } = {},
): Promise<[net.Socket, net.Socket, () => Promise<void>]> {
  const server = net.createServer({ allowHalfOpen: o.allowHalfOpen ?? false });
  const port = await listen(server);
  const accepted = once(server, "connection") as Promise<[net.Socket]>;
  const client = net.connect({ port, host: "127.0.0.1", allowHalfOpen: o.allowHalfOpen ?? false });
  client.setNoDelay(true);
  await once(client, "connect");
  const [srv] = await accepted;
  srv.setNoDelay(true);
  return [client, srv, () => new Promise<void>((r) => server.close(() => r()))];
}

/** Deterministic pseudo-random bytes (so a mismatch names its offset). */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe((n + 3) & ~3);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b.subarray(0, n);
}

/** Reads a stream to its end; returns the total and whether it equals `expected`. */
export async function drain(r: Readable, expected?: Buffer): Promise<{ bytes: number; equal: boolean }> {
  let bytes = 0;
  let equal = true;
  for await (const chunk of r) {
    const c = chunk as Buffer;
    if (expected && equal && !c.equals(expected.subarray(bytes, bytes + c.length))) equal = false;
    bytes += c.length;
  }
  return { bytes, equal: equal && (!expected || bytes === expected.length) };
}

/** Writes `data` in `chunk`-sized writes honouring backpressure, then ends. */
export async function pump(w: NodeJS.WritableStream, data: Buffer, chunk = 256 * 1024, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!w.write(data.subarray(off, off + chunk))) await once(w as unknown as NodeJS.EventEmitter, "drain");
  }
  if (end) w.end();
}

/**
 * Writes `data` in 1 MiB writes honouring backpressure: the first half, then awaits `midway()` (a drain begins
 * there), then the rest, pausing `paceMs` after each write; then ends.
 */
export async function writeAroundMidway(
  w: NodeJS.WritableStream,
  data: Buffer,
  midway: () => Promise<void>,
  paceMs = 0,
): Promise<void> {
  const half = data.length / 2;
  await pump(w, data.subarray(0, half), 1 << 20, false);
  await midway();
  for (let off = half; off < data.length; off += 1 << 20) {
    if (!w.write(data.subarray(off, off + (1 << 20)))) await once(w as unknown as NodeJS.EventEmitter, "drain");
    if (paceMs) await new Promise((r) => setTimeout(r, paceMs));
  }
  w.end();
}
