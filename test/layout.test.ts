// The room layering of scripts/check-imports.mjs (`npm run check:imports`): the repo has no back edge, and the
// checker does find one when a lower room imports a higher one (in a scratch tree, so the repo stays clean).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { check, importsOf, violation } from "../scripts/check-imports.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "hbone-layout-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function write(rel: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(scratch, rel)), { recursive: true });
  fs.writeFileSync(path.join(scratch, rel), text);
}

describe("import layering", () => {
  test("the repo has no back edge", () => {
    expect(check(ROOT)).toEqual([]);
  });

  test("a back edge, a sibling edge and host -> test are found; downward edges are not", () => {
    write("host/proxy/pool.ts", `import { verify } from "../tls/verify.js";\nexport const pool = verify;\n`);
    write("host/tls/verify.ts", `import type { Pool } from "../proxy/pool.js";\nexport const verify = 1;\n`);
    write("host/state/index.ts", `export { verify } from "../tls/verify.js";\n`);
    write("host/lb/balancer.ts", `const oracle = await import("../../test/lb/oracle.js");\n// import "../app.js"\n`);
    write("test/lb/oracle.ts", `import { pool } from "../../host/proxy/pool.js";\n`);
    const found = check(scratch)
      .map((b) => `${b.from} -> ${b.to}`)
      .sort();
    expect(found).toEqual([
      "host/lb/balancer.ts -> test/lb/oracle.ts",
      "host/state/index.ts -> host/tls/verify.ts",
      "host/tls/verify.ts -> host/proxy/pool.ts",
    ]);
  });

  test("rules: the brief's chains hold", () => {
    expect(violation("host/wasm/codec.ts", "assembly/abi.ts")).toBeUndefined();
    expect(violation("assembly/abi.ts", "host/wasm/codec.ts")).toMatch(/higher layer/);
    expect(violation("host/h2/session.ts", "host/proxy/pool.ts")).toMatch(/higher layer/);
    expect(violation("host/app.ts", "host/cli.ts")).toMatch(/higher layer/);
    expect(violation("host/model/index.ts", "host/state/index.ts")).toMatch(/higher layer/);
    expect(violation("host/identity/ca.ts", "host/xds/client.ts")).toMatch(/higher layer/);
    expect(violation("host/identity/istio-ca.ts", "host/tls/control-plane.ts")).toBeUndefined();
    expect(violation("host/xds/client.ts", "host/xds/gen/istio/workload/workload.ts")).toBeUndefined();
    expect(importsOf(`import "a";\nimport x from "./x.js";\n/* import "./no.js" */ export * from "../y.js";`)).toEqual([
      "./x.js",
      "../y.js",
    ]);
  });
});
