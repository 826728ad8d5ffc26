// Redirect mode (a host without istio-cni: a VM, bare metal, a laptop): one listener set — 15001 outbound, 15006
// inbound plaintext, 15008 HBONE, DNS 15053 — in the host's namespace or a given one, where `hbone capture rules`
// sends the traffic. Each connection goes to the local workload it belongs to: outbound by its source address,
// inbound by the address it was sent to; with a single local workload (the usual VM) that one.

import type net from "node:net";
import { PodListeners } from "../inpod/pod-listeners.js";
import { originalDestination } from "../sys/socket.js";
import { openNetns } from "../sys/netns.js";
import { closeQuietly } from "../sys/libc.js";
import type { ProxyInputs } from "../proxy/inputs.js";
import { startPodDns, type WorkloadProxy } from "./workload-proxy.js";
import { logger } from "../log.js";

const log = logger("redirect");

export interface RedirectOptions {
  /** A network namespace name or path; undefined = the proxy's own (the host's). */
  netns?: string;
  mark: number;
  /** Where the host's DNS queries are answered for (short names); default: the first local workload's. */
  namespace?: string;
}

function plain(ip: string | undefined): string {
  return ip?.startsWith("::ffff:") ? ip.slice(7) : (ip ?? "");
}

export class RedirectListeners {
  private constructor(
    private readonly listeners: PodListeners,
    private readonly netnsFd: number,
  ) {}

  /** The namespace's fd, for dialling from it (valid until close). */
  get fd(): number {
    return this.netnsFd;
  }

  static async open(
    inputs: ProxyInputs,
    o: RedirectOptions,
    locals: () => WorkloadProxy[],
  ): Promise<RedirectListeners> {
    const fd = openNetns(o.netns ?? "/proc/thread-self/ns/net");
    const byIp = (ip: string | undefined): WorkloadProxy | undefined => {
      const all = locals();
      const a = plain(ip);
      return all.find((wp) => wp.workload.workloadIps.includes(a)) ?? (all.length === 1 ? all[0] : undefined);
    };
    const none = (sock: net.Socket, why: string) => {
      log.limited.info("captured connection has no local workload", {
        reason: why,
        from: sock.remoteAddress,
        to: sock.localAddress,
      });
      sock.destroy();
    };
    try {
      const listeners = await PodListeners.open({
        pod: o.netns ?? "host",
        netnsFd: fd,
        mark: o.mark,
        handlers: {
          outbound: (sock) => {
            const wp = byIp(sock.remoteAddress);
            if (wp) wp.captured(sock);
            else none(sock, "no local workload has the source address");
          },
          "inbound-plaintext": (sock) => {
            const wp = byIp(originalDestination(sock).address);
            if (wp) wp.plaintext(sock);
            else none(sock, "no local workload has the destination address");
          },
          hbone: (sock) => {
            const wp = byIp(sock.localAddress);
            if (wp) wp.inbound.handle(sock);
            else none(sock, "no local workload has the destination address");
          },
        },
        extras: (nsFd) =>
          startPodDns(
            inputs,
            nsFd,
            { mark: o.mark },
            { namespace: o.namespace ?? locals()[0]?.workload.namespace ?? "default", network: inputs.network ?? "" },
          ),
      });
      return new RedirectListeners(listeners, fd);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  status(): ReturnType<PodListeners["status"]> {
    return this.listeners.status();
  }

  async close(): Promise<void> {
    await this.listeners.close();
    closeQuietly(this.netnsFd);
  }
}
