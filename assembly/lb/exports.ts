// Load-balancing table exports (see assembly/lb/). Re-exported by assembly/index.ts.
export function lb_abi_placeholder(): i32 {
  return 0;
}
