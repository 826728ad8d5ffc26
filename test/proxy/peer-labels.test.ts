// Per-tunnel label work done once per workload record, peer and service: the same inputs give the same shared
// object (so a tunnel costs a few map lookups, not 24 label checks and two 27-field objects), the values are those
// a fresh computation gives, nothing a caller changes leaks into the next tunnel, and what a peer chooses (its
// baggage) is remembered in a bounded table only.

import { describe, expect, it } from "vitest";
import { newService, newWorkload } from "../../host/model/index.js";
import {
  peerBaggageLabels,
  principalLabels,
  sanIdentities,
  serviceLabels,
  workloadBaggage,
  workloadIdentity,
  workloadLabels,
  workloadMeta,
} from "../../host/proxy/peer-labels.js";
import { tcpLabels } from "../../host/metrics.js";
import { decodeBaggage, encodeBaggage } from "../../host/baggage.js";

const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO = "spiffe://cluster.local/ns/echo/sa/echo";
const sleep = () =>
  newWorkload({ uid: "c1//v1/Pod/default/sleep", name: "sleep", namespace: "default", canonicalName: "sleep" });
const BAGGAGE = "k8s.deployment.name=echo,k8s.namespace.name=echo,service.name=echo,service.version=v1";

describe("peer labels", () => {
  it("one labels object per workload record and principal; a new record (a config update) gets its own", () => {
    const w = sleep();
    const a = workloadLabels(w, SLEEP);
    expect(workloadLabels(w, SLEEP)).toBe(a);
    expect(a).toMatchObject({ workload: "sleep", namespace: "default", principal: SLEEP });
    const other = workloadLabels(w, ECHO);
    expect(other).not.toBe(a);
    expect(other.principal).toBe(ECHO);
    const updated = { ...w, canonicalRevision: "v2" };
    expect(workloadLabels(updated, SLEEP)).toMatchObject({ canonicalRevision: "v2" });
    expect(workloadLabels(updated, SLEEP)).not.toBe(a);
  });

  it("our baggage is encoded once per record, in a fresh header list each call", () => {
    const w = sleep();
    const first = workloadBaggage(w);
    expect(first).toEqual([["baggage", encodeBaggage(workloadMeta(w))]]);
    first.push(["traceparent", "00-x"]); // the outbound adds its headers to the list
    const second = workloadBaggage(w);
    expect(second).not.toBe(first);
    expect(second).toEqual([["baggage", encodeBaggage(workloadMeta(w))]]);
  });

  it("a peer's baggage gives one object per header and principal, from a bounded table", () => {
    const a = peerBaggageLabels([BAGGAGE], ECHO);
    expect(a).toMatchObject({ workload: "echo", namespace: "echo", canonicalService: "echo", principal: ECHO });
    expect(a).toEqual(peerBaggageLabels(BAGGAGE, ECHO)); // one value or a list of one: the same labels
    expect(peerBaggageLabels([BAGGAGE], ECHO)).toBe(a);
    expect(peerBaggageLabels([BAGGAGE], SLEEP)).not.toBe(a); // the principal is the TLS peer's: part of the key
    expect(decodeBaggage(BAGGAGE).workloadName).toBe("echo");
    // A peer sending ever-new baggage refills the table; it never grows past its bound, so the first entry goes.
    for (let i = 0; i < 1100; i++) peerBaggageLabels([`k8s.deployment.name=w${i},k8s.namespace.name=echo`], ECHO);
    const again = peerBaggageLabels([BAGGAGE], ECHO);
    expect(again).not.toBe(a);
    expect(again).toEqual(a);
    expect(principalLabels(ECHO)).toBe(principalLabels(ECHO));
    // An oversized header is decoded each time, never kept (keys are bounded too, not only their number).
    const long = `${BAGGAGE},x=${"y".repeat(600)}`;
    expect(peerBaggageLabels([long], ECHO)).not.toBe(peerBaggageLabels([long], ECHO));
    expect(peerBaggageLabels([long], ECHO)).toEqual(a);
  });

  it("one labels object per service record; no service is one shared, frozen empty object", () => {
    const svc = newService({ name: "echo", namespace: "echo", hostname: "echo.echo.svc.cluster.local" });
    expect(serviceLabels(svc)).toBe(serviceLabels(svc));
    expect(serviceLabels(svc)).toEqual({ hostname: "echo.echo.svc.cluster.local", namespace: "echo", name: "echo" });
    expect(serviceLabels(undefined)).toBe(serviceLabels(undefined));
    expect(Object.isFrozen(serviceLabels(undefined))).toBe(true);
  });

  it("a record's identity and a service's SAN identities are made once; non-SPIFFE SANs are skipped", () => {
    const w = sleep();
    expect(String(workloadIdentity(w))).toBe("spiffe://cluster.local/ns/default/sa/default");
    expect(workloadIdentity(w)).toBe(workloadIdentity(w));
    const svc = newService({
      name: "echo",
      namespace: "echo",
      hostname: "echo.echo.svc.cluster.local",
      subjectAltNames: [ECHO, "not-a-spiffe-id", SLEEP],
    });
    const ids = sanIdentities(svc);
    expect(ids.map(String)).toEqual([ECHO, SLEEP]);
    expect(sanIdentities(svc)).toBe(ids);
    expect(sanIdentities(undefined)).toEqual([]);
  });

  it("tcpLabels: the same objects give the same labels object, with the values a fresh computation gives", () => {
    const src = workloadLabels(sleep(), SLEEP);
    const dst = peerBaggageLabels([BAGGAGE], ECHO);
    const svc = serviceLabels(newService({ name: "echo", namespace: "echo", hostname: "echo.echo.svc.cluster.local" }));
    const a = tcpLabels("source", src, dst, svc);
    expect(tcpLabels("source", src, dst, svc)).toBe(a);
    // Copies of the inputs (objects nobody shares) compute it afresh: equal values.
    const fresh = tcpLabels("source", { ...src }, { ...dst }, { ...svc });
    expect(fresh).not.toBe(a);
    expect(fresh).toEqual(a);
    expect(a).toMatchObject({
      reporter: "source",
      source_workload: "sleep",
      source_principal: SLEEP,
      destination_workload: "echo",
      destination_service: "echo.echo.svc.cluster.local",
      response_flags: "-",
      connection_security_policy: "mutual_tls",
    });
    // Every argument is part of the key.
    expect(tcpLabels("destination", src, dst, svc)).toMatchObject({ reporter: "destination" });
    expect(tcpLabels("source", src, dst, svc, "DC")).toMatchObject({ response_flags: "DC" });
    expect(tcpLabels("source", src, dst, svc, "-", false)).toMatchObject({ connection_security_policy: "unknown" });
    expect(tcpLabels("source", src, dst, svc)).toBe(a);
  });
});
