// Types of scripts/check-imports.mjs, for test/layout.test.ts.
export const ROOMS: [name: string, layer: number, prefixes: string[]][];
export function roomOf(rel: string): { name: string; layer: number; prefix: string } | undefined;
export function violation(from: string, to: string): string | undefined;
export function importsOf(text: string): string[];
export function check(root: string): { from: string; spec: string; to: string; why: string }[];
