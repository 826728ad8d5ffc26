// One CONNECT stream moving bulk data, and many short CONNECT streams, through our H2Session
// and through node:http2 tuned to the same windows, client and server in separate processes
// on loopback (plain TCP: this measures the HTTP/2 engine; TLS joins with the proxy).

import net from "node:net";
import http2 from "node:http2";
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { Duplex } from "node:stream";
import { H2Session } from "../../host/h2/session.js";
import { WINDOWS } from "./peers/tunnel-server.js";
import type { Figure, RunOptions, SuiteResult, Target } from "../harness.js";

type Impl = "hbone" | "node";

interface Server {
  child: ChildProcess;
  port: number;
  cpu(): Promise<number>;
  stop(): void;
}

async function startServer(impl: Impl): Promise<Server> {
  const child = fork(fileURLToPath(new URL("./peers/tunnel-server.js", import.meta.url)), [impl], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const [msg] = (await once(child, "message")) as [{ port: number }];
  return {
    child,
    port: msg.port,
    cpu: async () => {
      child.send("cpu");
      const [m] = (await once(child, "message")) as [{ cpu: number }];
      return m.cpu;
    },
    stop: () => child.send("exit"),
  };
}

interface Client {
  open(authority: string): Promise<Duplex>;
  close(): void;
}

async function startClient(impl: Impl, port: number): Promise<Client> {
  if (impl === "hbone") {
    const sock = net.connect(port, "127.0.0.1");
    await once(sock, "connect");
    const s = H2Session.client(sock, { maxClientStreams: 1000 });
    return { open: (a) => s.connect(a), close: () => s.close() };
  }
  const s = http2.connect(`http://127.0.0.1:${port}`, {
    settings: { initialWindowSize: WINDOWS.stream, maxFrameSize: WINDOWS.frame },
    maxSessionMemory: 256,
  });
  await once(s, "connect");
  s.setLocalWindowSize(WINDOWS.connection);
  return {
    open: async (a) => {
      const req = s.request({ ":method": "CONNECT", ":authority": a });
      await once(req, "response");
      return req;
    },
    close: () => s.close(),
  };
}

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Sends `total` bytes through one stream to a sink; returns [seconds, cpu seconds both sides]. */
async function bulk(impl: Impl, total: number): Promise<[number, number]> {
  const server = await startServer(impl);
  const client = await startClient(impl, server.port);
  try {
    const chunk = Buffer.alloc(1 << 20, 0x42);
    const cpu0 = cpuNow() + (await server.cpu());
    const t0 = process.hrtime.bigint();
    const s = await client.open("sink:1");
    const ended = new Promise<void>((resolve, reject) => {
      s.on("end", resolve);
      s.on("error", reject);
      s.resume();
    });
    for (let sent = 0; sent < total; sent += chunk.length) if (!s.write(chunk)) await once(s, "drain");
    s.end();
    await ended;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = cpuNow() + (await server.cpu()) - cpu0;
    return [secs, cpu];
  } finally {
    client.close();
    server.stop();
  }
}

/** Short streams: open, 1 KiB each way, close; `concurrency` at a time for `ms`. Returns streams/s. */
async function shortStreams(impl: Impl, ms: number, concurrency: number): Promise<number> {
  const server = await startServer(impl);
  const client = await startClient(impl, server.port);
  const payload = Buffer.alloc(1024, 0x43);
  let done = 0;
  const deadline = Date.now() + ms;
  const t0 = process.hrtime.bigint();
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < deadline) {
          const s = await client.open("echo:1");
          let got = 0;
          const ended = new Promise<void>((resolve, reject) => {
            s.on("data", (d: Buffer) => (got += d.length));
            s.on("end", resolve);
            s.on("error", reject);
          });
          s.end(payload);
          await ended;
          if (got !== payload.length) throw new Error(`short stream echoed ${got} bytes`);
          done++;
        }
      }),
    );
    return done / (Number(process.hrtime.bigint() - t0) / 1e9);
  } finally {
    client.close();
    server.stop();
  }
}

export async function runTunnelBench(opts: RunOptions): Promise<SuiteResult> {
  const total = opts.quick ? 256 << 20 : 1 << 30;
  const rounds = opts.quick ? 1 : 3;
  const best: Record<Impl, { secs: number; cpu: number }> = {
    hbone: { secs: Infinity, cpu: 0 },
    node: { secs: Infinity, cpu: 0 },
  };
  for (let r = 0; r < rounds; r++) {
    for (const impl of ["node", "hbone"] as const) {
      console.log(
        `  tunnel: bulk ${total >> 20} MiB, ${impl === "hbone" ? "H2Session" : "node:http2"}, round ${r + 1}/${rounds}`,
      );
      const [secs, cpu] = await bulk(impl, total);
      if (secs < best[impl].secs) best[impl] = { secs, cpu };
    }
  }
  const shortMs = opts.quick ? 1000 : 4000;
  const rate: Record<Impl, number> = { hbone: 0, node: 0 };
  for (const impl of ["node", "hbone"] as const) {
    console.log(`  tunnel: short streams for ${shortMs / 1000} s, ${impl === "hbone" ? "H2Session" : "node:http2"}`);
    rate[impl] = await shortStreams(impl, shortMs, 32);
  }

  const gib = total / (1 << 30);
  const fig = (impl: Impl): Figure =>
    ({
      task: `tunnel bulk ${total >> 20} MiB: ${impl === "hbone" ? "H2Session (Wasm codec)" : "node:http2 (tuned)"}`,
      opsPerSec: 1 / best[impl].secs,
      rme: 0,
      samples: rounds,
      bytesPerOp: total,
      throughputMBps: total / best[impl].secs / 1e6,
      cpuSecondsPerGiB: best[impl].cpu / gib,
    }) as Figure;
  const ours = fig("hbone"),
    theirs = fig("node");
  ours.baseline = theirs.task;
  const shortFig = (impl: Impl): Figure => ({
    task: `short streams (1 KiB each way, 32 at once): ${impl === "hbone" ? "H2Session" : "node:http2"}`,
    opsPerSec: rate[impl],
    rme: 0,
    samples: 1,
  });
  const shortOurs = shortFig("hbone"),
    shortTheirs = shortFig("node");
  shortOurs.baseline = shortTheirs.task;
  const thr = ours.throughputMBps! / theirs.throughputMBps!;
  const cpuRatio = best.hbone.cpu / best.node.cpu;
  const shortRatio = rate.hbone / rate.node;
  const targets: Target[] = [
    { name: "session single-stream throughput vs node:http2", value: thr, goal: 1.2, met: thr >= 1.2, task: ours.task },
    {
      name: "session CPU per GiB vs node:http2 (lower is better)",
      value: cpuRatio,
      goal: 0.8,
      met: cpuRatio <= 0.8,
      lowerIsBetter: true,
    },
    {
      name: "short streams per second vs node:http2",
      value: shortRatio,
      goal: 1.5,
      met: shortRatio >= 1.5,
      task: shortOurs.task,
    },
  ];
  return {
    suite: "tunnel",
    figures: [ours, theirs, shortOurs, shortTheirs],
    ratios: [
      { name: "bulk throughput", ours: ours.task, baseline: theirs.task, value: thr },
      { name: "bulk CPU seconds per GiB (both processes)", ours: ours.task, baseline: theirs.task, value: cpuRatio },
      { name: "short streams per second", ours: shortOurs.task, baseline: shortTheirs.task, value: shortRatio },
    ],
    targets,
    notes: [
      `tunnel bulk CPU (client + server processes): H2Session ${(best.hbone.cpu / gib).toFixed(2)} s/GiB, ` +
        `node:http2 ${(best.node.cpu / gib).toFixed(2)} s/GiB (ratio ${cpuRatio.toFixed(2)}, goal <= 0.8)`,
      "tunnel benchmarks run over plain loopback TCP, client and server in separate processes; best of " +
        `${rounds} run(s); node:http2 tuned to 4 MiB stream / 16 MiB connection windows and 1 MiB frames`,
    ],
  };
}
