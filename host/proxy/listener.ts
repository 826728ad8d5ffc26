// What every HBONE listener shares (the node proxy's inbound and the east-west gateway):
// the mTLS server on :15008, an HTTP/2 server session per connection, certificate rotation,
// drain (GOAWAY) and close. Subclasses decide what a CONNECT means.

import type net from "node:net";
import type tls from "node:tls";
import type { Workload } from "../config.js";
import type { Identity } from "../identity/identity.js";
import type { WorkloadCertificate } from "../identity/ca.js";
import { createHboneServer } from "../tls/contexts.js";
import { H2Session, type H2Stream, type Respond, type SessionOptions } from "../h2/session.js";
import type { HeaderList } from "../h2/hpack.js";
import { logger } from "../log.js";

const log = logger("listener");

export abstract class HboneListener {
  readonly server: ReturnType<typeof createHboneServer>;
  private readonly sessions = new Set<H2Session>();

  constructor(workload: Workload, certificate: WorkloadCertificate, private readonly sessionOptions?: SessionOptions) {
    this.server = createHboneServer({ certificate, trustDomain: workload.trustDomain || "cluster.local" },
      (socket, peer) => this.onSecure(socket, peer));
  }

  /** A CONNECT on an accepted connection; `from` is the TCP peer address. */
  protected abstract serveConnect(stream: H2Stream, headers: HeaderList, respond: Respond, peer: Identity, from: string): void;

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this.server.address() as net.AddressInfo;
  }

  setCertificate(cert: WorkloadCertificate): void {
    this.server.setCertificate(cert);
  }

  get activeTunnels(): number {
    let n = 0;
    for (const s of this.sessions) n += s.activeStreams;
    return n;
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
    const session = H2Session.server(socket, this.sessionOptions);
    this.sessions.add(session);
    session.on("close", () => this.sessions.delete(session));
    session.on("protocolError", (e) => log.warn("HBONE connection closed on a protocol error", { peer: String(peer), error: e }));
    const from = socket.remoteAddress ?? "";
    session.on("connect", (stream, headers, respond) => this.serveConnect(stream, headers, respond, peer, from));
  }
}
