// SPIFFE identities: parsing and formatting, and the SAN checks of host/tls/verify.ts on real certificates
// (built by openssl, so the tricky SANs come from an independent encoder and Node's own SAN printer).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { Identity, IdentityError } from "../../host/identity/identity.js";
import { peerIdentities, verifyClientTrustDomain, verifyServerIdentity } from "../../host/tls/verify.js";
import { OPENSSL, requireSystem } from "../helpers/system.js";

describe("Identity", () => {
  it("parses and formats spiffe://td/ns/N/sa/S", () => {
    const id = Identity.parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage");
    expect([id.trustDomain, id.namespace, id.serviceAccount]).toEqual([
      "cluster.local",
      "default",
      "bookinfo-productpage",
    ]);
    expect(id.toString()).toBe("spiffe://cluster.local/ns/default/sa/bookinfo-productpage");
    expect(String(new Identity("td.example_1-x", "ns.a", "Sa_1"))).toBe("spiffe://td.example_1-x/ns/ns.a/sa/Sa_1");
    expect(Identity.parse(id.toString()).equals(id)).toBe(true);
  });

  it("defaults an empty trust domain to cluster.local and an empty service account to default", () => {
    const id = new Identity("", "ns1", "");
    expect(id.toString()).toBe("spiffe://cluster.local/ns/ns1/sa/default");
    expect(id.equals(Identity.parse("spiffe://cluster.local/ns/ns1/sa/default"))).toBe(true);
  });

  it("compares all three parts", () => {
    const a = new Identity("cluster.local", "ns", "sa");
    expect(a.equals(new Identity("cluster.local", "ns", "sa"))).toBe(true);
    expect(a.equals(new Identity("other.local", "ns", "sa"))).toBe(false);
    expect(a.equals(new Identity("cluster.local", "ns2", "sa"))).toBe(false);
    expect(a.equals(new Identity("cluster.local", "ns", "sa2"))).toBe(false);
  });

  it.each([
    ["4 segments", "spiffe://cluster.local/ns/default/sa"],
    ["6 segments", "spiffe://cluster.local/ns/default/sa/x/y"],
    ["trailing slash", "spiffe://cluster.local/ns/default/sa/x/"],
    ["other scheme", "https://cluster.local/ns/default/sa/x"],
    ["upper-case scheme", "SPIFFE://cluster.local/ns/default/sa/x"],
    ["no scheme", "cluster.local/ns/default/sa/x"],
    ["swapped keywords", "spiffe://cluster.local/sa/default/ns/x"],
    ["other keyword", "spiffe://cluster.local/namespace/default/sa/x"],
    ["upper-case trust domain", "spiffe://Cluster.local/ns/default/sa/x"],
    ["trust domain with a port", "spiffe://cluster.local:8080/ns/default/sa/x"],
    ["trust domain with userinfo", "spiffe://u@cluster.local/ns/default/sa/x"],
    ["empty trust domain", "spiffe:///ns/default/sa/x"],
    ["empty namespace", "spiffe://cluster.local/ns//sa/x"],
    ["empty service account", "spiffe://cluster.local/ns/default/sa/"],
    ["dot-dot segment", "spiffe://cluster.local/ns/../sa/x"],
    ["query", "spiffe://cluster.local/ns/default/sa/x?y=1"],
    ["percent-encoding", "spiffe://cluster.local/ns/default/sa/x%41"],
    ["empty string", ""],
  ])("rejects %s", (_what, uri) => {
    expect(() => Identity.parse(uri)).toThrow(IdentityError);
    expect(Identity.tryParse(uri)).toBeUndefined();
  });

  it("rejects invalid parts in the constructor", () => {
    expect(() => new Identity("a b", "ns", "sa")).toThrow(IdentityError);
    expect(() => new Identity("td", "", "sa")).toThrow(IdentityError);
    expect(() => new Identity("td", "ns/x", "sa")).toThrow(IdentityError);
    expect(() => new Identity("x".repeat(256), "ns", "sa")).toThrow(IdentityError);
  });
});

describe.skipIf(!requireSystem(OPENSSL))("SAN checks on certificates (openssl-made)", () => {
  let dir: string;
  /** A self-signed certificate with the given subjectAltName section, as Node's TLS layer shows a peer. */
  const certWith = (name: string, altNames: string[]) => {
    const conf = join(dir, `${name}.cnf`);
    writeFileSync(
      conf,
      ["[req]", "distinguished_name = dn", "[dn]", "[ext]", "subjectAltName = @alt", "[alt]", ...altNames, ""].join(
        "\n",
      ),
    );
    const out = join(dir, `${name}.pem`);
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        join(dir, `${name}.key`),
        "-out",
        out,
        "-subj",
        "/CN=spiffe:\\/\\/cluster.local\\/ns\\/subject\\/sa\\/cn",
        "-days",
        "1",
        "-config",
        conf,
        "-extensions",
        "ext",
      ],
      { stdio: "pipe" },
    );
    return new X509Certificate(readFileSync(out)).toLegacyObject();
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hbone-san-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads URI SANs only, ignoring DNS SANs and the subject", () => {
    const cert = certWith("mixed", [
      "DNS.1 = spiffe://cluster.local/ns/dns/sa/x",
      "URI.1 = https://example.com/",
      "URI.2 = spiffe://cluster.local/ns/a/sa/one",
      "IP.1 = 10.0.0.1",
      "URI.3 = spiffe://other.local/ns/b/sa/two",
    ]);
    expect(peerIdentities(cert).map(String)).toEqual([
      "spiffe://cluster.local/ns/a/sa/one",
      "spiffe://other.local/ns/b/sa/two",
    ]);
    expect(verifyServerIdentity(cert, [Identity.parse("spiffe://other.local/ns/b/sa/two")])).toBeNull();
    expect(verifyServerIdentity(cert, [Identity.parse("spiffe://cluster.local/ns/dns/sa/x")])).toMatch(
      /not the expected/,
    );
    expect(verifyServerIdentity(cert, [Identity.parse("spiffe://cluster.local/ns/subject/sa/cn")])).toMatch(
      /not the expected/,
    );
    expect(verifyServerIdentity(cert, [])).toMatch(/no expected server identity/);
    expect(verifyClientTrustDomain(cert, "other.local").identity?.toString()).toBe("spiffe://other.local/ns/b/sa/two");
    expect(verifyClientTrustDomain(cert, "third.local").reason).toMatch(/outside trust domain third.local/);
  });

  it("cannot be fooled by a SAN value that looks like another entry", () => {
    // Node JSON-quotes (and \u-escapes) values with commas; a naive split on ", " would find a URI here.
    const cert = certWith("forged", [
      "DNS.1 = a, URI:spiffe://cluster.local/ns/evil/sa/x",
      "URI.1 = spiffe://cluster.local/ns/good/sa/y",
    ]);
    expect(cert.subjectaltname).toBe(
      'DNS:"a\\u002c URI:spiffe://cluster.local/ns/evil/sa/x", URI:spiffe://cluster.local/ns/good/sa/y',
    );
    expect(peerIdentities(cert).map(String)).toEqual(["spiffe://cluster.local/ns/good/sa/y"]);
    const dnsOnly = certWith("forged2", ["DNS.1 = a, URI:spiffe://cluster.local/ns/evil/sa/x"]);
    expect(peerIdentities(dnsOnly)).toEqual([]);
    expect(verifyClientTrustDomain(dnsOnly, "cluster.local").reason).toMatch(/no SPIFFE URI SAN/);
  });

  it("reports a missing certificate", () => {
    // What getPeerCertificate() returns when the peer sent none.
    const none = {} as PeerCertificate;
    expect(verifyServerIdentity(none, [new Identity("", "a", "b")])).toMatch(/no certificate/);
    expect(verifyClientTrustDomain(none, "cluster.local").reason).toMatch(/no certificate/);
  });
});
