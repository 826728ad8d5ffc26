// Admin (:15000, localhost only), readiness (:15021) and metrics (:15020) HTTP endpoints,
// as ztunnel serves them.

import http from "node:http";
import { getLevel, setLevel, type Level } from "./log.js";

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | Promise<void>;

export function jsonResponse(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body, null, 2) + "\n");
}

/** A small HTTP server with exact-path routes; `host` binds it (127.0.0.1 for admin). */
export async function serveHttp(host: string, port: number, routes: Record<string, Handler>): Promise<http.Server> {
  const server = http.createServer((req, res) => void dispatch(routes, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

/** Serves one request: its exact-path route, 404 without one, 500 with the message when the route throws. */
async function dispatch(routes: Record<string, Handler>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const route = routes[url.pathname];
  if (!route) {
    res.writeHead(404).end("not found\n");
    return;
  }
  try {
    await route(req, res, url);
  } catch (err) {
    if (!res.headersSent) res.writeHead(500);
    res.end(`${(err as Error).message}\n`);
  }
}

/** GET /logging shows the level; POST /logging?level=debug changes it at run time. */
export const loggingRoute: Handler = (req, res, url) => {
  const level = url.searchParams.get("level");
  if (req.method === "POST" && level) {
    try {
      setLevel(level as Level);
    } catch (err) {
      jsonResponse(res, 400, { error: (err as Error).message });
      return;
    }
  }
  jsonResponse(res, 200, { level: getLevel() });
};
