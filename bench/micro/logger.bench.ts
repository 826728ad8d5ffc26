// Logger: host/log.ts against pino, both writing JSON lines to /dev/null through the same sonic-boom
// destination (pino's own), so the difference is the logger itself: a short line, an access-log
// line per connection in ztunnel's shape (`connection complete` with its 14 fields), and a line
// below the level (the cost of a debug call left in a hot path).
//   npm run build:ts && node dist/bench/logger.bench.js [--quick] [--rounds=N]
// Not part of `npm run bench`: it answers one question (issue 16: replace host/log.ts by pino?).

import { createRequire } from "node:module";
import { logger, setSink, setLevel } from "../../host/log.js";
import { newBench } from "../harness.js";

const require = createRequire(import.meta.url);
const pino = require("pino") as typeof import("pino").default;

const ACCESS = {
  "src.addr": "10.244.1.17:52344", "src.workload": "sleep-7b9f8c6d5-x2xkq", "src.namespace": "default",
  "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.addr": "10.244.2.9:15008",
  "dst.hbone_addr": "10.244.2.9:8080", "dst.service": "echo.default.svc.cluster.local", "dst.workload": "echo-5d8f9b7c4-q8w2z",
  "dst.namespace": "default", "dst.identity": "spiffe://cluster.local/ns/default/sa/echo", direction: "outbound",
  bytes_sent: 1234, bytes_recv: 56789, duration: "12ms",
};

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  // One destination for both: pino's sonic-boom on /dev/null, buffered to 4 KiB, written synchronously
  // (a benchmark loop never yields, so an asynchronous one would only grow its buffer).
  const dest = pino.destination({ dest: "/dev/null", sync: true, minLength: 4096 });
  const ours = logger("access");
  setSink((r) => dest.write(JSON.stringify(r) + "\n"));
  setLevel("info");
  const theirs = pino({ base: undefined, timestamp: pino.stdTimeFunctions.isoTime, messageKey: "msg",
    formatters: { level: (label) => ({ level: label }) } }, dest).child({ scope: "access" });

  // Rounds interleave the tasks so that load from other processes falls on all of them; the median
  // of the rounds is reported.
  const rounds = Number(/--rounds=(\d+)/.exec(process.argv.join(" "))?.[1] ?? 5);
  const tasks: [string, () => void][] = [
    ["host/log.ts: short line", () => ours.info("xDS ready", { workloads: 12 })],
    ["pino: short line", () => theirs.info({ workloads: 12 }, "xDS ready")],
    ["host/log.ts: access log (14 fields)", () => ours.info("connection complete", ACCESS)],
    ["pino: access log (14 fields)", () => theirs.info(ACCESS, "connection complete")],
    ["host/log.ts: below level", () => ours.debug("connection complete", ACCESS)],
    ["pino: below level", () => theirs.debug(ACCESS, "connection complete")],
  ];
  const ns = new Map<string, number[]>(tasks.map(([n]) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    const bench = newBench("logger", { quick });
    for (const [n, fn] of tasks) bench.add(n, fn);
    await bench.run();
    for (const t of bench.tasks) {
      if (t.result.state !== "completed") throw new Error(`${t.name}: ${t.result.state}`);
      ns.get(t.name)!.push(t.result.latency.mean * 1e6);
    }
  }
  dest.flushSync();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`| task | ns/line (median of ${rounds}) | min | max |\n| --- | ---: | ---: | ---: |`);
  for (const [n, xs] of ns) {
    console.log(`| ${n} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} |`);
  }
  // The two lines have the same fields and values: a fair comparison.
  const sample: string[] = [];
  setSink((r) => sample.push(JSON.stringify(r)));
  ours.info("connection complete", ACCESS);
  console.log(`line, host/log.ts: ${sample[0]!.length} bytes`);
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
