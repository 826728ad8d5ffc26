// East-west gateway (multicluster ambient): terminates the outer HBONE from other networks
// (mTLS, trust domain checked, its own SPIFFE identity), routes a CONNECT for `svc-host:port`
// by namespace sameness (the same service name in every cluster) to a healthy local
// endpoint's HBONE port, and passes the inner bytes through untouched: the inner mTLS runs end
// to end between the source and the destination node proxies, so the gateway never sees it.

import { header } from "../h2/headers.js";
import { dialTcp } from "../net.js";
import net from "node:net";
import type { Workload } from "../model/index.js";
import type { ProxyInputs } from "./inputs.js";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import type { H2Stream, Respond } from "../h2/session.js";
import { HboneListener } from "./listener.js";
import type { HeaderList } from "../h2/hpack.js";
import { parseHostPort, formatAuthority } from "./authority.js";
import { pipeTunnel } from "./pipe.js";
import { isGlobalService } from "../lb/index.js";
import { logger } from "../log.js";

const log = logger("gateway");

export interface GatewayOptions {
  inputs: ProxyInputs;
  /** The gateway's own workload (its IP is where it listens). */
  workload: Workload;
  certificate: WorkloadCertificate;
  /** Our trust domain (--trust-domain): peers from other trust domains are refused at the handshake. */
  trustDomain?: string;
}

export class Gateway extends HboneListener {
  private readonly active = new Map<string, number>(); // workload uid -> open tunnels
  readonly stats = { routed: 0, refused: 0 };

  constructor(private readonly o: GatewayOptions) {
    super({ ...o.workload, trustDomain: o.trustDomain ?? o.workload.trustDomain }, o.certificate, o.inputs.session);
    // An accept error (EMFILE when descriptors run out) must not take the process down.
    this.server.on("error", (e) => log.warn("gateway listener error", { error: e }));
  }

  /** Open tunnels through this gateway to `w`. */
  activeTo(w: Workload): number {
    return this.active.get(w.uid) ?? 0;
  }

  protected serveConnect(stream: H2Stream, headers: HeaderList, respond: Respond, peer: Identity): void {
    // The stream is ours from here: a reset or a closed connection while we dial ends it with an error.
    stream.on("error", (e) => log.debug("gateway stream ended with an error", { error: e }));
    const authority = header(headers, ":authority") ?? "";
    const refuse = (status: number, why: string) => {
      this.stats.refused++;
      log.limited.info("gateway tunnel refused", {
        status,
        reason: why,
        authority,
        peer: String(peer),
        limitKey: status,
      });
      respond(status);
    };
    const dst = parseHostPort(authority);
    if (!dst || net.isIP(dst.host)) return refuse(400, "authority is not svc-host:port");
    // Only global services (ServiceScope) are reachable from other networks; a local-only one
    // never leaves its cluster, whatever a peer asks. 400: no gateway will ever route it (not retried).
    const svc = this.o.inputs.state.serviceByHost(dst.host);
    if (!svc) return refuse(400, `unknown service ${dst.host}`);
    if (!isGlobalService(svc, this.o.inputs.state.config.serviceScopeConfigs))
      return refuse(400, `service ${dst.host} is not global`);
    // Namespace sameness: the service of that name, its endpoints on this gateway's network.
    const choice = this.o.inputs.lb.pickLeastLoaded(svc, dst.port, (w) => this.activeTo(w));
    if (!choice) return refuse(503, `no healthy local endpoint for ${authority}`);
    const w = choice.workload;
    const hop = { host: w.workloadIps[0], port: this.o.inputs.hbonePort };
    // The peer gave up before the endpoint answered: stop dialling (a cancel: dialTcp reports nothing).
    const cancel = () => upstream.destroy();
    const upstream = dialTcp(
      { ...hop, timeoutMs: this.o.inputs.connectTimeoutMs },
      () => {
        stream.off("close", cancel);
        if (stream.destroyed) return upstream.destroy();
        this.stats.routed++;
        this.active.set(w.uid, this.activeTo(w) + 1);
        respond(200);
        void pipeTunnel(upstream, stream).then(() => this.active.set(w.uid, Math.max(0, this.activeTo(w) - 1)));
      },
      (err) => {
        if (stream.destroyed) return;
        refuse(503, `endpoint ${formatAuthority(hop.host, hop.port)} unreachable: ${err.message}`);
      },
    );
    stream.once("close", cancel);
  }
}
