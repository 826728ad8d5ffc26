// node:http over the mesh: an http.Agent whose connections are HBONE tunnels opened by the node
// proxy (service hostnames resolved from the mesh's config, no DNS), and an undici Dispatcher for
// fetch(url, { dispatcher }). Each kept-alive HTTP connection is one tunnel (one HTTP/2 stream);
// the HBONE connections under them are the HBONE pool's, shared by every tunnel to the same peer.

import http from "node:http";
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type { Dispatcher } from "undici";
import { asSocket } from "./socket.js";

/** Opens a tunnel to host:port (Mesh.connect). */
export type TunnelDialer = (dest: { host: string; port: number }) => Promise<Duplex>;

function portOf(p: unknown, dflt: number): number {
  const n = typeof p === "string" ? Number(p) : typeof p === "number" ? p : NaN;
  return Number.isInteger(n) && n > 0 ? n : dflt;
}

/** An http.Agent (keep-alive on by default) whose sockets are mesh tunnels. */
export function meshAgent(dial: TunnelDialer, options: http.AgentOptions = {}): http.Agent {
  const agent = new http.Agent({ keepAlive: true, ...options });
  // The callback form: the Agent waits for it (Agent.createSocket calls oncreate when we return nothing).
  (agent as unknown as { createConnection: unknown }).createConnection = (
    opts: { host?: string; hostname?: string; port?: number | string },
    cb: (err: Error | null, socket?: Duplex) => void,
  ): undefined => {
    const host = opts.hostname ?? opts.host ?? "localhost";
    dial({ host, port: portOf(opts.port, 80) }).then((t) => cb(null, asSocket(t)), (err: Error) => cb(err));
    return undefined;
  };
  return agent;
}

// Node's fetch takes `dispatcher` (undici's RequestInit); the DOM typings fetch is declared with do not.
declare global {
  interface RequestInit {
    dispatcher?: Dispatcher;
  }
}

const requireCjs = createRequire(import.meta.url);

/**
 * An undici Agent whose connections are mesh tunnels, for fetch(url, { dispatcher }) (Node's own
 * fetch is undici 6, as is this dependency, so the dispatcher interface matches). undici is loaded
 * on first use only.
 */
export function meshDispatcher(dial: TunnelDialer, options: Record<string, unknown> = {}): Dispatcher {
  const undici = requireCjs("undici") as typeof import("undici");
  return new undici.Agent({
    ...options,
    connect: (opts: { hostname: string; port: string; protocol: string }, cb: (err: Error | null, socket: Duplex | null) => void) => {
      if (opts.protocol !== "http:") {
        cb(new Error(`mesh dispatcher: ${opts.protocol} is not carried (the tunnel is already mTLS; use http://)`), null);
        return;
      }
      dial({ host: opts.hostname, port: portOf(opts.port, 80) }).then((t) => cb(null, asSocket(t)), (err: Error) => cb(err, null));
    },
  } as ConstructorParameters<typeof undici.Agent>[0]);
}
