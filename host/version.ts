// The package version, read from package.json beside the sources or the compiled dist/.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

function read(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(p)) continue;
    const pkg = JSON.parse(readFileSync(p, "utf8")) as { name?: string; version?: string };
    if (pkg.name === "hbone-wasm") return pkg.version ?? "0.0.0";
  }
  return "0.0.0";
}

export const VERSION = read();
