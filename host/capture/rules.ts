// Redirect mode: the nftables rules that send a host's (or a network namespace's) traffic through the proxy, with
// the semantics istio-cni writes into each ambient pod (its nftables backend): one `inet` table, so IPv4 and IPv6
// share the rules.
//   nat output:     the proxy's own sockets (mark 0x539) pass; DNS (UDP/TCP 53) → 15053; loopback passes;
//                   other TCP → 15001 (outbound capture).
//   nat prerouting: the kubelet probe source 169.254.7.127 passes; TCP to 15008 (HBONE) passes; other TCP →
//                   15006 (inbound plaintext capture).
// Apply is idempotent and atomic (one `nft -f -` transaction that creates our table, deletes it and defines it
// anew); remove deletes only our table. Nothing else in the ruleset is touched.

import { spawn } from "node:child_process";
import { parseArgs } from "node:util";

export interface CaptureConfig {
  /** Our nftables table (family inet). */
  table: string;
  outboundPort: number;
  inboundPlaintextPort: number;
  hbonePort: number;
  dnsPort: number;
  /** SO_MARK of the proxy's own sockets; the rules let them pass. */
  mark: number;
  /** Bits of the mark compared (istio-cni compares 0xfff). */
  markMask: number;
  /** The kubelet's probe source address (IPv4), exempt from inbound capture. */
  probeSource: string;
  /** Inbound TCP ports left alone (e.g. 22 on a VM, so SSH never depends on the proxy). */
  excludeInboundPorts: number[];
  /** Redirect DNS (UDP and TCP 53) to the DNS proxy (ztunnel: ISTIO_META_DNS_CAPTURE, default on). */
  captureDns: boolean;
}

/** The one place the defaults live (ztunnel's ports and PACKET_MARK). */
export const CAPTURE_DEFAULTS: Readonly<CaptureConfig> = Object.freeze({
  table: "hbone",
  outboundPort: 15001,
  inboundPlaintextPort: 15006,
  hbonePort: 15008,
  dnsPort: 15053,
  mark: 0x539,
  markMask: 0xfff,
  probeSource: "169.254.7.127",
  excludeInboundPorts: [],
  captureDns: true,
});

/** On a whole host (`--host`) SSH stays out of the capture unless asked otherwise. */
export const HOST_EXCLUDED_INBOUND_PORTS = [22];

const hex = (n: number) => `0x${n.toString(16)}`;

function check(c: CaptureConfig): void {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(c.table))
    throw new Error(`capture: bad table name ${JSON.stringify(c.table)}`);
  for (const [k, v] of [
    ["outboundPort", c.outboundPort],
    ["inboundPlaintextPort", c.inboundPlaintextPort],
    ["hbonePort", c.hbonePort],
    ["dnsPort", c.dnsPort],
    ...c.excludeInboundPorts.map((p) => ["excludeInboundPorts", p] as const),
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`capture: ${k}: not a port: ${v}`);
  }
  if (!Number.isInteger(c.mark) || c.mark < 1 || c.mark > 0xffffffff)
    throw new Error(`capture: mark: not a 32-bit mark: ${c.mark}`);
  if (!Number.isInteger(c.markMask) || (c.mark & c.markMask) !== c.mark)
    throw new Error(`capture: mark ${hex(c.mark)} does not fit mask ${hex(c.markMask)}`);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(c.probeSource))
    throw new Error(`capture: probeSource: not an IPv4 address: ${c.probeSource}`);
}

/** The table definition (what `hbone capture rules` prints). */
export function captureRuleset(opts: Partial<CaptureConfig> = {}): string {
  const c: CaptureConfig = { ...CAPTURE_DEFAULTS, ...opts };
  check(c);
  const mark = `meta mark & ${hex(c.markMask)} == ${hex(c.mark)}`;
  const excluded =
    c.excludeInboundPorts.length > 0
      ? [`\t\ttcp dport { ${[...new Set(c.excludeInboundPorts)].sort((a, b) => a - b).join(", ")} } return`]
      : [];
  const dns = c.captureDns
    ? [`\t\tudp dport 53 redirect to :${c.dnsPort}`, `\t\ttcp dport 53 redirect to :${c.dnsPort}`]
    : [];
  return [
    `table inet ${c.table} {`,
    "\tchain prerouting {",
    "\t\ttype nat hook prerouting priority -100; policy accept;",
    `\t\tip saddr ${c.probeSource} return`,
    `\t\ttcp dport ${c.hbonePort} return`,
    ...excluded,
    `\t\tmeta l4proto tcp redirect to :${c.inboundPlaintextPort}`,
    "\t}",
    "\tchain output {",
    "\t\ttype nat hook output priority -100; policy accept;",
    `\t\t${mark} return`,
    ...dns,
    "\t\tip daddr 127.0.0.1 return",
    "\t\tip6 daddr ::1 return",
    `\t\tmeta l4proto tcp redirect to :${c.outboundPort}`,
    "\t}",
    "}",
    "",
  ].join("\n");
}

/** One transaction: create the table if absent, delete it, define it anew (idempotent, never half-applied). */
export function applyScript(opts: Partial<CaptureConfig> = {}): string {
  const table = opts.table ?? CAPTURE_DEFAULTS.table;
  const rules = captureRuleset(opts);
  return `table inet ${table}\ndelete table inet ${table}\n${rules}`;
}

/** Deletes only our table; succeeds when it is not there. */
export function removeScript(table = CAPTURE_DEFAULTS.table): string {
  check({ ...CAPTURE_DEFAULTS, table });
  return `table inet ${table}\ndelete table inet ${table}\n`;
}

/** Where the rules go: a named network namespace (`ip netns`), or the host's own. */
export interface CaptureTarget {
  netns?: string;
}

/** Raised when nft cannot run or refuses the rules; the message says what to do. */
export class CaptureError extends Error {
  override name = "CaptureError";
}

const TIMEOUT_MS = 15_000;

/** Runs `nft -f -` (inside `ip netns exec NAME` for a namespace) with `script` on stdin. */
export function runNft(target: CaptureTarget, script: string): Promise<void> {
  const [cmd, args] =
    target.netns !== undefined ? ["ip", ["netns", "exec", target.netns, "nft", "-f", "-"]] : ["nft", ["-f", "-"]];
  const where = target.netns !== undefined ? `in network namespace ${target.netns}` : "on the host";
  return new Promise((resolve, reject) => {
    let stderr = "";
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      done(new CaptureError(`nft ${where}: no answer in ${TIMEOUT_MS / 1000} s`));
    }, TIMEOUT_MS);
    child.on("error", (e: NodeJS.ErrnoException) => {
      done(
        new CaptureError(
          e.code === "ENOENT"
            ? `${cmd} not found: redirect mode needs ${cmd === "ip" ? "iproute2 (apt-get install iproute2)" : "nftables (apt-get install nftables)"}`
            : `${cmd}: ${e.message}`,
        ),
      );
    });
    child.stdin.on("error", () => undefined); // an early exit is reported by 'close'
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    child.on("close", (code) => {
      if (code === 0) return done();
      const msg = stderr.trim();
      if (/not permitted|permission denied/i.test(msg)) {
        done(
          new CaptureError(
            `nft ${where}: not permitted: installing rules needs root (CAP_NET_ADMIN${target.netns !== undefined ? ", and CAP_SYS_ADMIN to enter the namespace" : ""}): ${msg}`,
          ),
        );
      } else if (
        /nft: command not found|exec of "nft" failed|No such file or directory.*nft/i.test(msg) &&
        target.netns !== undefined
      ) {
        done(new CaptureError(`nft not found: redirect mode needs nftables (apt-get install nftables): ${msg}`));
      } else {
        done(new CaptureError(`nft ${where} failed (exit ${code}): ${msg || "no message"}`));
      }
    });
    child.stdin.end(script);
  });
}

export function applyRules(target: CaptureTarget, opts: Partial<CaptureConfig> = {}): Promise<void> {
  return runNft(target, applyScript(opts));
}

export function removeRules(target: CaptureTarget, table?: string): Promise<void> {
  return runNft(target, removeScript(table));
}

const USAGE = `usage: hbone capture rules (--netns NAME | --host) [--apply | --remove] [options]
  prints the nftables rules (table inet ${CAPTURE_DEFAULTS.table}) that redirect traffic to the proxy;
  --apply installs them (replacing our table), --remove deletes our table (nothing else)
  --outbound-port N (${CAPTURE_DEFAULTS.outboundPort})  --inbound-port N (${CAPTURE_DEFAULTS.inboundPlaintextPort})  --hbone-port N (${CAPTURE_DEFAULTS.hbonePort})
  --dns-port N (${CAPTURE_DEFAULTS.dnsPort}; "off": no DNS capture)  --mark N (${hex(CAPTURE_DEFAULTS.mark)})  --table NAME
  --exclude-inbound-ports P,P   inbound ports left alone (--host default: ${HOST_EXCLUDED_INBOUND_PORTS.join(",")})
`;

function portArg(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${flag}: not a port: ${v}`);
  return n;
}

/** `hbone capture rules …`; returns the exit code. */
export async function captureCommand(
  args: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "rules") {
    process.stderr.write(`hbone capture: unknown subcommand ${sub === undefined ? "(none)" : `'${sub}'`}\n${USAGE}`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      netns: { type: "string" },
      host: { type: "boolean" },
      apply: { type: "boolean" },
      remove: { type: "boolean" },
      "outbound-port": { type: "string" },
      "inbound-port": { type: "string" },
      "hbone-port": { type: "string" },
      "dns-port": { type: "string" },
      mark: { type: "string" },
      table: { type: "string" },
      "exclude-inbound-ports": { type: "string" },
    },
  });
  if ((values.netns === undefined) === (values.host !== true))
    throw new Error(`capture rules: give exactly one of --netns NAME or --host\n${USAGE}`);
  if (values.apply && values.remove) throw new Error("capture rules: --apply and --remove exclude each other");
  const target: CaptureTarget = values.netns !== undefined ? { netns: values.netns } : {};
  const opts: Partial<CaptureConfig> = {};
  const set = <K extends keyof CaptureConfig>(k: K, v: CaptureConfig[K] | undefined) => {
    if (v !== undefined) opts[k] = v;
  };
  set("outboundPort", portArg(values["outbound-port"], "--outbound-port"));
  set("inboundPlaintextPort", portArg(values["inbound-port"], "--inbound-port"));
  set("hbonePort", portArg(values["hbone-port"], "--hbone-port"));
  if (values["dns-port"] === "off") opts.captureDns = false;
  else set("dnsPort", portArg(values["dns-port"], "--dns-port"));
  if (values.mark !== undefined) {
    const m = Number(values.mark);
    if (!Number.isInteger(m)) throw new Error(`--mark: not a number: ${values.mark}`);
    opts.mark = m;
  }
  set("table", values.table);
  const excluded = values["exclude-inbound-ports"];
  opts.excludeInboundPorts =
    excluded !== undefined
      ? excluded
          .split(",")
          .filter((p) => p.trim() !== "")
          .map((p) => portArg(p.trim(), "--exclude-inbound-ports")!)
      : values.host
        ? HOST_EXCLUDED_INBOUND_PORTS
        : [];
  const where = target.netns !== undefined ? `network namespace ${target.netns}` : "the host";
  const table = opts.table ?? CAPTURE_DEFAULTS.table;
  if (values.remove) {
    await removeRules(target, table);
    out(`removed table inet ${table} from ${where}\n`);
  } else if (values.apply) {
    await applyRules(target, opts);
    out(`applied table inet ${table} in ${where}\n`);
  } else {
    out(captureRuleset(opts));
  }
  return 0;
}
