// The load-balancing tables' layout, shared by the Wasm side (assembly/lb/table.ts) and the host
// (host/lb/rules.ts, host/lb/balancer.ts). Plain integer constants only, so this file compiles under both asc and tsc.

// One endpoint record: LB_TARGETS + (service ports) i32 words, written by the host.
// Words 0..5 are the locality ids; a routing-preference scope is coded as the word it compares.
export const LB_NETWORK = 0;
export const LB_CLUSTER = 1;
export const LB_REGION = 2;
export const LB_ZONE = 3;
export const LB_SUBZONE = 4;
export const LB_NODE = 5;
/** The endpoint's outlier-detection slot (per workload, kept across table rebuilds). */
export const LB_ENDPOINT_ID = 6;
export const LB_FLAGS = 7;
/** Capacity, read as u32 (0: never picked). */
export const LB_CAPACITY = 8;
/** One word per service port, in the host's port order: the target port, 0 if the endpoint lacks that port. */
export const LB_TARGETS = 9;

// LB_FLAGS bits.
export const LB_HEALTHY = 1;
/** Has a workload IP or hostname (else reachable only through a network gateway). */
export const LB_HAS_ADDRESS = 2;
export const LB_HAS_GATEWAY = 4;

// A pick's policy word: mode, health policy, filters, and the routing preferences.
export const LB_MODE_MASK = 3;
/** No ranking: every candidate (UNSPECIFIED, STANDARD, PASSTHROUGH, no loadBalancer). */
export const LB_MODE_ALL = 0;
export const LB_MODE_STRICT = 1;
export const LB_MODE_FAILOVER = 2;
export const LB_ALLOW_ALL = 4;
/** Only endpoints in the source's cluster (a service that is not global). */
export const LB_SAME_CLUSTER = 8;
/** Only endpoints on the source's network (the gateway's least-loaded pick). */
export const LB_SAME_NETWORK = 16;
/** Bits 5..7: the number of routing preferences; from bit 8, 3 bits per preference (its scope word). */
export const LB_PREFS_COUNT_SHIFT = 5;
export const LB_PREFS_SHIFT = 8;
export const LB_MAX_PREFS = 6;

/** Limits of one table (lb_table_new returns 0 beyond them). */
export const LB_MAX_ENDPOINTS = 1 << 22;
export const LB_MAX_PORTS = 1024;
export const LB_MAX_TABLE_BYTES = 1 << 28;
