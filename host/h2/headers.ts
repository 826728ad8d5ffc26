// Reading a decoded header list (HPACK's order, repeats kept).

import type { HeaderList } from "./hpack.js";

/** The first value of header `name` (lower case, as HTTP/2 carries names), or undefined. */
export function header(list: HeaderList, name: string): string | undefined {
  for (const [n, v] of list) if (n === name) return v;
  return undefined;
}
