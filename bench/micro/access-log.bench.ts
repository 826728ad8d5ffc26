// Access log cost: one `connection complete` line per connection (fields built, JSON-encoded, written to a sink
// that discards it, so the figure is our cost, not the terminal's), and one with the access log switched off.
// Standalone: `node dist/bench/micro/access-log.bench.js` prints ns per line.

import { fileURLToPath } from "node:url";
import { Bench } from "tinybench";
import { setLevel, setSink } from "../../host/log.js";
import { logConnectionComplete, setAccessLogLevel, type ConnectionRecord } from "../../host/proxy/access-log.js";
import { type RunOptions, type SuiteResult, figureOf } from "../harness.js";

const RECORD: ConnectionRecord = {
  direction: "outbound",
  srcAddr: "10.0.0.1:41000",
  dstAddr: "10.0.0.2:15008",
  hboneAddr: "10.0.0.2:8080",
  service: "echo.echo.svc.cluster.local",
  src: { workload: "sleep-7d9", namespace: "default", identity: "spiffe://cluster.local/ns/default/sa/sleep" },
  dst: { workload: "echo-5f6", namespace: "echo", identity: "spiffe://cluster.local/ns/echo/sa/echo" },
  bytes: { clientToServer: 1234, serverToClient: 56789 },
  startMs: 0,
};

export async function runAccessLogBench(opts: RunOptions): Promise<SuiteResult> {
  let bytes = 0;
  // The default sink's work minus the write: the JSON encoding.
  const restore = setSink((r) => {
    bytes += JSON.stringify(r).length + 1;
  });
  setLevel("info");
  const bench = new Bench({ name: "access-log", time: opts.quick ? 300 : 1000, warmupTime: 100, throws: true });
  bench.add("connection complete line", () => {
    setAccessLogLevel("info");
    logConnectionComplete(RECORD);
  });
  bench.add("access log off", () => {
    setAccessLogLevel("off");
    logConnectionComplete(RECORD);
  });
  try {
    await bench.run();
  } finally {
    restore();
    setAccessLogLevel("info");
  }
  const figures = bench.tasks.map((t) => figureOf(t));
  const notes = figures.map((f) => `${f.task}: ${(1e9 / f.opsPerSec).toFixed(0)} ns/line`);
  return { suite: "access-log", figures, ratios: [], targets: [], notes, details: { bytesWritten: bytes } };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  void runAccessLogBench({ quick: process.argv.includes("--quick") }).then((r) => {
    for (const n of r.notes) console.log(n);
  });
}
