// What every proxy room (inbound, outbound, gateway) is handed by the wiring (ztunnel's ProxyInputs): the shared
// state, metrics, pools, session options, ports, timeouts and load balancer, made once per process by app.ts.
// Per-workload things (the workload record, its identity and certificate, where its sockets are dialled from) are
// the rooms' own options beside it.

import type net from "node:net";
import type { ProxyState } from "../state/index.js";
import type { Metrics } from "../metrics.js";
import type { SessionOptions } from "../h2/session.js";
import type { LoadBalancer } from "../lb/index.js";
import type { HbonePool } from "./pool.js";

export interface ProxyInputs {
  state: ProxyState;
  /** istio_tcp_* series (reporter=source outbound, destination inbound); none in some library uses. */
  metrics?: Metrics;
  /** HBONE sessions keyed by source identity and address, destination identities and next hop. */
  pool: HbonePool;
  /** Inner (double HBONE) sessions, pooled the same way. */
  innerPool: HbonePool;
  session?: SessionOptions;
  /** The port other node proxies accept HBONE on (15008). */
  hbonePort: number;
  /** Dialling a peer proxy, a gateway's endpoint or an application. */
  connectTimeoutMs: number;
  /** ENABLE_RESPONSE_BAGGAGE: our metadata on every HBONE 200. */
  responseBaggage: boolean;
  /** Locality-aware endpoint choice (Wasm tables), outlier detection, P2C at a gateway. */
  lb: LoadBalancer;
  /** The proxy's own listening ports (admin, metrics, SOCKS5, …): no tunnel may target them. */
  ownPorts: () => ReadonlySet<number>;
  /** The proxy's own network (--network): used when a workload record names none. */
  network?: string;
}

/** Opens a TCP connection (from a pod's namespace, marked, in node mode); returns a connecting socket. */
export type Dialer = (host: string, port: number, localAddress?: string) => net.Socket;
