// Load balancing (mirrors assembly/lb/): balancer.ts (LoadBalancer over the Wasm tables), rules.ts (ztunnel's
// endpoint rules as policy words), outlier.ts (passive outlier detection), scope.ts (global services).

export { LoadBalancer, type LbChoice, type LoadBalancerOptions } from "./balancer.js";
export { OUTLIER_DEFAULTS, type OutlierOptions } from "./outlier.js";
export { lbSourceOf, type LbSource } from "./rules.js";
export { isGlobalService } from "./scope.js";
