#!/usr/bin/env node
// `hbone` command line. The node proxy, gateway and certificate commands arrive with the
// issues that build them; `start` is what `npm start` runs.

import { parseArgs } from "node:util";
import { getCodec } from "./wasm/codec.js";

const USAGE = `usage: hbone <command> [options]

commands:
  start [--duration N]   run the main job on the embedded default config (N seconds, default: until Ctrl-C)
  version                print the version and the Wasm ABI
`;

async function start(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { duration: { type: "string" } }, allowPositionals: false });
  const duration = values.duration !== undefined ? Number(values.duration) : undefined;
  if (duration !== undefined && !(duration >= 0)) throw new Error(`--duration: not a number of seconds: ${values.duration}`);
  const codec = getCodec();
  console.log(`hbone-wasm: Wasm codec loaded (ABI ${codec.ex.abi_version()}).`);
  console.log("hbone-wasm: the node proxy is not yet built (issue #4); nothing to run yet.");
  if (duration) await new Promise((r) => setTimeout(r, duration * 1000));
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "start":
      await start(rest);
      return 0;
    case "version":
      console.log(`hbone-wasm ABI ${getCodec().ex.abi_version()}`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`hbone: unknown command '${cmd}'\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`hbone: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
