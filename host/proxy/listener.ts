// What every HBONE listener shares (the node proxy's inbound and the east-west gateway):
// the mTLS server on :15008, an HTTP/2 server session per connection, certificate rotation,
// drain (GOAWAY) and close, and the limits that keep a flood of peers from exhausting it: handshakes are admitted
// by host/tls/admission.ts; established connections are capped per peer identity and in total here.
// Subclasses decide what a CONNECT means.

import type net from "node:net";
import type tls from "node:tls";
import { trustDomainOf, type Workload } from "../model/index.js";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { createHboneServer } from "../tls/contexts.js";
import { defaultAdmissionLimits, type AdmissionLimits } from "../tls/admission.js";
import { H2Session, type H2Stream, type Respond, type SessionOptions } from "../h2/session.js";
import type { HeaderList } from "../h2/hpack.js";
import { logger } from "../log.js";
import { envInt } from "../env.js";
import { listen } from "../net.js";

const log = logger("listener");

export interface ListenerLimits extends AdmissionLimits {
  /** Established HBONE connections (all peers); a connection over it is closed after its handshake. */
  maxEstablished: number;
  /** Established HBONE connections of one peer identity (SPIFFE); a connection over it is closed. */
  maxEstablishedPerPeer: number;
}

/** Defaults (env HBONE_MAX_ESTABLISHED, HBONE_MAX_ESTABLISHED_PER_PEER; the admission ones in admission.ts). */
export function defaultListenerLimits(): ListenerLimits {
  return {
    ...defaultAdmissionLimits(),
    maxEstablished: envInt("HBONE_MAX_ESTABLISHED") ?? 4096,
    maxEstablishedPerPeer: envInt("HBONE_MAX_ESTABLISHED_PER_PEER") ?? 256,
  };
}

export abstract class HboneListener {
  readonly server: ReturnType<typeof createHboneServer>;
  private readonly sessions = new Set<H2Session>();
  private readonly sockets = new Set<tls.TLSSocket>();
  private readonly perPeer = new Map<string, number>();
  readonly limits: ListenerLimits;
  /** Established connections closed by a cap. */
  readonly capped = { total: 0, perPeer: 0 };

  constructor(
    workload: Workload,
    certificate: WorkloadCertificate,
    private readonly sessionOptions?: SessionOptions,
    limits?: Partial<ListenerLimits>,
  ) {
    this.limits = { ...defaultListenerLimits(), ...limits };
    this.server = createHboneServer(
      { certificate, trustDomain: trustDomainOf(workload), limits: this.limits },
      (socket, peer) => this.onSecure(socket, peer),
    );
  }

  /** A CONNECT on an accepted connection; `from` is the TCP peer address. */
  protected abstract serveConnect(
    stream: H2Stream,
    headers: HeaderList,
    respond: Respond,
    peer: Identity,
    from: string,
  ): void;

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    const address = await listen(this.server, { host, port });
    const { handshakeTimeoutMs, maxPendingHandshakes, maxPendingHandshakesPerSource, maxConnections, fdReserve } =
      this.server.admission.limits;
    log.info("HBONE listener limits", {
      handshakeTimeoutMs,
      maxPendingHandshakes,
      maxPendingHandshakesPerSource,
      maxConnections,
      fdReserve,
      maxEstablished: this.limits.maxEstablished,
      maxEstablishedPerPeer: this.limits.maxEstablishedPerPeer,
    });
    return address;
  }

  setCertificate(cert: WorkloadCertificate): void {
    this.server.setCertificate(cert);
  }

  /** HBONE connections not yet closed (a drain waits for them too: their last bytes may still be in flight). */
  get openConnections(): number {
    return this.sockets.size;
  }

  get activeTunnels(): number {
    let n = 0;
    for (const s of this.sessions) n += s.activeStreams;
    return n;
  }

  /** The streams open on every connection now (a subclass finds what it keeps per tunnel in their slots). */
  protected *openStreams(): IterableIterator<H2Stream> {
    for (const s of this.sessions) yield* s.streams.values();
  }

  /** GOAWAY on every connection: tunnels in flight finish, new ones go elsewhere. */
  drain(): void {
    this.server.close();
    for (const s of this.sessions) s.close();
  }

  close(): void {
    this.server.close();
    for (const s of this.sessions) s.destroy();
  }

  private onSecure(socket: tls.TLSSocket, peer: Identity): void {
    const who = String(peer);
    const mine = this.perPeer.get(who) ?? 0;
    const over =
      this.sessions.size >= this.limits.maxEstablished
        ? `over ${this.limits.maxEstablished} connections`
        : mine >= this.limits.maxEstablishedPerPeer
          ? `over ${this.limits.maxEstablishedPerPeer} connections of one peer`
          : null;
    if (over) {
      if (this.sessions.size >= this.limits.maxEstablished) this.capped.total++;
      else this.capped.perPeer++;
      log.limited.warn("HBONE connection closed: established-connection cap", {
        reason: over,
        peer: who,
        remote: socket.remoteAddress,
      });
      socket.destroy();
      return;
    }
    const session = H2Session.server(socket, this.sessionOptions);
    this.sessions.add(session);
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    this.perPeer.set(who, mine + 1);
    session.on("close", () => {
      this.sessions.delete(session);
      const n = (this.perPeer.get(who) ?? 1) - 1;
      if (n > 0) this.perPeer.set(who, n);
      else this.perPeer.delete(who);
    });
    session.on("protocolError", (e) =>
      log.limited.warn("HBONE connection closed on a protocol error", { peer: who, error: e }),
    );
    const from = socket.remoteAddress ?? "";
    session.on("connect", (stream, headers, respond) => this.serveConnect(stream, headers, respond, peer, from));
  }
}
