// Test vectors from independent projects, read in place from ../shared/vectors (never copied).
// A missing folder fails loudly: a test that silently ran on nothing could not fail.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

export const VECTORS_DIR = process.env.HBONE_VECTORS_DIR ??
  fileURLToPath(new URL("../../../shared/vectors/", import.meta.url));

export function vectorDir(...parts: string[]): string {
  const dir = join(VECTORS_DIR, ...parts);
  if (!existsSync(dir)) {
    throw new Error(`test vectors missing: ${dir} (expected ../shared/vectors beside the repo, or set HBONE_VECTORS_DIR)`);
  }
  return dir;
}

export function readJson<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

/** All *.json files of a vector folder, sorted; throws when there are none. */
export function jsonFiles(...parts: string[]): string[] {
  const dir = vectorDir(...parts);
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort().map((f) => join(dir, f));
  if (files.length === 0) throw new Error(`no vectors in ${dir}`);
  return files;
}

export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}
