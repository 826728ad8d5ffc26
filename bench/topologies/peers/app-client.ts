// The client application of the proxy benchmarks, in its own process (so neither the driver nor a
// proxy shares its event loop). It prints "bench app-client ready {}" and then runs one command at
// a time from the driver over IPC, sending {type: "progress"} messages while it works and one
// {type: "result"} (or {type: "error"}) at the end. Every loop is bounded in count and in time.
//
//   bulk   {host, port, bytes, conns}: `conns` connections to the sink, bytes/conns each in 1 MiB
//          writes, FIN, wait for the sink's byte count (checked). -> {secs}
//   rr     {host, port, conns, rate, warmupMs, ms}: `conns` long-lived connections, 1 KiB request and
//          1 KiB response, paced to `rate` requests/s in all; one request in flight per connection.
//          {type: "mark", phase: "start" | "end"} frames the measured window. -> latency percentiles
//   rate   {host, port, conc, ms}: `conc` loops of open, 1 byte each way, FIN, close. -> {count, secs}
//   open   {host, port, count, conc}: open idle tunnels (each checked with a 1-byte echo) until
//          `count` are open; they stay open. -> {open}
//   close  {}: close every idle tunnel. -> {closed}

import net from "node:net";
import { once } from "node:events";

type Cmd =
  | { op: "bulk"; host: string; port: number; bytes: number; conns: number; timeoutMs: number }
  | { op: "rr"; host: string; port: number; conns: number; rate: number; warmupMs: number; ms: number }
  | { op: "rate"; host: string; port: number; conc: number; ms: number; max: number }
  | { op: "open"; host: string; port: number; count: number; conc: number; timeoutMs: number }
  | { op: "close" }
  | { op: "exit" };

const send = (m: object) => process.send!(m);
const progress = (done: number, total: number, extra?: string) => send({ type: "progress", done, total, extra });
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true, allowHalfOpen: true });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// ---------------------------------------------------------------------------------------------------------

async function bulk(c: Extract<Cmd, { op: "bulk" }>): Promise<object> {
  const chunk = Buffer.alloc(1 << 20, 0x42);
  const each = Math.floor(c.bytes / c.conns / chunk.length) * chunk.length;
  const socks = await Promise.all(Array.from({ length: c.conns }, () => connect(c.host, c.port)));
  let sent = 0;
  const timer = setInterval(() => progress(sent, each * c.conns), 1000);
  const t0 = now();
  try {
    await withTimeout(
      Promise.all(
        socks.map(async (s) => {
          let reply = "";
          s.setEncoding("latin1");
          s.on("data", (d: string) => (reply += d));
          const ended = once(s, "end");
          for (let n = 0; n < each; n += chunk.length) {
            sent += chunk.length;
            if (!s.write(chunk)) await once(s, "drain");
          }
          s.end();
          await ended;
          s.destroy();
          if (reply.trim() !== String(each)) throw new Error(`sink counted ${reply.trim()} bytes, sent ${each}`);
        }),
      ),
      c.timeoutMs,
      "bulk",
    );
  } finally {
    clearInterval(timer);
    for (const s of socks) s.destroy();
  }
  return { secs: (now() - t0) / 1000, bytes: each * c.conns };
}

// ---------------------------------------------------------------------------------------------------------

const RR_SIZE = 1024;

async function rr(c: Extract<Cmd, { op: "rr" }>): Promise<object> {
  const socks = await Promise.all(Array.from({ length: c.conns }, () => connect(c.host, c.port)));
  const request = Buffer.alloc(RR_SIZE, 0x71);
  const intervalMs = (1000 * c.conns) / c.rate;
  const t0 = now();
  const measureFrom = t0 + c.warmupMs;
  const measureTo = measureFrom + c.ms;
  const lat: number[] = []; // µs
  let late = 0;
  let started = false;
  const marks = setInterval(() => {
    const t = now();
    if (t >= measureFrom && !started) {
      started = true;
      send({ type: "mark", phase: "start" });
    }
    progress(Math.max(0, Math.min(t, measureTo) - t0), measureTo - t0);
  }, 250);
  const startMark = setTimeout(() => {
    if (!started) {
      started = true;
      send({ type: "mark", phase: "start" });
    }
  }, c.warmupMs);
  try {
    await withTimeout(
      Promise.all(
        socks.map(async (s, i) => {
          let got = 0;
          let wake: (() => void) | null = null;
          s.on("data", (d: Buffer) => {
            got += d.length;
            if (got >= RR_SIZE && wake) wake();
          });
          s.on("error", () => {});
          // Connections start staggered across one interval.
          let next = t0 + (intervalMs * i) / c.conns;
          for (let k = 0; k < 10_000_000; k++) {
            const wait = next - now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            else if (wait < -intervalMs) late++;
            const sentAt = now();
            if (sentAt >= measureTo) break;
            const reply = new Promise<void>((r) => (wake = r));
            s.write(request);
            await reply;
            wake = null;
            got -= RR_SIZE;
            const done = now();
            if (sentAt >= measureFrom) lat.push((done - sentAt) * 1000);
            next += intervalMs;
            if (done >= measureTo) break;
          }
        }),
      ),
      c.warmupMs + c.ms + 30_000,
      "rr",
    );
  } finally {
    clearInterval(marks);
    clearTimeout(startMark);
    send({ type: "mark", phase: "end" });
    for (const s of socks) s.destroy();
  }
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
  return {
    count: lat.length,
    secs: c.ms / 1000,
    late,
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    max: lat[lat.length - 1] ?? NaN,
    mean: lat.reduce((a, b) => a + b, 0) / (lat.length || 1),
  };
}

// ---------------------------------------------------------------------------------------------------------

async function rate(c: Extract<Cmd, { op: "rate" }>): Promise<object> {
  const one = Buffer.from("x");
  const t0 = now();
  const deadline = t0 + c.ms;
  let count = 0,
    errors = 0;
  const timer = setInterval(() => progress(now() - t0, c.ms, `${count} tunnels`), 500);
  try {
    await withTimeout(
      Promise.all(
        Array.from({ length: c.conc }, async () => {
          while (now() < deadline && count < c.max) {
            try {
              const s = await connect(c.host, c.port);
              const closed = once(s, "close");
              s.on("error", () => {});
              const echoed = once(s, "data");
              s.write(one);
              await echoed;
              s.end();
              await closed;
              count++;
            } catch {
              errors++;
              if (errors > 1000) throw new Error("rate: more than 1000 failed tunnels");
              await new Promise((r) => setTimeout(r, 5));
            }
          }
        }),
      ),
      c.ms + 30_000,
      "rate",
    );
  } finally {
    clearInterval(timer);
  }
  return { count, errors, secs: (now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------------------

const idle: net.Socket[] = [];

async function openIdle(c: Extract<Cmd, { op: "open" }>): Promise<object> {
  const one = Buffer.from("x");
  const target = c.count;
  const timer = setInterval(() => progress(idle.length, target), 500);
  let errors = 0;
  try {
    await withTimeout(
      Promise.all(
        Array.from({ length: c.conc }, async () => {
          // Each pass opens one tunnel or counts one failure (at most 100): bounded by target + 100.
          while (idle.length < target) {
            try {
              const s = await connect(c.host, c.port);
              s.on("error", () => {});
              const echoed = once(s, "data");
              s.write(one);
              await echoed;
              if (idle.length >= target) {
                s.destroy();
                break;
              }
              idle.push(s);
            } catch (e) {
              if (++errors > 100) throw new Error(`open: ${errors} tunnels failed (last: ${(e as Error).message})`);
            }
          }
        }),
      ),
      c.timeoutMs,
      "open",
    );
  } finally {
    clearInterval(timer);
  }
  return { open: idle.length, errors };
}

async function closeIdle(): Promise<object> {
  const n = idle.length;
  await withTimeout(
    Promise.all(
      idle.map((s) => {
        const closed = s.closed ? Promise.resolve() : once(s, "close");
        s.destroy();
        return closed;
      }),
    ),
    30_000,
    "close",
  );
  idle.length = 0;
  return { closed: n };
}

// ---------------------------------------------------------------------------------------------------------

process.on("message", (c: Cmd) => {
  if (c.op === "exit") process.exit(0);
  const run =
    c.op === "bulk"
      ? bulk(c)
      : c.op === "rr"
        ? rr(c)
        : c.op === "rate"
          ? rate(c)
          : c.op === "open"
            ? openIdle(c)
            : closeIdle();
  run.then(
    (r) => send({ type: "result", result: r }),
    (e: Error) => send({ type: "error", message: e.message }),
  );
});
process.on("disconnect", () => process.exit(0));
console.log("bench app-client ready {}");
