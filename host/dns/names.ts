// Which DNS names are the mesh's, and their addresses: a service hostname (from ProxyState: local services and
// global ones that exist only in other clusters alike) answers with its VIPs; so do its short forms relative to the
// client's namespace, as Kubernetes search domains would expand them (`name`, `name.ns`, `name.ns.svc`), and a
// hostname with a search domain appended by a resolver that tried the search list first
// (`api.example.com.ns.svc.cluster.local`). Anything else is not ours: the DNS proxy forwards it. Pure: no I/O.

import { isIP } from "node:net";
import type { Service } from "../model/index.js";
import type { ProxyState } from "../state/index.js";

export interface ClientContext {
  /** The client pod's namespace (per-pod listeners know it); short names are relative to it. */
  namespace: string;
  /** The client's network: VIPs on it are preferred when a service has VIPs on several. */
  network?: string;
}

export interface NameOptions {
  /** Kubernetes cluster domain (default cluster.local). */
  clusterDomain?: string;
}

/** A mesh name's answer: the service found and its addresses of the asked family (maybe none: NODATA). */
export interface MeshAnswer {
  /** The name as asked (lower case, no trailing dot). */
  name: string;
  service: Service;
  addresses: string[];
}

export class MeshNames {
  private readonly domain: string;

  constructor(
    private readonly state: ProxyState,
    opts: NameOptions = {},
  ) {
    this.domain = (opts.clusterDomain ?? "cluster.local").toLowerCase().replace(/\.$/, "");
  }

  /** The service `qname` names for this client, or undefined when the name is not the mesh's. */
  lookup(qname: string, client: ClientContext): Service | undefined {
    const name = qname.toLowerCase().replace(/\.$/, "");
    if (name === "" || name.length > 253) return undefined;
    for (const candidate of this.candidates(name, client.namespace)) {
      const svc = this.state.serviceByHost(candidate, client.namespace);
      if (svc && (svc.visibility !== "NAMESPACE" || svc.namespace === client.namespace) && svc.vips.length > 0)
        return svc;
    }
    return undefined;
  }

  /** A and AAAA: the service's VIPs of that family (those on the client's network when it has some). */
  resolve(qname: string, family: 4 | 6, client: ClientContext): MeshAnswer | undefined {
    const service = this.lookup(qname, client);
    if (!service) return undefined;
    const onNetwork = client.network !== undefined ? service.vips.filter((v) => v.network === client.network) : [];
    const vips = onNetwork.length > 0 ? onNetwork : service.vips;
    const addresses = [...new Set(vips.map((v) => v.address).filter((a) => isIP(a) === family))];
    return { name: qname.toLowerCase().replace(/\.$/, ""), service, addresses };
  }

  /** Names to try, most specific first. */
  private candidates(name: string, ns: string): string[] {
    const d = this.domain;
    const labels = name.split(".");
    const out = [name];
    if (labels.length === 1) out.push(`${name}.${ns}.svc.${d}`);
    else if (labels.length === 2) out.push(`${name}.svc.${d}`);
    else if (labels.length === 3 && labels[2] === "svc") out.push(`${name}.${d}`);
    // A search domain appended to a name that was already complete.
    for (const suffix of [`.${ns}.svc.${d}`, `.svc.${d}`, `.${d}`]) {
      if (name.endsWith(suffix) && name.length > suffix.length) out.push(name.slice(0, -suffix.length));
    }
    return out;
  }
}
