// An independent HTTP/2 + TLS client (Python hyper-h2 over Python's ssl, i.e. OpenSSL) opens
// HBONE tunnels through our node proxy, with certificates from a CA directory made by the
// `openssl` command line, not by this project.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { meshFixture, type MeshFixture } from "../helpers/mesh.js";
import type { Mesh } from "../../host/app.js";
import { runH2Peer } from "../helpers/python.js";
import { OPENSSL, PYTHON3_H2, requireSystem } from "../helpers/system.js";

const HAVE = requireSystem(PYTHON3_H2, OPENSSL);

let fx: MeshFixture;
let b: Mesh;
let dir: string;

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { stdio: "pipe" });
}

beforeAll(async () => {
  if (!HAVE) return;
  fx = await meshFixture();
  dir = join(fx.dir, "openssl-ca");
  execFileSync("mkdir", ["-p", dir]);
  const f = (n: string) => join(dir, n);
  // Root (RSA, PKCS#8 key) -> intermediate (EC P-256, SEC1 key) -> Python's leaf (EC, URI SAN only).
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    f("root-key.pem"),
    "-out",
    f("root-cert.pem"),
    "-days",
    "2",
    "-subj",
    "/O=openssl-made root",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca-key.pem"));
  openssl("req", "-new", "-key", f("ca-key.pem"), "-out", f("ca.csr"), "-subj", "/O=openssl-made intermediate");
  writeFileSync(f("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  openssl(
    "x509",
    "-req",
    "-in",
    f("ca.csr"),
    "-CA",
    f("root-cert.pem"),
    "-CAkey",
    f("root-key.pem"),
    "-CAcreateserial",
    "-out",
    f("ca-cert.pem"),
    "-days",
    "2",
    "-extfile",
    f("ca.ext"),
  );
  writeFileSync(f("cert-chain.pem"), readFileSync(f("ca-cert.pem"), "utf8") + readFileSync(f("root-cert.pem"), "utf8"));
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("py-key.pem"));
  openssl("req", "-new", "-key", f("py-key.pem"), "-out", f("py.csr"), "-subj", "/");
  writeFileSync(
    f("py.ext"),
    "subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/python\n" +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl(
    "x509",
    "-req",
    "-in",
    f("py.csr"),
    "-CA",
    f("ca-cert.pem"),
    "-CAkey",
    f("ca-key.pem"),
    "-CAcreateserial",
    "-out",
    f("py-leaf.pem"),
    "-days",
    "1",
    "-extfile",
    f("py.ext"),
  );
  writeFileSync(f("py-chain.pem"), readFileSync(f("py-leaf.pem"), "utf8") + readFileSync(f("ca-cert.pem"), "utf8"));
  b = await fx.proxy({ workload: "default/echo/echo", caDir: dir });
}, 60_000);
afterAll(async () => fx?.close());

describe.skipIf(!HAVE)("interop: Python hyper-h2 + OpenSSL as an HBONE client", () => {
  it("opens 5 tunnels through the proxy to the echo app, byte-exact, with certificates made by openssl", async () => {
    const { code, out, err } = await runH2Peer([
      "tls-client",
      "127.0.0.3",
      String(b.addresses.inbound!.port),
      "5",
      String(256 * 1024),
      `127.0.0.3:${fx.echoPort}`,
      join(dir, "py-chain.pem"),
      join(dir, "py-key.pem"),
      join(dir, "root-cert.pem"),
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r).toMatchObject({ streams: 5, ended: 5, equal: true, bytes: 5 * 256 * 1024, status: [200], resets: {} });
    expect(r.peerSans).toEqual(["spiffe://cluster.local/ns/default/sa/echo"]);
  });

  it("gets 503 for a port the workload does not serve and 400 for a bad authority", async () => {
    for (const [authority, status] of [
      ["127.0.0.3:4444", 503],
      ["echo:9000", 400],
    ] as const) {
      const { out } = await runH2Peer([
        "tls-client",
        "127.0.0.3",
        String(b.addresses.inbound!.port),
        "1",
        "10",
        authority,
        join(dir, "py-chain.pem"),
        join(dir, "py-key.pem"),
        join(dir, "root-cert.pem"),
      ]);
      expect(JSON.parse(out).status).toEqual([status]);
    }
  });
});
