// Logger: host/log.ts against pino, both writing JSON lines to /dev/null through the same sonic-boom
// destination (pino's own), so the difference is the logger itself: a short line, an access-log
// line per connection in ztunnel's shape (`connection complete` with its 14 fields), and a line
// below the level (the cost of a debug call left in a hot path).
// A suite of `npm run bench` (it answered issue 16: keep host/log.ts rather than take pino); standalone:
//   npm run build:ts && node dist/bench/micro/logger.bench.js [--quick] [--rounds=N]

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { getLevel, logger, setSink, setLevel } from "../../host/log.js";
import { type Figure, type Ratio, type RunOptions, type SuiteResult, newBench, ratioOf } from "../harness.js";

const require = createRequire(import.meta.url);
const pino = require("pino") as typeof import("pino").default;

const ACCESS = {
  "src.addr": "10.244.1.17:52344",
  "src.workload": "sleep-7b9f8c6d5-x2xkq",
  "src.namespace": "default",
  "src.identity": "spiffe://cluster.local/ns/default/sa/sleep",
  "dst.addr": "10.244.2.9:15008",
  "dst.hbone_addr": "10.244.2.9:8080",
  "dst.service": "echo.default.svc.cluster.local",
  "dst.workload": "echo-5d8f9b7c4-q8w2z",
  "dst.namespace": "default",
  "dst.identity": "spiffe://cluster.local/ns/default/sa/echo",
  direction: "outbound",
  bytes_sent: 1234,
  bytes_recv: 56789,
  duration: "12ms",
};

/** host/log.ts vs pino per task: ns per line, the median of `rounds` interleaved rounds. */
export async function runLoggerBench(opts: RunOptions & { rounds?: number }): Promise<SuiteResult> {
  // One destination for both: pino's sonic-boom on /dev/null, buffered to 4 KiB, written synchronously
  // (a benchmark loop never yields, so an asynchronous one would only grow its buffer).
  const dest = pino.destination({ dest: "/dev/null", sync: true, minLength: 4096 });
  const ours = logger("access");
  const restore = setSink((r) => dest.write(JSON.stringify(r) + "\n"));
  const level = getLevel();
  setLevel("info");
  const theirs = pino(
    {
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: "msg",
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  ).child({ scope: "access" });

  // Rounds interleave the tasks so that load from other processes falls on all of them; the median
  // of the rounds is reported.
  const rounds = opts.rounds ?? (opts.quick ? 1 : 5);
  const pairs: [string, () => void, () => void][] = [
    ["short line", () => ours.info("xDS ready", { workloads: 12 }), () => theirs.info({ workloads: 12 }, "xDS ready")],
    [
      "access log (14 fields)",
      () => ours.info("connection complete", ACCESS),
      () => theirs.info(ACCESS, "connection complete"),
    ],
    ["below level", () => ours.debug("connection complete", ACCESS), () => theirs.debug(ACCESS, "connection complete")],
  ];
  const ns = new Map<string, number[]>();
  try {
    for (let r = 0; r < rounds; r++) {
      const bench = newBench("logger", opts);
      for (const [n, a, b] of pairs) {
        bench.add(`logger ${n}: host/log.ts`, a);
        bench.add(`logger ${n}: pino`, b);
      }
      await bench.run();
      for (const t of bench.tasks) {
        if (t.result.state !== "completed") throw new Error(`${t.name}: ${t.result.state}`);
        ns.set(t.name, [...(ns.get(t.name) ?? []), t.result.latency.mean * 1e6]);
      }
    }
    dest.flushSync();
  } finally {
    restore();
    setLevel(level);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const figure = (task: string, baseline?: string): Figure => {
    const xs = ns.get(task)!;
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const spread = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
    return {
      task,
      opsPerSec: 1e9 / median(xs),
      rme: (100 * spread) / mean,
      samples: xs.length,
      ...(baseline ? { baseline } : {}),
    };
  };
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  for (const [n] of pairs) {
    const base = figure(`logger ${n}: pino`);
    const f = figure(`logger ${n}: host/log.ts`, base.task);
    figures.push(f, base);
    ratios.push(ratioOf(`logger ${n}: host/log.ts / pino`, f, base));
  }
  // The two lines have the same fields and values: a fair comparison.
  const sample: string[] = [];
  const undo = setSink((r) => sample.push(JSON.stringify(r)));
  ours.info("connection complete", ACCESS);
  undo();
  const notes = [
    `logger: ns per line, median of ${rounds} rounds: ` +
      figures.map((f) => `${f.task.replace("logger ", "")} ${(1e9 / f.opsPerSec).toFixed(0)}`).join(", ") +
      `; an access line of host/log.ts is ${sample[0]!.length} bytes`,
  ];
  return { suite: "logger", figures, ratios, targets: [], notes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rounds = /--rounds=(\d+)/.exec(process.argv.join(" "))?.[1];
  runLoggerBench({ quick: process.argv.includes("--quick"), rounds: rounds ? Number(rounds) : undefined }).then(
    (r) => {
      console.log("| task | ns/line (median) | ±% |\n| --- | ---: | ---: |");
      for (const f of r.figures) console.log(`| ${f.task} | ${(1e9 / f.opsPerSec).toFixed(0)} | ${f.rme.toFixed(1)} |`);
      for (const n of r.notes) console.log(n);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
