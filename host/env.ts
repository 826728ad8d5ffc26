// Numeric settings read from the environment (limits; see the README's Hardening table).

/** The non-negative integer in environment variable `name`; undefined when unset or empty. Anything else throws an
 *  Error naming the variable, so a typo stops the process at start instead of silently using a default. */
export function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: not a non-negative integer: ${JSON.stringify(v)}`);
  return n;
}
