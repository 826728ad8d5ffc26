// Test vectors from independent projects, kept in test/vectors/ (each folder with its LICENSE and SOURCE);
// large JSON corpora are stored gzipped (*.json.gz) and read with node:zlib. HBONE_VECTORS_DIR overrides
// the folder. A missing folder fails loudly: a test that silently ran on nothing could not fail.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

export const VECTORS_DIR = process.env.HBONE_VECTORS_DIR ?? fileURLToPath(new URL("../vectors/", import.meta.url));

export function vectorDir(...parts: string[]): string {
  const dir = join(VECTORS_DIR, ...parts);
  if (!existsSync(dir)) {
    throw new Error(`test vectors missing: ${dir} (expected in test/vectors, or set HBONE_VECTORS_DIR)`);
  }
  return dir;
}

/** Parses a JSON vector file, plain (*.json) or gzipped (*.json.gz). */
export function readJson<T = unknown>(path: string): T {
  const raw = readFileSync(path);
  return JSON.parse((path.endsWith(".gz") ? gunzipSync(raw) : raw).toString("utf8")) as T;
}

/** All *.json / *.json.gz files of a vector folder, sorted; throws when there are none. */
export function jsonFiles(...parts: string[]): string[] {
  const dir = vectorDir(...parts);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".json") || f.endsWith(".json.gz"))
    .sort()
    .map((f) => join(dir, f));
  if (files.length === 0) throw new Error(`no vectors in ${dir}`);
  return files;
}

export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}
