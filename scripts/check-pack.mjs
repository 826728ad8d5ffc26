#!/usr/bin/env node
// Checks what `npm pack` would ship (run after `npm run build`): only the compiled library (dist/host,
// the dist/assembly constants it imports), the release and debug Wasm, README, LICENSE and package.json;
// everything package.json's main/types/exports/bin names is there; and every relative import of a packed
// .js file resolves to a packed file. Exits 1 with the offending paths otherwise.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const [pack] = JSON.parse(
  execFileSync(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root, encoding: "utf8" }),
);
const files = new Set(pack.files.map((f) => f.path));

const ALLOWED = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^dist\/(host|assembly)\/.+\.(js|d\.ts)$/,
  /^dist\/wasm\/hbone(\.debug)?\.wasm$/,
];
const problems = [];
for (const f of files) if (!ALLOWED.some((re) => re.test(f))) problems.push(`ships ${f}, which it should not`);

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const named = [pkg.main, pkg.types, ...Object.values(pkg.bin ?? {}), "dist/wasm/hbone.wasm", "LICENSE", "README.md"];
for (const v of Object.values(pkg.exports ?? {})) named.push(...(typeof v === "string" ? [v] : Object.values(v)));
for (const n of named) if (!files.has(normalize(n))) problems.push(`package.json names ${n}, which is not packed`);

// Relative imports in packed JS (static `from "./x.js"` and dynamic `import("./x.js")`).
const IMPORT = /(?:from\s+|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g;
for (const f of files) {
  if (!f.endsWith(".js")) continue;
  for (const m of readFileSync(join(root, f), "utf8").matchAll(IMPORT)) {
    const target = normalize(join(dirname(f), m[1]));
    if (!files.has(target)) problems.push(`${f} imports ${m[1]}, which is not packed`);
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`check-pack: ${p}`);
  process.exit(1);
}
const kb = Math.round(pack.size / 1024);
console.log(
  `check-pack: ${files.size} files, ${kb} KiB packed (${pack.filename}); main, types, exports, bin and imports resolve`,
);
