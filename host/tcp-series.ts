// The istio_tcp_* families: ztunnel's label names, one key per label set, and their Prometheus text written straight
// from the series' plain numbers. prom-client's way (a Counter per family, refilled at each scrape: a label hash per
// sample, then its generic formatting) held the event loop that moves the tunnels' bytes for 0.8-1.2 s per scrape at
// the 10,000-series cap, ~0.1 s at 1,000; this writes each series' labels once per scrape for all six families, and
// lets the loop run between pieces. No imports: a --workers primary sums its workers' series with it and loads
// nothing else of the proxy.

/** ztunnel's label set, in its order. */
export const TCP_LABELS = [
  "reporter",
  "source_workload",
  "source_canonical_service",
  "source_canonical_revision",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_cluster",
  "destination_service",
  "destination_service_namespace",
  "destination_service_name",
  "destination_workload",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_cluster",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
  "source_region",
  "source_zone",
  "destination_region",
  "destination_zone",
] as const;

export type TcpLabel = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabel, string>;

/** One label set's numbers (a series, or a worker's copy of one). */
export interface TcpNumbers {
  readonly labels: TcpLabels;
  opened: number;
  closed: number;
  failed: number;
  received: number;
  sent: number;
  open: number;
}

/** The key of a label set: its values in TCP_LABELS order. */
export function keyOf(labels: TcpLabels): string {
  let key = "";
  for (const l of TCP_LABELS) key += labels[l] + "\u0000";
  return key;
}

interface Family {
  name: string;
  type: "counter" | "gauge";
  help: string;
  /** The sample of a series, or undefined for none. */
  value(s: TcpNumbers): number | undefined;
}

type Field = Exclude<keyof TcpNumbers, "labels">;
/** A counter shows a series once it counts something. */
const counter = (name: string, help: string, field: Field): Family => ({
  name,
  type: "counter",
  help,
  value: (s) => (s[field] > 0 ? s[field] : undefined),
});

const FAMILIES: Family[] = [
  counter("istio_tcp_connections_opened_total", "The total number of TCP connections opened", "opened"),
  counter("istio_tcp_connections_closed_total", "The total number of TCP connections closed", "closed"),
  counter(
    "istio_tcp_connections_failed_total",
    "The total number of TCP connections that failed to establish",
    "failed",
  ),
  counter(
    "istio_tcp_received_bytes_total",
    "The size of total bytes received during request in case of a TCP connection",
    "received",
  ),
  counter(
    "istio_tcp_sent_bytes_total",
    "The size of total bytes sent during response in case of a TCP connection",
    "sent",
  ),
  // The gauge shows a series once it opened (0 when its tunnels are closed).
  {
    name: "istio_tcp_sockets_open",
    type: "gauge",
    help: "The current number of open TCP sockets",
    value: (s) => (s.opened > 0 ? s.open : undefined),
  },
];

/** The names of the families written here (a registry that also has them would show them twice). */
export const TCP_FAMILY_NAMES: readonly string[] = FAMILIES.map((f) => f.name);

const NEEDS_ESCAPE = /[\\\n"]/;

/** A label value in the text format: backslash, newline and double quote escaped (as prom-client does). */
function escapeValue(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"') : v;
}

function labelText(labels: TcpLabels): string {
  // Joined, not built with +=: a flat string, copied as it is into each family's line (a string built piece by
  // piece is a tree, walked again for every line it is part of: 3x slower at the cap).
  const parts = new Array<string>(TCP_LABELS.length);
  for (let i = 0; i < TCP_LABELS.length; i++) parts[i] = `${TCP_LABELS[i]}="${escapeValue(labels[TCP_LABELS[i]!])}"`;
  return `{${parts.join(",")}}`;
}

/** How long a scrape holds the event loop before it lets the tunnels' bytes through (a scrape at the series cap,
 *  60,000 lines, takes ~0.2 s in all), and how many lines go between two looks at the clock. */
const TURN_MS = 4;
const LINES_PER_LOOK = 128;
/** Lines per piece of the text (~0.5 MB at the cap): joining a whole family at once held the loop ~20 ms. */
const LINES_PER_CHUNK = 512;

/**
 * The six families in the Prometheus text format (0.0.4), laid out as prom-client lays out a registry: each family's
 * HELP, TYPE and samples, families apart by a blank line, a final newline; in pieces of whole lines, written to the
 * response one by one (at the cap the whole is ~40 MB, not worth copying once more). Labels in TCP_LABELS order. The
 * series are those at the call; each family's numbers are read as it is written.
 */
export async function tcpText(series: Iterable<TcpNumbers>): Promise<string[]> {
  const all = [...series];
  const labels: string[] = [];
  let untilLook = LINES_PER_LOOK;
  let turn = performance.now();
  const due = () => {
    if (--untilLook > 0) return false;
    untilLook = LINES_PER_LOOK;
    return performance.now() - turn >= TURN_MS;
  };
  const nextTurn = async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    turn = performance.now();
  };
  for (const s of all) {
    labels.push(labelText(s.labels));
    if (due()) await nextTurn();
  }
  const chunks: string[] = [];
  for (const f of FAMILIES) {
    let lines = [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`];
    for (let i = 0; i < all.length; i++) {
      const v = f.value(all[i]!);
      if (v !== undefined) lines.push(f.name + labels[i]! + " " + v);
      if (lines.length === LINES_PER_CHUNK) {
        chunks.push(lines.join("\n") + "\n");
        lines = [];
      }
      if (due()) await nextTurn();
    }
    lines.push(""); // the blank line between families, and the final newline
    chunks.push(lines.join("\n") + "\n");
  }
  return chunks;
}

/** Several processes' series summed by label set (a --workers primary's view of its workers). */
export function sumTcp(lists: TcpNumbers[][]): TcpNumbers[] {
  const sums = new Map<string, TcpNumbers>();
  for (const list of lists)
    for (const s of list) {
      const key = keyOf(s.labels);
      const sum = sums.get(key);
      if (!sum) {
        sums.set(key, { labels: s.labels, ...numbersOf(s) });
        continue;
      }
      sum.opened += s.opened;
      sum.closed += s.closed;
      sum.failed += s.failed;
      sum.received += s.received;
      sum.sent += s.sent;
      sum.open += s.open;
    }
  return [...sums.values()];
}

/** A series' numbers as a plain object (what a worker sends its primary). */
export function numbersOf(s: TcpNumbers): Omit<TcpNumbers, "labels"> {
  return { opened: s.opened, closed: s.closed, failed: s.failed, received: s.received, sent: s.sent, open: s.open };
}
