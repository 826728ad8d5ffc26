// `hbone certs`: writes an Istio plug-in CA directory (what `kubectl create secret generic cacerts` takes).

import { parseArgs } from "node:util";
import { join } from "node:path";
import { createPluginCa } from "./ca.js";

const USAGE = `usage: hbone certs --out DIR --trust-domain TD [--cluster NAME] [--root DIR]
  --out DIR           directory to write (created if missing; existing CA files are never replaced)
  --trust-domain TD   trust domain the intermediate issues for, e.g. cluster.local
  --cluster NAME      cluster name, recorded in the intermediate's subject
  --root DIR          reuse root-cert.pem + root-key.pem from DIR so clusters share trust
                      (without it a new root is created and its key written to --out)
`;

export async function certsCommand(args: string[]): Promise<number> {
  let values: { out?: string; "trust-domain"?: string; cluster?: string; root?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        out: { type: "string" },
        "trust-domain": { type: "string" },
        cluster: { type: "string" },
        root: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`hbone certs: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const missing = (["out", "trust-domain"] as const).filter((k) => !values[k]).map((k) => `--${k}`);
  if (missing.length) {
    process.stderr.write(`hbone certs: missing ${missing.join(" and ")}\n${USAGE}`);
    return 2;
  }
  const outDir = values.out!;
  try {
    await createPluginCa({
      outDir,
      trustDomain: values["trust-domain"]!,
      cluster: values.cluster,
      rootDir: values.root,
    });
  } catch (err) {
    process.stderr.write(`hbone certs: ${(err as Error).message}\n`);
    return 1;
  }
  const written = [
    ...(values.root ? [] : ["root-key.pem"]),
    "root-cert.pem",
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
  ];
  for (const f of written) process.stdout.write(`wrote ${join(outDir, f)}\n`);
  process.stdout.write(
    `plug-in CA for trust domain ${values["trust-domain"]}${values.cluster ? `, cluster ${values.cluster}` : ""}` +
      (values.root ? `, root from ${values.root}\n` : "\n"),
  );
  return 0;
}
