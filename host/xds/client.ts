// Live config from istiod: ztunnel's xDS client (src/xds/client.rs) over gRPC Delta ADS
// (envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources), wildcard subscriptions to
// istio.workload.Address and istio.security.Authorization.
//
// - Each response is all-or-nothing: every resource is decoded and converted (host/xds/convert.ts) before
//   anything changes; one bad resource NACKs the response (error_detail.message names it) and the running config
//   stays. A good response updates the held resources, goes to ProxyStateUpdater.update as one delta (the indexes
//   change in place: cost follows the delta, not the mesh), then is ACKed.
// - Reconnects back off 10 ms doubling to 15 s (reset once a stream delivers a response) and resume with
//   initial_resource_versions, so istiod sends only what changed and the names that went away.
// - `ready` resolves after the first ACK of each type; it stays resolved across reconnects (the proxy keeps
//   serving the config it holds while istiod is away).
// - Headers as ztunnel: `authorization: Bearer <token>` (token file re-read for every stream) and `clusterid`
//   (the channel and headers: host/tls/control-plane.ts, shared with the CA client).

import { EventEmitter } from "node:events";
import { status as GrpcStatus, type Metadata } from "@grpc/grpc-js";
import type { ClientDuplexStream, ServiceError, StatusObject } from "@grpc/grpc-js";
import { policyKey, type Policy } from "../model/index.js";
import { logger } from "../log.js";
import { XdsError } from "../errors.js";
import type { ProxyStateUpdater, StateDelta } from "../state/index.js";
import { controlPlaneChannel, controlPlaneMetadata, type ControlPlaneConnection } from "../tls/control-plane.js";
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  XdsConvertError,
  addressResourceName as addressKey,
  decodeAddress,
  decodeAuthorization,
  type AddressResource,
} from "./convert.js";
import type { Node } from "./gen/envoy/config/core/v3/base.js";
import { AggregatedDiscoveryServiceClient } from "./gen/envoy/service/discovery/v3/ads.js";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from "./gen/envoy/service/discovery/v3/discovery.js";

export { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL };

const log = logger("xds");

// ---------------------------------------------------------------------------------------------------------------
// The node

export interface NodeInfo {
  /** The pod's IP (INSTANCE_IP). */
  ip: string;
  /** POD_NAME. */
  podName: string;
  /** POD_NAMESPACE. */
  namespace: string;
  /** NODE_NAME. */
  nodeName?: string;
  /** CLUSTER_ID. */
  clusterId?: string;
  /** More metadata; wins over the environment's. */
  metadata?: Record<string, string>;
  /** Where ISTIO_META_* variables come from (default process.env). */
  env?: Record<string, string | undefined>;
}

/**
 * ztunnel's node: id `ztunnel~<IP>~<POD>.<NS>~<NS>.svc.cluster.local`; metadata from ISTIO_META_* variables
 * (prefix stripped), then NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME and CLUSTER_ID.
 */
export function ztunnelNode(info: NodeInfo): Node {
  const md: Record<string, string> = {};
  for (const [k, v] of Object.entries(info.env ?? process.env)) {
    if (k.startsWith("ISTIO_META_") && k.length > 11 && v !== undefined) md[k.slice(11)] = v;
  }
  md.NAME = info.podName;
  md.NAMESPACE = info.namespace;
  md.INSTANCE_IPS = info.ip;
  md.NODE_NAME = info.nodeName ?? "";
  if (info.clusterId) md.CLUSTER_ID = info.clusterId;
  Object.assign(md, info.metadata);
  return {
    id: `ztunnel~${info.ip}~${info.podName}.${info.namespace}~${info.namespace}.svc.cluster.local`,
    cluster: "",
    metadata: md,
    locality: undefined,
    userAgentName: "",
    userAgentVersionType: undefined,
    clientFeatures: [],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The client

export interface XdsClientOptions extends ControlPlaneConnection {
  /** Where converted config goes (the state's only writer). */
  updater: ProxyStateUpdater;
  /** The node sent on every stream: ztunnelNode(info) unless given as a Node. */
  node: NodeInfo | Node;
  /** Reconnect backoff: first delay (default 10 ms), doubling up to maxBackoffMs (default 15 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Largest response accepted (default 256 MiB; 50k workloads + 10k services take about 15 MB). */
  maxMessageBytes?: number;
  /** HTTP/2 keepalive PING interval (default 30 s; istiod refuses pings more often than every 15 s). */
  keepaliveMs?: number;
}

export interface XdsStats {
  /** Streams opened. */
  streams: number;
  responses: number;
  acks: number;
  nacks: number;
}

/** A type we subscribe to: what we hold of it and where its stream stands. */
interface TypeState {
  readonly typeUrl: string;
  /** Resource name -> version held (sent as initial_resource_versions on a new stream). */
  readonly versions: Map<string, string>;
  /** Acked at least once (ever). */
  acked: boolean;
}

type Call = ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

/**
 * A DeltaDiscoveryRequest for `typeUrl`: the first of a stream carries the node and the versions held (to
 * resume), an ACK the response's nonce, a NACK the nonce and the error; nothing else ever subscribes by name.
 */
function deltaRequest(typeUrl: string, r: Partial<DeltaDiscoveryRequest>): DeltaDiscoveryRequest {
  return {
    node: undefined,
    typeUrl,
    resourceNamesSubscribe: [],
    resourceNamesUnsubscribe: [],
    initialResourceVersions: new Map(),
    responseNonce: "",
    errorDetail: undefined,
    ...r,
  };
}

export interface XdsClient {
  on(event: "ready", listener: () => void): this;
  on(event: "connected", listener: () => void): this;
  on(event: "disconnected", listener: (reason: string, retryInMs: number) => void): this;
  on(event: "ack", listener: (typeUrl: string, nonce: string) => void): this;
  on(event: "nack", listener: (typeUrl: string, nonce: string, message: string) => void): this;
  on(event: "closed", listener: () => void): this;
  once(event: "ready", listener: () => void): this;
  once(event: "connected", listener: () => void): this;
  once(event: "disconnected", listener: (reason: string, retryInMs: number) => void): this;
  once(event: "ack", listener: (typeUrl: string, nonce: string) => void): this;
  once(event: "nack", listener: (typeUrl: string, nonce: string, message: string) => void): this;
  once(event: "closed", listener: () => void): this;
}

/**
 * Delta ADS client for istiod. Emits "connected" (stream opened), "disconnected" (reason, retryInMs), "ack"
 * (typeUrl, nonce), "nack" (typeUrl, nonce, message), "ready" (once, after the first ACK of each type) and
 * "closed".
 */
export class XdsClient extends EventEmitter {
  /** Resolves after the first ACK of each type. Never rejects: see waitReady for a deadline. */
  readonly ready: Promise<void>;
  readonly stats: XdsStats = { streams: 0, responses: 0, acks: 0, nacks: 0 };
  private resolveReady!: () => void;
  private readyDone = false;
  private readonly types: TypeState[];
  private readonly byUrl = new Map<string, TypeState>();
  /** Held resources by name, converted. */
  private readonly addresses = new Map<string, AddressResource>();
  private readonly policies = new Map<string, Policy>();
  private readonly grpc: InstanceType<typeof AggregatedDiscoveryServiceClient>;
  private readonly node: Node;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private call: Call | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private started = false;
  private closed = false;

  constructor(private readonly o: XdsClientOptions) {
    super();
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
    this.types = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL].map((typeUrl) => ({
      typeUrl,
      versions: new Map(),
      acked: false,
    }));
    for (const t of this.types) this.byUrl.set(t.typeUrl, t);
    this.node = "podName" in o.node ? ztunnelNode(o.node) : o.node;
    this.initialBackoffMs = o.initialBackoffMs ?? 10;
    this.maxBackoffMs = o.maxBackoffMs ?? 15_000;
    const keepalive = o.keepaliveMs ?? 30_000;
    const ch = controlPlaneChannel(o, {
      "grpc.max_receive_message_length": o.maxMessageBytes ?? 256 * 1024 * 1024,
      "grpc.max_send_message_length": -1,
      // The channel's own reconnect backoff, kept in step with ours (grpc-js defaults to 1 s .. 120 s).
      "grpc.initial_reconnect_backoff_ms": this.initialBackoffMs,
      "grpc.max_reconnect_backoff_ms": this.maxBackoffMs,
      "grpc.keepalive_time_ms": keepalive,
      "grpc.keepalive_timeout_ms": 10_000,
    });
    this.grpc = new AggregatedDiscoveryServiceClient(ch.target, ch.credentials, ch.options);
  }

  get isReady(): boolean {
    return this.readyDone;
  }

  /** Opens the stream (once); reconnects on its own until close(). */
  start(): this {
    if (this.started || this.closed) return this;
    this.started = true;
    void this.connect();
    return this;
  }

  /** Resolves when ready; rejects after timeoutMs or when the client is closed first. */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.readyDone) return Promise.resolve();
    if (this.closed) return Promise.reject(new XdsError("xDS client closed before it was ready", "HBONE_XDS_CLOSED"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("closed", onClosed);
        const missing = this.types.filter((t) => !t.acked).map((t) => t.typeUrl.split("/").pop());
        reject(
          new XdsError(
            `xDS from ${this.o.address} not ready after ${timeoutMs} ms (no ACK yet for ${missing.join(", ")})`,
            "HBONE_XDS_NOT_READY",
          ),
        );
      }, timeoutMs);
      const onClosed = () => {
        clearTimeout(timer);
        reject(new XdsError("xDS client closed before it was ready", "HBONE_XDS_CLOSED"));
      };
      this.once("closed", onClosed);
      void this.ready.then(() => {
        clearTimeout(timer);
        this.off("closed", onClosed);
        resolve();
      });
    });
  }

  /** The resource names and versions held for a type (what the next stream announces). */
  versions(typeUrl: string): ReadonlyMap<string, string> {
    return this.byUrl.get(typeUrl)?.versions ?? new Map();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.grpc.close();
    this.emit("closed");
  }

  // -------------------------------------------------------------------------------------------------------------

  private async connect(): Promise<void> {
    this.timer = undefined;
    if (this.closed) return;
    let md: Metadata;
    try {
      md = await controlPlaneMetadata(this.o);
    } catch (e) {
      this.retry((e as Error).message);
      return;
    }
    if (this.closed) return;
    const call = this.grpc.deltaAggregatedResources(md);
    this.call = call;
    this.stats.streams++;
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      if (this.call !== call) return;
      this.call = undefined;
      call.cancel();
      this.retry(reason);
    };
    call.on("data", (resp: DeltaDiscoveryResponse) => {
      if (this.call !== call) return;
      try {
        this.onResponse(call, resp);
      } catch (e) {
        // A bug here must not take the process down; the stream starts over.
        log.error("xDS response handling failed", { error: e as Error });
        end(`internal error: ${(e as Error).message}`);
      }
    });
    // 'error' comes with every non-OK status; 'status' always ends the call.
    call.on("error", (e: ServiceError) => end(`${GrpcStatus[e.code] ?? e.code}: ${e.details || e.message}`));
    call.on("status", (s: StatusObject) =>
      end(s.code === GrpcStatus.OK ? "stream closed by the server" : `${GrpcStatus[s.code] ?? s.code}: ${s.details}`),
    );
    call.on("end", () => end("stream closed by the server"));
    for (const t of this.types) {
      // Wildcard: an empty subscription list on a type's first request.
      call.write(deltaRequest(t.typeUrl, { node: this.node, initialResourceVersions: new Map(t.versions) }));
    }
    log.info("xDS stream opened", {
      address: this.o.address,
      resuming: this.types.reduce((n, t) => n + t.versions.size, 0),
    });
    this.emit("connected");
  }

  private retry(reason: string): void {
    if (this.closed) return;
    const delay = Math.min(this.initialBackoffMs * 2 ** this.failures, this.maxBackoffMs);
    this.failures = Math.min(this.failures + 1, 30);
    log.warn("xDS stream ended; reconnecting", { address: this.o.address, reason, retryInMs: delay });
    this.emit("disconnected", reason, delay);
    this.timer = setTimeout(() => void this.connect(), delay);
    this.timer.unref();
  }

  private onResponse(call: Call, resp: DeltaDiscoveryResponse): void {
    this.stats.responses++;
    // A stream that delivers is a good stream: the next drop starts the backoff over.
    this.failures = 0;
    const t = this.byUrl.get(resp.typeUrl);
    if (!t) {
      this.nack(call, resp.typeUrl, resp.nonce, `unsupported type ${JSON.stringify(resp.typeUrl)}`);
      return;
    }
    const err = t.typeUrl === ADDRESS_TYPE_URL ? this.applyAddresses(t, resp) : this.applyPolicies(t, resp);
    if (err) {
      this.nack(call, t.typeUrl, resp.nonce, err);
      return;
    }
    call.write(deltaRequest(t.typeUrl, { responseNonce: resp.nonce }));
    this.stats.acks++;
    this.emit("ack", t.typeUrl, resp.nonce);
    if (!t.acked) {
      t.acked = true;
      if (!this.readyDone && this.types.every((x) => x.acked)) {
        this.readyDone = true;
        log.info("xDS ready", { address: this.o.address, ...this.counts() });
        this.resolveReady();
        this.emit("ready");
      }
    }
  }

  private nack(call: Call, typeUrl: string, nonce: string, message: string): void {
    log.warn("xDS response rejected (NACK); keeping the running config", { typeUrl, nonce, error: message });
    call.write(
      deltaRequest(typeUrl, {
        responseNonce: nonce,
        errorDetail: { code: GrpcStatus.INVALID_ARGUMENT, message, details: [] },
      }),
    );
    this.stats.nacks++;
    this.emit("nack", typeUrl, nonce, message);
  }

  /** Converts every resource first; changes nothing and returns the error message if any fails. */
  private applyAddresses(t: TypeState, resp: DeltaDiscoveryResponse): string | undefined {
    const delta: Required<Pick<StateDelta, "workloads" | "services" | "removeWorkloads" | "removeServices">> = {
      workloads: [],
      services: [],
      removeWorkloads: [],
      removeServices: [],
    };
    const failed = this.applyResources(t, resp, decodeAddress, this.addresses, {
      // A name that now holds a different key (or kind) gives its old key up first.
      drop: (old, now) => {
        if (!old || (now && now.kind === old.kind && addressKey(now) === addressKey(old))) return;
        if (old.kind === "workload") delta.removeWorkloads.push(old.workload.uid);
        else delta.removeServices.push(addressKey(old));
      },
      add: (now) => {
        if (now.kind === "workload") delta.workloads.push(now.workload);
        else delta.services.push(now.service);
      },
    });
    if (failed !== undefined) return failed;
    this.o.updater.update(delta);
    return undefined;
  }

  private applyPolicies(t: TypeState, resp: DeltaDiscoveryResponse): string | undefined {
    const delta: Required<Pick<StateDelta, "policies" | "removePolicies">> = { policies: [], removePolicies: [] };
    const failed = this.applyResources(t, resp, decodeAuthorization, this.policies, {
      drop: (old, now) => {
        if (old && (!now || policyKey(now) !== policyKey(old))) delta.removePolicies.push(policyKey(old));
      },
      add: (now) => delta.policies.push(now),
    });
    if (failed !== undefined) return failed;
    this.o.updater.update(delta);
    return undefined;
  }

  /**
   * One response applied to `held` (resource name -> what it holds) and the type's versions: every resource is
   * converted first (nothing changes, and the NACK message is returned, if any fails); then each removed name
   * and each name that now holds something else gives its old value up (`drop`), and each new value is `add`ed.
   */
  private applyResources<T>(
    t: TypeState,
    resp: DeltaDiscoveryResponse,
    decode: (b: Uint8Array) => T,
    held: Map<string, T>,
    o: { drop(old: T | undefined, now?: T): void; add(now: T): void },
  ): string | undefined {
    const staged = this.convertAll(resp, decode);
    if (typeof staged === "string") return staged;
    for (const name of resp.removedResources) {
      o.drop(held.get(name));
      held.delete(name);
      t.versions.delete(name);
    }
    for (let i = 0; i < staged.length; i++) {
      const r = resp.resources[i]!;
      const now = staged[i]!;
      o.drop(held.get(r.name), now);
      o.add(now);
      held.set(r.name, now);
      t.versions.set(r.name, r.version);
    }
    return undefined;
  }

  /** All resources converted, in order, or the NACK message (the first few errors, each naming its resource). */
  private convertAll<T>(resp: DeltaDiscoveryResponse, decode: (b: Uint8Array) => T): T[] | string {
    const out = new Array<T>(resp.resources.length);
    const errors: string[] = [];
    let failed = 0;
    const short = resp.typeUrl.slice(resp.typeUrl.lastIndexOf(".") + 1);
    for (let i = 0; i < resp.resources.length; i++) {
      const r = resp.resources[i]!;
      let reason: string | undefined;
      if (r.name === "") reason = "resource without a name";
      else if (!r.resource) reason = "no resource body";
      else if (r.resource.typeUrl !== resp.typeUrl) reason = `body of type ${r.resource.typeUrl}, not ${resp.typeUrl}`;
      else {
        try {
          out[i] = decode(r.resource.value);
        } catch (e) {
          if (!(e instanceof XdsConvertError)) throw e;
          reason = e.message;
        }
      }
      if (reason !== undefined) {
        failed++;
        if (errors.length < 5) errors.push(`${short} ${JSON.stringify(r.name)}: ${reason}`);
      }
    }
    if (failed === 0) return out;
    return errors.join("; ") + (failed > errors.length ? `; and ${failed - errors.length} more` : "");
  }

  private counts(): Record<string, number> {
    let workloads = 0;
    for (const r of this.addresses.values()) if (r.kind === "workload") workloads++;
    return { workloads, services: this.addresses.size - workloads, policies: this.policies.size };
  }
}
