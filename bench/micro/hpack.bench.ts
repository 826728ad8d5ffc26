// HPACK decode and encode of the nghttp2 stories of hpack-test-case, Wasm coder vs hpack.js.
// One decode op decodes every case of every story, one encode op encodes every header list,
// each story with a fresh coder so the dynamic tables follow the story.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { HpackDecoder, HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { type RunOptions, type SuiteResult, newBench, figureOf, ratioOf, repoRoot } from "../harness.js";

interface Story {
  name: string;
  wires: Buffer[];
  lists: HeaderList[];
}

/** hpack.js header objects, as its decompressor pushes and its compressor takes them. */
interface JsHeader {
  name: string;
  value: string;
  neverIndex?: boolean;
}
interface JsDecompressor {
  write(b: Buffer): void;
  execute(): void;
  read(): JsHeader | null;
}
interface JsCompressor {
  write(headers: JsHeader[]): void;
  read(): Buffer | null;
}
interface HpackJs {
  decompressor: { create(o: { table: { maxSize: number } }): JsDecompressor };
  compressor: { create(o: { table: { maxSize: number } }): JsCompressor };
}

const TABLE_SIZE = 4096;

function loadStories(): Story[] {
  // The repo's copy (gzipped JSON, as test/helpers/vectors.ts reads it); HBONE_VECTORS_DIR overrides.
  const dir = resolve(process.env.HBONE_VECTORS_DIR ?? join(repoRoot(), "test/vectors"), "hpack-test-case/nghttp2");
  if (!existsSync(dir)) throw new Error(`hpack bench: HPACK vectors not found at ${dir}`);
  const files = readdirSync(dir)
    .filter((f) => /^story_\d+\.json\.gz$/.test(f))
    .sort();
  if (files.length === 0) throw new Error(`hpack bench: no story_*.json.gz in ${dir}`);
  return files.map((f) => {
    const story = JSON.parse(gunzipSync(readFileSync(join(dir, f))).toString("utf8")) as {
      cases: { wire: string; headers: Record<string, string>[] }[];
    };
    return {
      name: f,
      wires: story.cases.map((c) => Buffer.from(c.wire, "hex")),
      lists: story.cases.map((c) =>
        c.headers.map((h): [string, string] => {
          const [name] = Object.keys(h);
          return [name, h[name]];
        }),
      ),
    };
  });
}

function jsDecode(d: JsDecompressor, wire: Buffer): HeaderList {
  d.write(wire);
  d.execute();
  const out: HeaderList = [];
  for (let h = d.read(); h; h = d.read()) out.push([h.name, h.value]);
  return out;
}

function sameList(a: HeaderList, b: HeaderList): boolean {
  return a.length === b.length && a.every(([n, v], i) => n === b[i][0] && v === b[i][1]);
}

function mustMatch(who: string, story: Story, i: number, got: HeaderList): void {
  if (!sameList(got, story.lists[i])) {
    throw new Error(
      `hpack bench: ${who} disagrees on ${story.name} case ${i}: ` +
        `got ${JSON.stringify(got)}, want ${JSON.stringify(story.lists[i])}`,
    );
  }
}

/** Before timing: both decoders give the stories' lists, and each side decodes what the other encodes. */
function sanityCheck(stories: Story[], hpackjs: HpackJs): void {
  for (const s of stories) {
    const ours = new HpackDecoder(TABLE_SIZE);
    const js = hpackjs.decompressor.create({ table: { maxSize: TABLE_SIZE } });
    s.wires.forEach((w, i) => {
      mustMatch("Wasm HpackDecoder", s, i, ours.decode(w));
      mustMatch("hpack.js decompressor", s, i, jsDecode(js, w));
    });
    ours.dispose();

    const enc = new HpackEncoder(TABLE_SIZE);
    const jsEnc = hpackjs.compressor.create({ table: { maxSize: TABLE_SIZE } });
    const ourDec = new HpackDecoder(TABLE_SIZE);
    const jsDec = hpackjs.decompressor.create({ table: { maxSize: TABLE_SIZE } });
    s.lists.forEach((list, i) => {
      mustMatch("hpack.js decoding Wasm HpackEncoder output", s, i, jsDecode(jsDec, Buffer.from(enc.encode(list))));
      jsEnc.write(list.map(([name, value]) => ({ name, value })));
      const jsBlock = jsEnc.read();
      if (!jsBlock) throw new Error(`hpack bench: hpack.js compressor produced nothing for ${s.name} case ${i}`);
      mustMatch("Wasm HpackDecoder decoding hpack.js compressor output", s, i, ourDec.decode(jsBlock));
    });
    enc.dispose();
    ourDec.dispose();
  }
}

export async function runHpackBench(opts: RunOptions): Promise<SuiteResult> {
  const stories = loadStories();
  const require = createRequire(import.meta.url);
  const hpackjs = require("hpack.js") as HpackJs;
  sanityCheck(stories, hpackjs);

  let cases = 0,
    fields = 0,
    wireBytes = 0,
    fieldBytes = 0;
  for (const s of stories) {
    cases += s.wires.length;
    for (const w of s.wires) wireBytes += w.length;
    for (const l of s.lists) {
      fields += l.length;
      for (const [n, v] of l) fieldBytes += n.length + v.length;
    }
  }
  // hpack.js takes header objects: built once, as a caller of it would hold them.
  const jsLists = stories.map((s) => s.lists.map((l) => l.map(([name, value]) => ({ name, value }))));

  const bench = newBench("hpack", opts);
  const DEC = "hpack decode: Wasm HpackDecoder",
    DEC_JS = "hpack decode: hpack.js";
  const ENC = "hpack encode: Wasm HpackEncoder",
    ENC_JS = "hpack encode: hpack.js";
  // Every op counts what it produced and checks the total, which also keeps the work observable.
  bench.add(DEC, () => {
    let n = 0;
    for (const s of stories) {
      const d = new HpackDecoder(TABLE_SIZE);
      for (const w of s.wires) n += d.decode(w).length;
      d.dispose();
    }
    if (n !== fields) throw new Error(`Wasm HpackDecoder decoded ${n} fields, want ${fields}`);
  });
  bench.add(DEC_JS, () => {
    let n = 0;
    for (const s of stories) {
      const d = hpackjs.decompressor.create({ table: { maxSize: TABLE_SIZE } });
      for (const w of s.wires) {
        d.write(w);
        d.execute();
        const out: JsHeader[] = [];
        for (let h = d.read(); h; h = d.read()) out.push(h);
        n += out.length;
      }
    }
    if (n !== fields) throw new Error(`hpack.js decoded ${n} fields, want ${fields}`);
  });
  bench.add(ENC, () => {
    let n = 0;
    for (const s of stories) {
      const e = new HpackEncoder(TABLE_SIZE);
      for (const l of s.lists) n += e.encode(l).length > 0 ? 1 : 0;
      e.dispose();
    }
    if (n !== cases) throw new Error(`Wasm HpackEncoder encoded ${n} blocks, want ${cases}`);
  });
  bench.add(ENC_JS, () => {
    let n = 0;
    for (const story of jsLists) {
      const c = hpackjs.compressor.create({ table: { maxSize: TABLE_SIZE } });
      for (const list of story) {
        c.write(list);
        n += c.read() ? 1 : 0;
      }
    }
    if (n !== cases) throw new Error(`hpack.js encoded ${n} blocks, want ${cases}`);
  });
  await bench.run();

  const wire = { bytesPerOp: wireBytes, throughputUnit: "MB/s wire" };
  const field = { bytesPerOp: fieldBytes, throughputUnit: "MB/s fields" };
  const dec = figureOf(bench.getTask(DEC)!, { ...wire, baseline: DEC_JS });
  const decJs = figureOf(bench.getTask(DEC_JS)!, wire);
  const enc = figureOf(bench.getTask(ENC)!, { ...field, baseline: ENC_JS });
  const encJs = figureOf(bench.getTask(ENC_JS)!, field);
  const decRatio = ratioOf("HPACK decode: Wasm vs hpack.js", dec, decJs);
  return {
    suite: "hpack",
    figures: [dec, decJs, enc, encJs],
    ratios: [decRatio, ratioOf("HPACK encode: Wasm vs hpack.js", enc, encJs)],
    targets: [
      { name: "Wasm HPACK decode speed vs hpack.js", value: decRatio.value, goal: 2.0, met: decRatio.value >= 2.0 },
    ],
    notes: [
      `hpack: ${stories.length} nghttp2 stories, ${cases} header blocks, ${fields} fields, ${wireBytes} wire bytes, ` +
        `${fieldBytes} name+value bytes per op; a fresh coder per story, table size ${TABLE_SIZE}.`,
    ],
  };
}
