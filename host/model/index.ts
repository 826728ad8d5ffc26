// The mesh model (ztunnel's src/state/{workload,service,policy}.rs types): the one shape every proxy room reads.
// Pure data and constructors; config sources (xds/local-format.ts, xds/convert.ts) produce it.

export * from "./address.js";
export * from "./keys.js";
export * from "./workload.js";
export * from "./service.js";
export * from "./policy.js";
export * from "./mesh.js";
