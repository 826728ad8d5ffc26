// Baggage codec exports (see assembly/baggage/). Re-exported by assembly/index.ts.
export function baggage_abi_placeholder(): i32 {
  return 0;
}
