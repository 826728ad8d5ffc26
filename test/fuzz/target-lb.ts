// Fuzz target: the load-balancing tables (assembly/lb/ and their loader in host/lb/balancer.ts). Two kinds of input:
// - raw (input[0][0] even): the bytes are a program over the lb_* exports as host/lb/balancer.ts calls them: a context,
//   outlier slots, tables of any size (also past the limits) whose records hold any words a config can produce
//   (capacity any u32, flags any, locality ids any, endpoint ids in or just past the reserved slots), then picks,
//   two-choice picks, failures, successes and rebuilds. Invariants: a pick is -1 or a record with capacity > 0
//   and a target port for the asked port; the second candidate differs from the first.
// - mesh (odd): the bytes describe a mesh (test/lb/fixture.ts meshYaml, parsed for real) that the LoadBalancer
//   loads; every pick must equal the pure-JS pickEndpoint's for the same draw.

import {
  LB_ALLOW_ALL,
  LB_CAPACITY,
  LB_ENDPOINT_ID,
  LB_MAX_ENDPOINTS,
  LB_MAX_PORTS,
  LB_MODE_FAILOVER,
  LB_MODE_STRICT,
  LB_PREFS_COUNT_SHIFT,
  LB_PREFS_SHIFT,
  LB_SAME_CLUSTER,
  LB_SAME_NETWORK,
  LB_TARGETS,
} from "../../assembly/lb/layout.js";
import type { Codec } from "../../host/wasm/codec.js";
import { LoadBalancer } from "../../host/lb/index.js";
import { pickEndpoint } from "../lb/oracle.js";
import { client, meshYaml, service, stateOf, type Ep } from "../lb/fixture.js";
import { Mismatch, type Target } from "./harness.js";
import type { Rng } from "./rng.js";

/** Reads fuzz bytes as numbers; zeros once exhausted. */
class Bytes {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  get done(): boolean {
    return this.at >= this.b.length;
  }
  u8(): number {
    return this.at < this.b.length ? this.b[this.at++]! : 0;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u32(): number {
    return ((this.u16() << 16) | this.u16()) >>> 0;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.u8() % items.length]!;
  }
}

/** A policy word as host/lb/rules.ts builds one (mode, flags, up to 6 scope words 0..5). */
function policy(d: Bytes): number {
  const mode = d.pick([0, LB_MODE_STRICT, LB_MODE_FAILOVER]);
  const flags = d.u8() & (LB_ALLOW_ALL | LB_SAME_CLUSTER | LB_SAME_NETWORK);
  const n = mode === 0 ? 0 : d.u8() % 7;
  let p = mode | flags | (n << LB_PREFS_COUNT_SHIFT);
  for (let i = 0; i < n; i++) p |= (d.u8() % 6) << (LB_PREFS_SHIFT + 3 * i);
  return p;
}

const NOW = [0, 1, 1000, 30_000, 1e9, Number.MAX_VALUE];
const id = (d: Bytes) => d.pick([-1, 0, 1, 2, 3, 0x7fffffff, d.u8()]);

function runRaw(d: Bytes, codec: Codec): void {
  const ex = codec.ex;
  const ctx = ex.lb_new(d.u8() % 8, d.u16(), d.u32()) >>> 0;
  const tables: { t: number; count: number; ports: number }[] = [];
  let slots = 0;
  try {
    for (let ops = 0; ops < 300 && !d.done; ops++) {
      switch (d.u8() % 10) {
        case 0: {
          const want = d.pick([0, 1, 10, d.u16() % 3000, LB_MAX_ENDPOINTS + 1, -1]);
          if (ex.lb_endpoints_reserve(ctx, want) === 0) slots = Math.max(slots, want);
          break;
        }
        case 1: {
          const count = d.pick([0, 1, 2, d.u8(), d.u16() % 5000, LB_MAX_ENDPOINTS + 1, -5, 0x7fffffff]);
          const ports = d.pick([0, 1, 2, d.u8() % 40, LB_MAX_PORTS + 1, -1]);
          const t = ex.lb_table_new(ctx, count, ports) >>> 0;
          if (t === 0) break;
          codec.refresh();
          const m = codec.i32,
            stride = LB_TARGETS + ports;
          for (let i = 0, o = ex.lb_table_records(t) >>> 2; i < count; i++, o += stride) {
            for (let w = 0; w < stride; w++) {
              m[o + w] =
                w === LB_ENDPOINT_ID
                  ? d.u8() % (slots + 3)
                  : w === LB_CAPACITY
                    ? d.pick([0, 1, 5, d.u32(), 0xffffffff])
                    : w >= LB_TARGETS
                      ? d.pick([0, 80, d.u16()])
                      : d.pick([0, 1, 2, -1, d.u8(), d.u32()]);
            }
          }
          tables.push({ t, count, ports });
          break;
        }
        case 2:
        case 3:
        case 4: {
          if (!tables.length) break;
          const tb = d.pick(tables),
            port = d.u8() % (tb.ports + 2);
          const pair = d.u8() & 1;
          const i = ex.lb_pick(tb.t, port, policy(d), id(d), id(d), id(d), id(d), id(d), id(d), d.u32(), d.pick(NOW));
          if (i === -1) {
            // A pick that found none leaves no candidates to draw a second from.
            if (pair && ex.lb_pick_second(d.u32()) !== -1) throw new Mismatch("second candidate after an empty pick");
            break;
          }
          if (i < 0 || i >= tb.count || port >= tb.ports)
            throw new Mismatch(`pick ${i} of ${tb.count} (port ${port}/${tb.ports})`);
          codec.refresh();
          const stride = LB_TARGETS + tb.ports,
            rec = (ex.lb_table_records(tb.t) >>> 2) + i * stride;
          if (codec.i32[rec + LB_CAPACITY] === 0) throw new Mismatch(`picked record ${i} has capacity 0`);
          if (codec.i32[rec + LB_TARGETS + port] === 0) throw new Mismatch(`picked record ${i} lacks port ${port}`);
          if (pair) {
            const j = ex.lb_pick_second(d.u32());
            if (j !== -1 && (j === i || j < 0 || j >= tb.count))
              throw new Mismatch(`second candidate ${j} (first ${i})`);
          }
          break;
        }
        case 5:
          ex.lb_report_failure(ctx, id(d), d.pick(NOW));
          break;
        case 6:
          ex.lb_report_success(ctx, id(d), d.pick(NOW));
          break;
        case 7:
          ex.lb_ejected_until(ctx, id(d));
          ex.lb_endpoint_reset(ctx, d.u8() % (slots + 1));
          break;
        default:
          if (tables.length) ex.lb_table_free(tables.splice(d.u8() % tables.length, 1)[0]!.t);
      }
    }
  } finally {
    for (const tb of tables) ex.lb_table_free(tb.t);
    ex.lb_free(ctx);
  }
}

const MODES = [
  "",
  "{mode: STRICT, routingPreferences: [NODE]}",
  "{mode: FAILOVER, routingPreferences: [NETWORK, REGION, ZONE]}",
  "{mode: FAILOVER, routingPreferences: [REGION, ZONE, SUBZONE, NODE], healthPolicy: ALLOW_ALL}",
  "{mode: STRICT, routingPreferences: [NETWORK, CLUSTER]}",
];

function runMesh(d: Bytes, codec: Codec): void {
  const eps: Ep[] = Array.from({ length: 1 + (d.u8() % 24) }, (_, i) => ({
    name: `e${i}`,
    network: d.pick(["n1", "n1", "n2"]),
    cluster: d.pick(["c1", "c2"]),
    region: d.pick(["r1", "r2"]),
    zone: d.pick(["z1", "z2"]),
    subzone: d.pick(["s1", "s2"]),
    node: d.pick(["k1", "k2"]),
    address: d.pick(["ip", "ip", "hostname", "none"] as const),
    gateway: d.u8() % 3 === 0,
    unhealthy: d.u8() % 4 === 0,
    capacity: d.pick([0, 1, 1, 2, 7, 100, 4294967295]),
    ports: d.u8() % 3 === 0 ? { 80: 9000 + i } : undefined,
  }));
  const lb = d.pick(MODES);
  const state = stateOf(
    meshYaml(eps, {
      lb: lb || undefined,
      ports: d.pick(["{80: 8080}", "{80: 8080, 81: 8081}"]),
      labels: d.u8() & 1 ? `{istio.io/global: "true"}` : undefined,
    }),
  );
  let u = 0;
  const wasm = new LoadBalancer(state, { codec, random: () => u });
  try {
    const src = client(state),
      svc = service(state, "all");
    for (let k = 0; k < 50; k++) {
      u = d.u32() / 4294967296;
      const port = d.pick([80, 81]);
      const a = wasm.pick(src, svc, port),
        b = pickEndpoint(state, src, svc, port, { random: () => u });
      if (a?.workload.name !== b?.workload.name || a?.rank !== b?.rank || a?.targetPort !== b?.targetPort) {
        throw new Mismatch(
          `Wasm pick ${a?.workload.name}/${a?.rank}/${a?.targetPort} != JS ` +
            `${b?.workload.name}/${b?.rank}/${b?.targetPort} (lb ${lb}, draw ${u})`,
        );
      }
    }
  } finally {
    wasm.close();
  }
}

export const lbTarget: Target = {
  name: "lb",
  memoryBound: 128 << 20,
  generate(rng: Rng) {
    const mesh = rng.chance(0.25);
    return [Buffer.from([mesh ? 1 : 0]), rng.bytes(rng.range(16, mesh ? 200 : 3000))];
  },
  execute(input, codec) {
    const d = new Bytes(input[1] ?? Buffer.alloc(0));
    if ((input[0]?.[0] ?? 0) & 1) runMesh(d, codec);
    else runRaw(d, codec);
  },
};
