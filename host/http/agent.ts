// node:http over the mesh: an http.Agent (and an https.Agent, for apps that speak TLS themselves)
// whose connections are HBONE tunnels opened by the node proxy (service hostnames resolved from the
// mesh's config, no DNS), and an undici Dispatcher for fetch(url, { dispatcher }). Each kept-alive
// HTTP connection is one tunnel (one HTTP/2 stream); the HBONE connections under them are the HBONE
// pool's, shared by every tunnel to the same peer.

import http from "node:http";
import https from "node:https";
import type tls from "node:tls";
import { nodeTls } from "../tls/node-tls.js";
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type { Dispatcher } from "undici";
import { asSocket } from "./socket.js";

/** Opens a tunnel to host:port (Mesh.connect). */
export type TunnelDialer = (dest: { host: string; port: number }) => Promise<Duplex>;

type Callback = (err: Error | null, socket?: Duplex) => void;

function portOf(p: unknown, dflt: number): number {
  const n = typeof p === "string" ? Number(p) : typeof p === "number" ? p : NaN;
  return Number.isInteger(n) && n > 0 ? n : dflt;
}

/** TLS from the app to the app, inside the tunnel (the tunnel's own mTLS is the proxies'). */
function tlsOver(tunnel: Duplex, o: tls.ConnectionOptions, cb: Callback): void {
  const t = nodeTls.connect({ ...o, socket: asSocket(tunnel) });
  let settled = false;
  // Stays on: a TLS socket re-emits its tunnel's errors (a reset after a refused handshake comes late).
  t.on("error", (err: Error) => {
    if (settled) return; // after the hand-over, http / undici own the socket's errors
    settled = true;
    t.destroy();
    tunnel.destroy();
    cb(err);
  });
  t.once("secureConnect", () => {
    settled = true;
    cb(null, t);
  });
}

/** Points `agent` at the mesh: the callback form of createConnection, which Agent.createSocket waits for. */
function viaMesh<A extends http.Agent>(agent: A, dial: TunnelDialer, secure: boolean): A {
  (agent as unknown as { createConnection: unknown }).createConnection = (
    opts: tls.ConnectionOptions & { host?: string; hostname?: string; port?: number | string },
    cb: Callback,
  ): undefined => {
    const host = opts.hostname ?? opts.host ?? "localhost";
    dial({ host, port: portOf(opts.port, secure ? 443 : 80) }).then(
      (t) => (secure ? tlsOver(t, { ...opts, servername: opts.servername || host }, cb) : cb(null, asSocket(t))),
      (err: Error) => cb(err),
    );
    return undefined;
  };
  return agent;
}

/** An http.Agent (keep-alive on by default) whose sockets are mesh tunnels. */
export function meshAgent(dial: TunnelDialer, options: http.AgentOptions = {}): http.Agent {
  return viaMesh(new http.Agent({ keepAlive: true, ...options }), dial, false);
}

/** An https.Agent whose TLS runs inside mesh tunnels (options: ca, servername, … as https.Agent takes). */
export function meshHttpsAgent(dial: TunnelDialer, options: https.AgentOptions = {}): https.Agent {
  return viaMesh(new https.Agent({ keepAlive: true, ...options }), dial, true);
}

// Node's fetch takes `dispatcher` (undici's RequestInit); the DOM typings fetch is declared with do not.
declare global {
  interface RequestInit {
    dispatcher?: Dispatcher;
  }
}

export interface MeshDispatcherOptions extends Record<string, unknown> {
  /** For https:// URLs: TLS options of the app's own TLS inside the tunnel (ca, …). */
  tls?: tls.ConnectionOptions;
}

const requireCjs = createRequire(import.meta.url);

/**
 * An undici Agent whose connections are mesh tunnels, for fetch(url, { dispatcher }) (Node's own
 * fetch is undici 6, as is this dependency, so the dispatcher interface matches). undici is loaded
 * on first use only.
 */
export function meshDispatcher(dial: TunnelDialer, options: MeshDispatcherOptions = {}): Dispatcher {
  const undici = requireCjs("undici") as typeof import("undici");
  const { tls: tlsOptions, ...agentOptions } = options;
  return new undici.Agent({
    ...agentOptions,
    connect: (opts: { hostname: string; port: string; protocol: string; servername?: string }, cb: Callback) => {
      const secure = opts.protocol === "https:";
      dial({ host: opts.hostname, port: portOf(opts.port, secure ? 443 : 80) }).then(
        (t) =>
          secure
            ? tlsOver(
                t,
                { ALPNProtocols: ["http/1.1"], ...tlsOptions, servername: opts.servername || opts.hostname },
                cb,
              )
            : cb(null, asSocket(t)),
        (err: Error) => cb(err),
      );
    },
  } as ConstructorParameters<typeof undici.Agent>[0]);
}
