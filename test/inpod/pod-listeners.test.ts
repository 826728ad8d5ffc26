// One pod's listener set inside its namespace: the ports, mark and SO_REUSEPORT; a failed bind retried until it
// succeeds; two sets overlapping on the same ports (a proxy restart); the DNS hook started and closed with the
// pod; close() during a retry and twice; an unusable namespace refused. Root + iproute2 + nftables (gated).

import fs from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, requireNetns, type Netns } from "../helpers/netns.js";
import { PodListeners, outboundDestination } from "../../host/inpod/pod-listeners.js";
import { adoptServer, createListenSocketIn, dialFrom, getReusePort, openNetns } from "../../host/sys/index.js";
import { setSink, type LogRecord } from "../../host/log.js";

const NETNS = requireNetns();

function reply(text: string) {
  return (sock: net.Socket) => void sock.end(`${text}\n`);
}

async function ask(nsFd: number, host: string, port: number): Promise<string> {
  const s = dialFrom(nsFd, host, port);
  return new Promise((resolve) => {
    let buf = "";
    s.setTimeout(5000, () => s.destroy(new Error("ETIMEDOUT")));
    s.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.on("data", (d: Buffer) => (buf += d.toString()));
    s.on("end", () => resolve(buf.trim()));
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!NETNS)("per-pod listener set", () => {
  let ns: Netns;
  let nsFd: number;
  const logs: LogRecord[] = [];
  let restore: () => void;

  beforeAll(() => {
    ns = createNetns("pl");
    ns.addVeth(["10.79.0.1/24", "fd00:79::1/64"]);
    ns.nft(`table inet hbtest {
      chain out {
        type nat hook output priority -100;
        meta mark != 0x539 ip daddr 10.79.0.50 tcp dport 80 redirect to :15001
        meta mark != 0x539 ip6 daddr fd00:79::50 tcp dport 80 redirect to :15001
      }
    }`);
    nsFd = openNetns(ns.name);
    restore = setSink((r) => logs.push(r));
  });
  afterAll(() => {
    restore?.();
    if (nsFd !== undefined) fs.closeSync(nsFd);
    ns?.del();
  });

  it("opens 15001/15006/15008 marked and SO_REUSEPORT; 15001 sees captured destinations (IPv4 and IPv6)", async () => {
    const outbound = (sock: net.Socket) => {
      const d = outboundDestination(sock);
      sock.end(`${d.family} ${d.address} ${d.port} ${d.via}\n`);
    };
    const p = await PodListeners.open({
      pod: "default/a",
      netnsFd: nsFd,
      handlers: { outbound, "inbound-plaintext": reply("in"), hbone: reply("hbone") },
    });
    try {
      expect(p.complete).toBe(true);
      expect(p.status().map((s) => [s.kind, s.port, s.mark, s.address?.address])).toEqual([
        ["outbound", 15001, 0x539, "::"],
        ["inbound-plaintext", 15006, 0x539, "::"],
        ["hbone", 15008, 0x539, "::"],
      ]);
      expect(await ask(nsFd, "10.79.0.50", 80)).toBe("4 10.79.0.50 80 SO_ORIGINAL_DST");
      expect(await ask(nsFd, "fd00:79::50", 80)).toBe("6 fd00:79::50 80 IP6T_SO_ORIGINAL_DST");
      expect(await ask(nsFd, "10.79.0.1", 15006)).toBe("in");
      expect(await ask(nsFd, "::1", 15008)).toBe("hbone");
    } finally {
      await p.close();
      await p.close(); // idempotent
    }
    expect(await ask(nsFd, "10.79.0.1", 15008)).toBe("ECONNREFUSED");
  });

  it("a second set on the same ports (restart overlap) binds thanks to SO_REUSEPORT", async () => {
    const p1 = await PodListeners.open({ pod: "old", netnsFd: nsFd, handlers: { hbone: reply("old") } });
    const p2 = await PodListeners.open({ pod: "new", netnsFd: nsFd, handlers: { hbone: reply("new") } });
    try {
      expect(p2.complete).toBe(true);
      await p1.close();
      // With the old set gone, every connection reaches the new one.
      for (let i = 0; i < 5; i++) expect(await ask(nsFd, "127.0.0.1", 15008)).toBe("new");
    } finally {
      await p1.close();
      await p2.close();
    }
  });

  it("a bind refused (port held without SO_REUSEPORT) is reported and retried until it succeeds", async () => {
    const holder = createListenSocketIn(nsFd, { host: "::", port: 15008 });
    expect(getReusePort(holder.fd)).toBe(false);
    const held = await adoptServer(net.createServer(reply("squatter")), holder.fd);
    held.on("error", () => undefined);
    logs.length = 0;
    const p = await PodListeners.open({
      pod: "default/r",
      netnsFd: nsFd,
      retryMs: 100,
      handlers: { outbound: reply("o"), hbone: reply("h") },
    });
    try {
      expect(p.complete).toBe(false);
      const hb = p.status().find((s) => s.kind === "hbone")!;
      expect(hb.error).toMatch(/bind\(\[::\]:15008\): EADDRINUSE — the address is already in use/);
      expect(logs.some((r) => r.msg === "pod listener bind failed, retrying" && r.kind === "hbone")).toBe(true);
      expect(await ask(nsFd, "127.0.0.1", 15001)).toBe("o"); // the others serve meanwhile
      await new Promise<void>((r) => held.close(() => r()));
      await until(() => p.complete, "the retried bind");
      expect(await ask(nsFd, "127.0.0.1", 15008)).toBe("h");
      expect(p.status().find((s) => s.kind === "hbone")!.error).toBeUndefined();
    } finally {
      await p.close();
    }
  });

  it("close() while a bind is being retried stops the retries", async () => {
    const holder = createListenSocketIn(nsFd, { host: "::", port: 15006 });
    const p = await PodListeners.open({
      pod: "default/c",
      netnsFd: nsFd,
      retryMs: 50,
      handlers: { "inbound-plaintext": reply("x") },
    });
    expect(p.complete).toBe(false);
    await p.close();
    fs.closeSync(holder.fd);
    await new Promise((r) => setTimeout(r, 200));
    expect(p.complete).toBe(false);
    expect(await ask(nsFd, "127.0.0.1", 15006)).toBe("ECONNREFUSED");
  });

  it("the DNS hook runs with the pod's netns fd and is closed with the pod", async () => {
    let closed = 0;
    let gotFd = -1;
    const p = await PodListeners.open({
      pod: "default/d",
      netnsFd: nsFd,
      handlers: {},
      extras: (fd) => {
        gotFd = fd;
        return { close: () => void closed++ };
      },
    });
    expect(gotFd).toBe(nsFd);
    await p.close();
    await p.close();
    expect(closed).toBe(1);
  });

  it("a namespace that cannot be entered rejects open() with the reason", async () => {
    const notNs = fs.openSync("/dev/null", "r");
    try {
      await expect(PodListeners.open({ pod: "x", netnsFd: notNs, handlers: { hbone: reply("h") } })).rejects.toThrow(
        /setns\(\d+, CLONE_NEWNET\): EINVAL — the descriptor is not a network namespace/,
      );
    } finally {
      fs.closeSync(notNs);
    }
  });

  it("a handler that throws loses only its connection", async () => {
    const p = await PodListeners.open({
      pod: "default/t",
      netnsFd: nsFd,
      handlers: {
        hbone: () => {
          throw new Error("boom");
        },
        outbound: reply("still here"),
      },
    });
    try {
      expect(await ask(nsFd, "127.0.0.1", 15008)).toBe("");
      expect(await ask(nsFd, "127.0.0.1", 15001)).toBe("still here");
    } finally {
      await p.close();
    }
  });
});
