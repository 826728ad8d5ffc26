// The in-pod client driven by a test istio-cni agent over a real SOCK_SEQPACKET socket with real netns fds in
// SCM_RIGHTS: snapshot → listeners inside each pod's namespace → acks; del closes that pod's listeners and
// tunnels; bad adds are refused with a reason while the other pods keep working; hostile datagrams (too big, too
// many fds, garbage, keep after snapshot) get error acks and change nothing; a restarted client (and a restarted
// agent connection) gets the snapshot again. Root + iproute2 + nftables (gated).

import fs from "node:fs";
import net from "node:net";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, requireNetns, type Netns } from "../helpers/netns.js";
import { ZdsAgent } from "../helpers/zds-agent.js";
import { InpodClient, type InpodClientOptions } from "../../host/inpod/client.js";
import { PodListeners, outboundDestination, type PodListenerKind } from "../../host/inpod/pod-listeners.js";
import { dialFrom, openNetns } from "../../host/sys/index.js";
import type { WorkloadInfo } from "../../host/inpod/zds.js";
import { setSink, type LogRecord } from "../../host/log.js";

const NETNS = requireNetns();

/** The proxy side under test: pod listeners whose handlers answer "<kind> <original destination>" and close. */
function proxyHooks() {
  const pods = new Map<string, PodListeners>();
  const added: string[] = [];
  const handler = (sock: net.Socket, kind: PodListenerKind) => {
    const dst = outboundDestination(sock);
    sock.write(`${kind} ${dst.address}:${dst.port}\n`);
    // Keep the connection open (a tunnel) until the peer or del closes it.
  };
  return {
    pods,
    added,
    onAdd: async (uid: string, info: WorkloadInfo | undefined, netnsFd: number) => {
      const p = await PodListeners.open({
        pod: `${info?.namespace}/${info?.name}`,
        netnsFd,
        retryMs: 200,
        handlers: { outbound: handler, "inbound-plaintext": handler, hbone: handler },
      });
      pods.set(uid, p);
      added.push(uid);
    },
    onDel: async (uid: string) => {
      await pods.get(uid)?.close();
      pods.delete(uid);
    },
  };
}

/** Connects from inside `nsFd` to 127.0.0.1:port and reads the first line (or the error code). */
async function probe(nsFd: number, port: number): Promise<{ line?: string; error?: string; socket?: net.Socket }> {
  const s = dialFrom(nsFd, "127.0.0.1", port);
  return new Promise((resolve) => {
    let buf = "";
    s.setTimeout(5000, () => s.destroy(new Error("ETIMEDOUT")));
    s.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    s.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("\n")) resolve({ line: buf.trim(), socket: s });
    });
  });
}

function listeningPorts(ns: Netns): number[] {
  return ns
    .exec("ss", "-Hltn")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const local = l.trim().split(/\s+/)[3]; // State Recv-Q Send-Q Local:Port Peer:Port
      return Number(local.slice(local.lastIndexOf(":") + 1));
    })
    .sort((a, b) => a - b);
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!NETNS)("in-pod mode: ZDS over SOCK_SEQPACKET with netns fds", () => {
  let a: Netns;
  let b: Netns;
  let aFd: number;
  let bFd: number;
  let agent: ZdsAgent;
  const infoA: WorkloadInfo = { name: "pod-a", namespace: "default", serviceAccount: "sa-a" };
  const infoB: WorkloadInfo = { name: "pod-b", namespace: "default", serviceAccount: "sa-b" };
  const logs: LogRecord[] = [];
  let restoreLog: () => void;

  /** A client of the test agent whose pods get `hooks`' listeners; `o` replaces any of its options. */
  const clientOf = (hooks: ReturnType<typeof proxyHooks>, o: Partial<InpodClientOptions> = {}) =>
    new InpodClient({
      path: agent.path,
      onAdd: hooks.onAdd,
      onDel: hooks.onDel,
      backoffMs: { initial: 20, max: 200 },
      ...o,
    });
  /** Starts `client` and waits for its connection to the agent. */
  async function start(client: InpodClient): Promise<void> {
    const count = agent.connections;
    client.start();
    await agent.nextConnection(count);
  }

  beforeAll(() => {
    restoreLog = setSink((r) => logs.push(r));
    a = createNetns("poda");
    b = createNetns("podb");
    aFd = openNetns(a.name);
    bFd = openNetns(b.name);
    agent = ZdsAgent.listen();
  });
  afterAll(() => {
    restoreLog?.();
    agent?.close();
    for (const fd of [aFd, bFd]) if (fd !== undefined) fs.closeSync(fd);
    a?.del();
    b?.del();
  });

  it("snapshot → listeners in each pod → acks; bad adds refused, others unaffected; del closes; restart resyncs", async () => {
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    const hooks = proxyHooks();
    const client = clientOf(hooks);
    client.start();
    await agent.nextConnection(0);
    expect(client.isReady).toBe(false);

    // Snapshot: two pods, fds of their namespaces in SCM_RIGHTS.
    agent.pods.set("uid-a", { info: infoA, netns: a.path });
    agent.pods.set("uid-b", { info: infoB, netns: b.path });
    expect(await agent.sendSnapshot()).toEqual({ "uid-a": "", "uid-b": "", snapshot_sent: "" });
    await client.ready;
    expect(client.isReady).toBe(true);
    expect(client.pods().map((p) => [p.uid, p.info?.name])).toEqual([
      ["uid-a", "pod-a"],
      ["uid-b", "pod-b"],
    ]);

    // Listeners exist inside each pod's namespace (seen by ss there), marked 0x539, and answer from inside.
    expect(listeningPorts(a)).toEqual([15001, 15006, 15008]);
    expect(listeningPorts(b)).toEqual([15001, 15006, 15008]);
    for (const st of hooks.pods.get("uid-a")!.status()) expect(st.mark).toBe(0x539);
    const tunnelA = await probe(aFd, 15008);
    expect(tunnelA.line).toBe("hbone 127.0.0.1:15008");
    expect((await probe(bFd, 15001)).line).toBe("outbound 127.0.0.1:15001");
    expect((await probe(bFd, 15006)).line).toBe("inbound-plaintext 127.0.0.1:15006");

    // Bad adds: a descriptor that is not a netns, none at all, two — each refused with a reason.
    const notNs = fs.openSync("/dev/null", "r");
    try {
      expect(
        await agent.request({ payload: { $case: "add", add: { uid: "uid-c", workloadInfo: infoA } } }, [notNs]),
      ).toMatch(
        /^add "uid-c": cannot enter the pod's network namespace: setns\(\d+, CLONE_NEWNET\): EINVAL — the descriptor is not a network namespace$/,
      );
    } finally {
      fs.closeSync(notNs);
    }
    expect(await agent.request({ payload: { $case: "add", add: { uid: "uid-d", workloadInfo: infoA } } })).toBe(
      'add "uid-d": expected exactly one netns fd in SCM_RIGHTS, got 0',
    );
    // A real namespace fd but no uid.
    expect(await agent.request({ payload: { $case: "add", add: { uid: "", workloadInfo: infoA } } }, [aFd])).toBe(
      "add without a uid",
    );
    // The others still work.
    expect((await probe(aFd, 15001)).line).toBe("outbound 127.0.0.1:15001");
    expect(client.pods().map((p) => p.uid)).toEqual(["uid-a", "uid-b"]);

    // Hostile datagrams: too big (MSG_TRUNC), too many fds (MSG_CTRUNC), garbage, keep after the snapshot.
    expect(await agent.request(Buffer.alloc(4096, 0x0a))).toBe("message larger than 1024 bytes (MSG_TRUNC)");
    // (The control buffer holds one fd, padded to 8 bytes: two fit and are refused by count, three truncate.)
    const three = [fs.openSync(a.path, "r"), fs.openSync(b.path, "r"), fs.openSync(a.path, "r")];
    try {
      const add = { payload: { $case: "add", add: { uid: "uid-e", workloadInfo: infoA } } } as const;
      expect(await agent.request(add, three.slice(0, 2))).toBe(
        'add "uid-e": expected exactly one netns fd in SCM_RIGHTS, got 2',
      );
      expect(await agent.request(add, three)).toBe("ancillary data truncated (MSG_CTRUNC): more than one fd attached");
    } finally {
      three.forEach((fd) => fs.closeSync(fd));
    }
    expect(await agent.request(Buffer.from("ffffffffffff", "hex"))).toMatch(/^malformed WorkloadRequest/);
    expect(await agent.keep("uid-a")).toBe("keep is only valid before snapshot_sent");
    // Every refusal is logged with its reason.
    expect(logs.filter((r) => r.msg === "refused a CNI agent request").map((r) => r.kind)).toEqual([
      "add",
      "add",
      "add",
      "truncated",
      "add",
      "truncated",
      "invalid",
      "keep",
    ]);
    expect(client.pods().map((p) => p.uid)).toEqual(["uid-a", "uid-b"]);
    expect((await probe(bFd, 15008)).line).toBe("hbone 127.0.0.1:15008");

    // del: that pod's listeners and its open tunnel close; the other pod is untouched; del again is a no-op.
    const tunnelClosed = once(tunnelA.socket!, "close");
    expect(await agent.del("uid-a")).toBe("");
    agent.pods.delete("uid-a");
    await tunnelClosed;
    expect(listeningPorts(a)).toEqual([]);
    expect((await probe(aFd, 15008)).error).toBe("ECONNREFUSED");
    expect((await probe(bFd, 15008)).line).toBe("hbone 127.0.0.1:15008");
    expect(await agent.del("uid-a")).toBe("");

    // Live add after the snapshot.
    agent.pods.set("uid-a", { info: infoA, netns: a.path });
    expect(await agent.add("uid-a", infoA, a.path)).toBe("");
    expect((await probe(aFd, 15001)).line).toBe("outbound 127.0.0.1:15001");

    // Agent restart (connection dropped): the client reconnects, readiness drops until the new snapshot; a pod
    // re-sent with the same namespace is kept (not rebuilt), keep works before snapshot_sent, and a pod the new
    // snapshot omits is dropped.
    const addedBefore = hooks.added.length;
    agent.dropConnection();
    await agent.nextConnection(1);
    expect(client.isReady).toBe(false);
    expect(await agent.add("uid-b", infoB, b.path)).toBe(""); // same namespace: kept
    expect(hooks.added.length).toBe(addedBefore);
    expect(await agent.keep("uid-nope")).toBe('keep of an unknown workload "uid-nope"');
    expect(await agent.snapshotSent()).toBe(""); // uid-a neither re-sent nor kept: dropped
    expect(client.isReady).toBe(true);
    expect(client.pods().map((p) => p.uid)).toEqual(["uid-b"]);
    expect(listeningPorts(a)).toEqual([]);
    expect(listeningPorts(b)).toEqual([15001, 15006, 15008]);

    // Client restart: a new process-equivalent gets the whole snapshot again and serves the same pods.
    await client.close();
    expect(listeningPorts(b)).toEqual([]);
    await agent.connectionEnded().catch(() => undefined);
    const hooks2 = proxyHooks();
    const client2 = clientOf(hooks2);
    client2.start();
    await agent.nextConnection(2);
    expect(await agent.sendSnapshot()).toEqual({ "uid-a": "", "uid-b": "", snapshot_sent: "" });
    await client2.ready;
    expect(listeningPorts(a)).toEqual([15001, 15006, 15008]);
    expect(listeningPorts(b)).toEqual([15001, 15006, 15008]);
    expect((await probe(aFd, 15006)).line).toBe("inbound-plaintext 127.0.0.1:15006");
    await client2.close();
    expect(listeningPorts(a)).toEqual([]);

    // Nothing leaked: every netns fd received was closed, every listener fd too.
    await until(() => fs.readdirSync("/proc/self/fd").length <= fdsBefore, "fds back to their count before the test");
  });

  it("connects when the agent appears later (retry with backoff) and readiness waits for the snapshot", async () => {
    const late = `${agent.path}.late`;
    const hooks = proxyHooks();
    const client = clientOf(hooks, { path: late, backoffMs: { initial: 20, max: 100 } });
    const connected = once(client, "connected");
    client.start();
    await new Promise((r) => setTimeout(r, 150)); // several refused attempts (ENOENT)
    expect(client.connected).toBe(false);
    const agent2 = ZdsAgent.listen(late);
    try {
      await connected;
      await agent2.nextConnection(0);
      let ready = false;
      void client.ready.then(() => (ready = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(ready).toBe(false);
      expect(await agent2.snapshotSent()).toBe("");
      await client.ready;
    } finally {
      await client.close();
      agent2.close();
    }
  });

  it("an onAdd that fails (the pod's proxy cannot start) is the ack's error; the agent's retry then succeeds", async () => {
    let fail = true;
    const hooks = proxyHooks();
    const client = clientOf(hooks, {
      onAdd: async (uid, info, fd) => {
        if (fail) throw new Error("certificate for sa-a not available yet");
        await hooks.onAdd(uid, info, fd);
      },
    });
    try {
      await start(client);
      expect(await agent.add("uid-a", infoA, a.path)).toBe('add "uid-a": certificate for sa-a not available yet');
      expect(client.pods()).toEqual([]);
      fail = false;
      expect(await agent.add("uid-a", infoA, a.path)).toBe("");
      expect(await agent.snapshotSent()).toBe("");
      expect((await probe(aFd, 15008)).line).toBe("hbone 127.0.0.1:15008");
    } finally {
      await client.close();
    }
  });

  it("an agent that floods requests without waiting gets every ack, in order, and the client stays usable", async () => {
    const hooks = proxyHooks();
    const client = clientOf(hooks);
    try {
      await start(client);
      // 100 requests sent back to back (within one socket send buffer) (keep of unknown pods: each refused), then a real add.
      const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => agent.keep(`flood-${i}`)));
      expect(acks).toEqual(Array.from({ length: 100 }, (_, i) => `keep of an unknown workload "flood-${i}"`));
      expect(await agent.add("uid-b", infoB, b.path)).toBe("");
      expect(await agent.snapshotSent()).toBe("");
      expect((await probe(bFd, 15006)).line).toBe("inbound-plaintext 127.0.0.1:15006");
    } finally {
      await client.close();
    }
  });

  it("close() while an add is in progress waits for it, then tears that pod down (no listener or fd left)", async () => {
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    const hooks = proxyHooks();
    let entered!: () => void;
    const inAdd = new Promise<void>((r) => (entered = r));
    const client = clientOf(hooks, {
      onAdd: async (uid, info, fd) => {
        entered();
        await new Promise((r) => setTimeout(r, 200));
        await hooks.onAdd(uid, info, fd);
      },
    });
    await start(client);
    const ack = agent.add("uid-a", infoA, a.path).catch((err: Error) => err.message);
    await inAdd;
    await client.close();
    expect(await ack).toMatch(/closed the connection|dropped|replaced/); // no ack: the connection went away
    expect(hooks.pods.size).toBe(0);
    expect(listeningPorts(a)).toEqual([]);
    await until(() => fs.readdirSync("/proc/self/fd").length <= fdsBefore, "fds back to their count");
  });
});
