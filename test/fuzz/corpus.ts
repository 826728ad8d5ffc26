// Seed inputs for the mutation fuzzers: valid frames and header blocks built here, plus the independent test
// vectors when they are present (test/vectors, or HBONE_VECTORS_DIR, or the shared vectors folder the tests use).
// Fuzzing works without the vectors (the built-in seeds cover every frame type); `corpusInfo` says which were used.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as abi from "../../assembly/abi.js";
import { frame, settingsPayload, u32 } from "../helpers/frames.js";

/** The repository root: the nearest folder above this file with a package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, "package.json")) && dirname(d) !== d) d = dirname(d);
  return d;
}

function vectorsRoot(): string | undefined {
  const root = repoRoot();
  const candidates = [
    join(root, "test", "vectors"),
    process.env.HBONE_VECTORS_DIR,
    join(root, "..", "shared", "vectors"),
  ];
  return candidates.find((d): d is string => d !== undefined && existsSync(join(d, "http2-frame-test-case")));
}

function jsonFilesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...jsonFilesUnder(p));
    else if (e.endsWith(".json")) out.push(p);
  }
  return out;
}

const PRIORITY = Buffer.from([0x80, 0, 0, 3, 15]);

/** One valid frame of every type (and the padded / priority variants). */
export function builtinFrames(): Buffer[] {
  const hdr = Buffer.from([0x82, 0x84, 0x86, 0x41, 0x8a, 0x08, 0x9d, 0x5c, 0x0b, 0x81, 0x70, 0xdc, 0x78, 0x0f, 0x03]);
  return [
    frame(abi.FRAME_DATA, 0, 1, Buffer.alloc(40, 0x61)),
    frame(
      abi.FRAME_DATA,
      abi.FLAG_END_STREAM | abi.FLAG_PADDED,
      1,
      Buffer.concat([Buffer.from([5]), Buffer.alloc(20, 1), Buffer.alloc(5)]),
    ),
    frame(abi.FRAME_DATA, abi.FLAG_END_STREAM, 3),
    frame(abi.FRAME_HEADERS, abi.FLAG_END_HEADERS, 1, hdr),
    frame(
      abi.FRAME_HEADERS,
      abi.FLAG_END_HEADERS | abi.FLAG_PRIORITY | abi.FLAG_PADDED,
      5,
      Buffer.concat([Buffer.from([3]), PRIORITY, hdr, Buffer.alloc(3)]),
    ),
    frame(abi.FRAME_HEADERS, 0, 7, hdr.subarray(0, 5)),
    frame(abi.FRAME_CONTINUATION, abi.FLAG_END_HEADERS, 7, hdr.subarray(5)),
    frame(abi.FRAME_PRIORITY, 0, 9, PRIORITY),
    frame(abi.FRAME_RST_STREAM, 0, 1, u32(abi.CANCEL)),
    frame(
      abi.FRAME_SETTINGS,
      0,
      0,
      settingsPayload([
        [1, 4096],
        [2, 0],
        [3, 100],
        [4, 65535],
        [5, 16384],
        [6, 8192],
      ]),
    ),
    frame(abi.FRAME_SETTINGS, abi.FLAG_ACK, 0),
    frame(abi.FRAME_PUSH_PROMISE, abi.FLAG_END_HEADERS, 1, Buffer.concat([u32(2), hdr])),
    frame(abi.FRAME_PING, 0, 0, Buffer.from("01234567")),
    frame(abi.FRAME_PING, abi.FLAG_ACK, 0, Buffer.from("76543210")),
    frame(abi.FRAME_GOAWAY, 0, 0, Buffer.concat([u32(7), u32(abi.PROTOCOL_ERROR), Buffer.from("debug")])),
    frame(abi.FRAME_WINDOW_UPDATE, 0, 0, u32(1 << 20)),
    frame(abi.FRAME_WINDOW_UPDATE, 0, 1, u32(1000)),
    frame(0xfa, 0xff, 3, Buffer.alloc(12, 7)), // unknown type: ignored
  ];
}

let frameSeeds: Buffer[] | undefined;
let hpackSeeds: Buffer[][] | undefined;
let baggageSeeds: string[] | undefined;
export const corpusInfo = { vectorsDir: undefined as string | undefined, frames: 0, hpack: 0, baggage: 0 };

/** Whole frames: the built-in ones and the wire of every http2-frame-test-case vector (valid and error cases). */
export function frameCorpus(): Buffer[] {
  if (!frameSeeds) {
    frameSeeds = builtinFrames();
    const root = vectorsRoot();
    corpusInfo.vectorsDir = root;
    if (root) {
      for (const f of jsonFilesUnder(join(root, "http2-frame-test-case"))) {
        const c = JSON.parse(readFileSync(f, "utf8")) as { wire?: string };
        if (typeof c.wire === "string") frameSeeds.push(Buffer.from(c.wire, "hex"));
      }
    }
    corpusInfo.frames = frameSeeds.length;
  }
  return frameSeeds;
}

/** Header blocks of hpack-test-case (each story's blocks in order, for a live dynamic table). */
export function hpackStories(): Buffer[][] {
  if (hpackSeeds) return hpackSeeds;
  const root = vectorsRoot();
  const stories: Buffer[][] = [];
  if (root) {
    for (const f of jsonFilesUnder(join(root, "hpack-test-case"))) {
      const s = JSON.parse(readFileSync(f, "utf8")) as { cases?: { wire?: string }[] };
      const blocks = (s.cases ?? []).flatMap((c) => (typeof c.wire === "string" ? [Buffer.from(c.wire, "hex")] : []));
      if (blocks.length) stories.push(blocks.slice(0, 40));
    }
  }
  hpackSeeds = stories;
  corpusInfo.hpack = stories.flat().length;
  return stories;
}

/** Header values of the baggage parse cases. */
export function baggageCorpus(): string[] {
  if (!baggageSeeds) {
    baggageSeeds = [
      "k8s.cluster.name=c1,k8s.namespace.name=default,k8s.deployment.name=app,service.name=app," +
        "service.version=v1,cloud.region=r1,cloud.availability_zone=z1",
      "userId=alice;p=1, serverNode=DF%2028",
      "a=b=c,,k8s.pod.name=p%zz;x",
      " key1 = value1 ; prop ; p2=v , key2=%E2%82%AC ",
    ];
    const root = vectorsRoot();
    const file = root && join(root, "baggage", "baggage-parse-cases.json");
    if (file && existsSync(file)) {
      // Every string in the file that looks like a header value.
      const walk = (v: unknown): void => {
        if (typeof v === "string") {
          if (v.length < 10000 && /[=,]/.test(v)) baggageSeeds!.push(v);
        } else if (Array.isArray(v)) v.forEach(walk);
        else if (v && typeof v === "object") Object.values(v).forEach(walk);
      };
      walk(JSON.parse(readFileSync(file, "utf8")));
    }
    corpusInfo.baggage = baggageSeeds.length;
  }
  return baggageSeeds;
}
