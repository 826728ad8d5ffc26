// Loads the Wasm codec once per thread. The loader instantiates it (its abort import turns an
// AssemblyScript trap into a readable error); the hot path then calls `instance.exports`
// directly, never through the loader's wrappers.

import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { instantiateSync } from "@assemblyscript/loader";

import type { WasmExports } from "./exports.js";

export type Variant = "release" | "debug";

function wasmPath(variant: Variant): string {
  const file = variant === "debug" ? "hbone.debug.wasm" : "hbone.wasm";
  // From host/wasm (sources, run by vitest) or dist/host/wasm (compiled).
  for (const rel of ["../../dist/wasm/", "../../wasm/"]) {
    const p = fileURLToPath(new URL(rel + file, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`hbone-wasm: ${file} not found; run \`npm run build\` first`);
}

const instances = new Map<Variant, WasmExports>();

export function defaultVariant(): Variant {
  return process.env.HBONE_WASM_DEBUG === "1" ? "debug" : "release";
}

export function loadExports(variant: Variant = defaultVariant()): WasmExports {
  let ex = instances.get(variant);
  if (!ex) {
    const mod = new WebAssembly.Module(readFileSync(wasmPath(variant)));
    const { instance } = instantiateSync(mod, {});
    ex = instance.exports as unknown as WasmExports;
    instances.set(variant, ex);
  }
  return ex;
}
