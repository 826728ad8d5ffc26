#!/usr/bin/env node
// The import graph between rooms points one way: a file may import its own room and rooms of a lower layer,
// never a room of its own layer or a higher one. Run: `npm run check:imports` (exit 1 on a back edge, naming the
// file, the import and both rooms); `--rules` prints the layers. test/layout.test.ts proves it fails on one.
//
// Layers, lowest first (a room is the longest matching path prefix):
//   0  assembly/ (the Wasm side: imports nothing of the host), generated protobuf code (host/*/gen/)
//   1  base (env, log, version, errors), net.ts (dial, listen), model/ (the mesh model: pure data)
//   2  runtime-config.ts, sys/ (native calls), wasm/ (the door), identity/ (SPIFFE, CA, certificates)
//   3  h2/ (the HTTP/2 engine), baggage.ts, metrics.ts, tls/ (contexts, verify, control-plane channel), state/
//   4  lb/, identity/istio-ca.ts (a control-plane client), xds/, dns/, capture/, inpod/
//   5  proxy/
//   6  http/ (Node apps over tunnels), admin.ts
//   7  app.ts (the wiring), socks5-client.ts
//   8  demo/
//   9  cli.ts, index.ts (the public API)
//   10 test/, bench/ (may import each other and everything above; nothing in host/ or assembly/ imports them)
// So: assembly <- wasm <- h2 <- proxy <- app <- cli; model <- state <- proxy; tls and identity never import
// proxy, state or xds; xds never imports proxy or lb.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** [room, layer, path prefixes]; the longest matching prefix names a file's room. */
export const ROOMS = [
  ["assembly", 0, ["assembly/"]],
  ["generated", 0, ["host/xds/gen/", "host/inpod/gen/"]],
  ["base", 1, ["host/env.ts", "host/log.ts", "host/version.ts", "host/errors.ts"]],
  ["net", 1, ["host/net.ts"]],
  ["model", 1, ["host/model/"]],
  ["runtime-config", 2, ["host/runtime-config.ts"]],
  ["sys", 2, ["host/sys/"]],
  ["wasm", 2, ["host/wasm/"]],
  ["identity", 2, ["host/identity/"]],
  ["h2", 3, ["host/h2/"]],
  ["baggage", 3, ["host/baggage.ts"]],
  ["metrics", 3, ["host/metrics.ts", "host/prom.ts"]],
  ["tls", 3, ["host/tls/"]],
  ["state", 3, ["host/state/"]],
  ["lb", 4, ["host/lb/"]],
  ["ca-client", 4, ["host/identity/istio-ca.ts"]],
  ["xds", 4, ["host/xds/"]],
  ["dns", 4, ["host/dns/"]],
  ["capture", 4, ["host/capture/"]],
  ["inpod", 4, ["host/inpod/"]],
  ["proxy", 5, ["host/proxy/"]],
  ["http", 6, ["host/http/"]],
  ["admin", 6, ["host/admin.ts"]],
  ["app", 7, ["host/app.ts"]],
  ["socks5-client", 7, ["host/socks5-client.ts"]],
  ["demo", 8, ["host/demo/", "host/demo.ts"]],
  ["cli", 9, ["host/cli.ts"]],
  ["index", 9, ["host/index.ts"]],
  ["tests", 10, ["test/", "bench/"]],
];

/** The room of a repo-relative path (posix separators), or undefined outside every room. */
export function roomOf(rel) {
  let best;
  for (const [name, layer, prefixes] of ROOMS) {
    for (const p of prefixes) {
      if (!rel.startsWith(p) || (best && p.length <= best.prefix.length)) continue;
      best = { name, layer, prefix: p };
    }
  }
  return best;
}

/** Why `from` may not import `to` (repo-relative paths), or undefined if it may. */
export function violation(from, to) {
  const a = roomOf(from);
  const b = roomOf(to);
  if (!a || !b || a.name === b.name) return undefined;
  if (b.layer < a.layer) return undefined;
  const how = b.layer === a.layer ? "a sibling of the same layer" : "a higher layer";
  return `${a.name} (layer ${a.layer}) imports ${b.name} (layer ${b.layer}), ${how}`;
}

const SKIP_DIRS = new Set(["node_modules", "dist", "proto"]);

function sourceFiles(root, dir, out = []) {
  const abs = path.join(root, dir);
  if (!fs.existsSync(abs)) return out;
  for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) sourceFiles(root, rel, out);
    } else if (/\.(ts|mts|mjs|js)$/.test(e.name) && !e.name.endsWith(".d.ts")) {
      out.push(rel);
    }
  }
  return out;
}

// Static imports and re-exports (type-only ones too: they are edges of the design) and import("literal").
const STATIC_IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^"'`;]*?\sfrom\s+)?["']([^"']+)["']/.source;
const DYNAMIC_IMPORT = /import\(\s*["']([^"']+)["']\s*\)/.source;
const IMPORT_RE = new RegExp(`${STATIC_IMPORT}|${DYNAMIC_IMPORT}`, "g");

/** The relative import specifiers of a source text (comments stripped first). */
export function importsOf(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
  const out = [];
  for (const m of code.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

/** A specifier of `from` as a repo-relative path (`.js` written for a `.ts` file maps back). */
function resolve(root, from, spec) {
  const abs = path.resolve(root, path.dirname(from), spec);
  const rel = path.relative(root, abs).split(path.sep).join("/");
  if (rel.endsWith(".js") && fs.existsSync(path.join(root, rel.slice(0, -3) + ".ts"))) return rel.slice(0, -3) + ".ts";
  return rel;
}

/** Every back edge in the repo at `root`: [{ from, spec, to, why }]. */
export function check(root) {
  const bad = [];
  for (const dir of ["assembly", "host", "test", "bench", "scripts"]) {
    for (const from of sourceFiles(root, dir)) {
      for (const spec of importsOf(fs.readFileSync(path.join(root, from), "utf8"))) {
        const to = resolve(root, from, spec);
        const why = violation(from, to);
        if (why) bad.push({ from, spec, to, why });
      }
    }
  }
  return bad;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  if (process.argv.includes("--rules")) {
    for (const [name, layer, prefixes] of ROOMS) console.log(`${layer}\t${name}\t${prefixes.join(" ")}`);
    process.exit(0);
  }
  const bad = check(root);
  for (const b of bad) console.error(`${b.from}: import "${b.spec}": ${b.why}`);
  if (bad.length > 0) {
    console.error(`check:imports: ${bad.length} back edge(s); the layers are in scripts/check-imports.mjs`);
    process.exit(1);
  }
  console.log("check:imports: no back edges");
}
