// Admin (:15000, localhost only), readiness (:15021) and metrics (:15020) HTTP endpoints,
// as ztunnel serves them. Nothing a client sends may take the process down: a bad request
// target is a 400, a failing route a 500, and the admin answers only a localhost Host (a web
// page the operator visits cannot reach it by DNS rebinding).

import http from "node:http";
import type net from "node:net";
import { getLevel, setLevel } from "./log.js";
import { applyLoggingSpec, accessLogLevel } from "./proxy/access-log.js";
import { logger } from "./log.js";
import { listen } from "./net.js";

const log = logger("admin");

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | Promise<void>;

/** A route with the methods it answers (default GET and HEAD). */
export interface Route {
  methods: string[];
  handler: Handler;
}

export interface ServeOptions {
  /** Answer only requests whose Host is localhost, 127.0.0.1 or [::1] (with or without a port). */
  localHostOnly?: boolean;
}

export function jsonResponse(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body, null, 2) + "\n");
}

const LOCAL_HOST = /^(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/i;

/** Whether a Host header names this machine's loopback. */
export function isLocalHost(host: string | undefined): boolean {
  return host !== undefined && LOCAL_HOST.test(host);
}

/** The request target (origin-form `/path`, or absolute-form `http://host/path`) as a URL; null when malformed. */
function requestUrl(target: string | undefined): URL | null {
  if (!target) return null;
  try {
    return target.startsWith("/") ? new URL(target, "http://localhost") : new URL(target);
  } catch {
    return null;
  }
}

function send(res: http.ServerResponse, status: number, body: string, headers?: http.OutgoingHttpHeaders): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { "content-type": "text/plain", ...headers }).end(body);
}

async function serve(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  routes: Record<string, Handler | Route>,
  o: ServeOptions,
): Promise<void> {
  const url = requestUrl(req.url);
  if (!url) return send(res, 400, "bad request target\n");
  // An absolute-form target names the host itself (RFC 9112 §3.2.2): both must be local.
  const absolute = !req.url!.startsWith("/");
  if (o.localHostOnly && (!isLocalHost(req.headers.host) || (absolute && !isLocalHost(url.host)))) {
    return send(res, 403, "admin answers only a localhost Host\n");
  }
  const entry = routes[url.pathname];
  if (!entry) return send(res, 404, "not found\n");
  const route = typeof entry === "function" ? { methods: ["GET", "HEAD"], handler: entry } : entry;
  if (!route.methods.includes(req.method ?? "")) {
    return send(res, 405, "method not allowed\n", { allow: route.methods.join(", ") });
  }
  await route.handler(req, res, url);
}

/** An error a route throws that names its HTTP status (e.g. 503: a worker did not answer); otherwise 500. */
export class RouteError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}
function statusOf(err: unknown): number {
  return err instanceof RouteError ? err.status : 500;
}

/** A small HTTP server with exact-path routes; `host` binds it (127.0.0.1 for admin). */
export async function serveHttp(
  host: string,
  port: number,
  routes: Record<string, Handler | Route>,
  o: ServeOptions = {},
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    res.on("error", (e) => log.debug("admin response error", { error: e }));
    serve(req, res, routes, o).catch((err: unknown) => {
      log.warn("admin route failed", { path: req.url?.slice(0, 200), error: err as Error });
      send(res, statusOf(err), `${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  // Node answers malformed requests (clientError) with a 400 itself; a socket error is the client's.
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });
  await listen(server, { host, port });
  server.on("error", (e) => log.warn("admin server error", { error: e }));
  return server;
}

/** Applies a ztunnel logging spec to this process (its global level and the access log's); throws on a bad one,
 *  having changed nothing. */
export function applyLogging(spec: string): void {
  const bare = applyLoggingSpec(spec);
  if (bare) setLevel(bare);
}

/**
 * GET /logging shows the levels; POST /logging?level=SPEC changes them at run time. SPEC is ztunnel's: a bare
 * level (`debug`), or a list with `access:LEVEL` for the access log (`access:off,info`); a bad spec changes nothing.
 * `applied` hears every spec that took (a --workers primary passes it on to its workers).
 */
export function loggingRoute(applied?: (spec: string) => void | Promise<void>): Route {
  return {
    methods: ["GET", "POST"],
    handler: async (req, res, url) => {
      const spec = url.searchParams.get("level");
      if (req.method === "POST" && spec) {
        try {
          applyLogging(spec);
        } catch (err) {
          jsonResponse(res, 400, { error: (err as Error).message });
          return;
        }
        await applied?.(spec);
      }
      // The access level is shown when asked about (GET, or a spec naming it).
      const showAccess = req.method !== "POST" || (spec ?? "").includes("access");
      jsonResponse(res, 200, showAccess ? { level: getLevel(), access: accessLogLevel() } : { level: getLevel() });
    },
  };
}

/** What :15020 serves: Prometheus text (one proxy's, or a --workers primary's sum of its workers'), in pieces. */
export interface MetricsText {
  readonly contentType: string;
  chunks(): Promise<string[]>;
}

export interface StatusServersOptions {
  /** Where metrics and readiness listen (admin stays on 127.0.0.1). */
  statusAddress: string;
  ports: { admin: number | false; metrics: number | false; readiness: number | false };
  metrics: MetricsText;
  ready: () => boolean | Promise<boolean>;
  configDump: () => unknown;
  /** POST /quitquitquit: drain, then exit. */
  quit: () => void;
  /** Hears each logging spec POST /logging applied here; a RouteError it throws is the response. */
  loggingApplied?: (spec: string) => void | Promise<void>;
  /** Bounds on :15020's responses (default SCRAPE_LIMITS). */
  scrapeLimits?: ScrapeLimits;
}

/**
 * Scrapes answered at once (more get a 503 at once), and how long one may stall before it is dropped. At the series
 * cap a response is ~40 MB, held until the client reads it: clients that ask and never read must not add up to the
 * proxy's memory. Prometheus asks once per interval and reads at once.
 */
export interface ScrapeLimits {
  inFlight: number;
  stallMs: number;
}
export const SCRAPE_LIMITS: ScrapeLimits = { inFlight: 4, stallMs: 30_000 };

export interface StatusServers {
  servers: http.Server[];
  admin?: net.AddressInfo;
  metrics?: net.AddressInfo;
  readiness?: net.AddressInfo;
}

/** The proxy's HTTP endpoints: :15020 metrics, :15021 readiness, :15000 admin (config_dump, logging, quit). */
export async function startStatusServers(o: StatusServersOptions): Promise<StatusServers> {
  const out: StatusServers = { servers: [] };
  const limits = o.scrapeLimits ?? SCRAPE_LIMITS;
  let inFlight = 0;
  const metricsRoute = async (_req: unknown, res: http.ServerResponse) => {
    if (inFlight >= limits.inFlight) return send(res, 503, "too many scrapes in flight\n", { "retry-after": "1" });
    inFlight++;
    res.once("close", () => inFlight--); // answered, or its connection gone
    // No socket activity for stallMs (a client that stopped reading): drop it and what it holds.
    res.setTimeout(limits.stallMs, () => res.destroy());
    const chunks = await o.metrics.chunks();
    if (res.destroyed) return;
    res.writeHead(200, { "content-type": o.metrics.contentType });
    for (const c of chunks) res.write(c);
    res.end();
  };
  try {
    if (o.ports.metrics !== false) {
      const s = await serveHttp(o.statusAddress, o.ports.metrics, {
        "/metrics": metricsRoute,
        "/stats/prometheus": metricsRoute,
      });
      out.servers.push(s);
      out.metrics = s.address() as net.AddressInfo;
    }
    if (o.ports.readiness !== false) {
      const s = await serveHttp(o.statusAddress, o.ports.readiness, {
        "/healthz/ready": async (_req, res) => {
          const ok = await o.ready();
          res.writeHead(ok ? 200 : 503).end(ok ? "ready\n" : "not ready\n");
        },
      });
      out.servers.push(s);
      out.readiness = s.address() as net.AddressInfo;
    }
    if (o.ports.admin !== false) {
      // Localhost Host only, and the state-changing routes on POST only: a web page the operator
      // visits can neither read the config (DNS rebinding) nor stop the proxy (a GET or a form).
      const s = await serveHttp(
        "127.0.0.1",
        o.ports.admin,
        {
          "/config_dump": async (_req, res) => jsonResponse(res, 200, await o.configDump()),
          "/logging": loggingRoute(o.loggingApplied),
          "/quitquitquit": {
            methods: ["POST"],
            handler: (_req, res) => {
              res.end("OK\n");
              o.quit();
            },
          },
        },
        { localHostOnly: true },
      );
      out.servers.push(s);
      out.admin = s.address() as net.AddressInfo;
    }
  } catch (err) {
    for (const s of out.servers) s.close();
    throw err;
  }
  return out;
}
