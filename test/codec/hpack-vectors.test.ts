// HPACK against the hpack-test-case corpus (http2jp): every wire of every story decodes to
// its header list, and every list encodes and decodes back; our output is also decoded by
// hpack.js, an independent decoder. Run on both Wasm builds.

import { describe, expect, it } from "vitest";
import { basename } from "node:path";
import { createRequire } from "node:module";
import { HpackDecoder, HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { getCodec } from "../../host/wasm/codec.js";
import { jsonFiles, readJson, hex } from "../helpers/vectors.js";

const require = createRequire(import.meta.url);
const hpackJs = require("hpack.js");

interface Story {
  cases: { seqno: number; header_table_size?: number | null; wire?: string; headers: Record<string, string>[] }[];
}

const WIRE_FOLDERS = ["nghttp2", "nghttp2-change-table-size", "swift-nio-hpack-plain-text"];
const ALL_FOLDERS = ["raw-data", ...WIRE_FOLDERS];

function listOf(c: { headers: Record<string, string>[] }): HeaderList {
  return c.headers.map((h) => Object.entries(h)[0] as [string, string]);
}

function hpackJsDecode(
  d: { write(b: Uint8Array): void; execute(): void; read(): { name: string; value: string } | null },
  block: Uint8Array,
): HeaderList {
  d.write(Buffer.from(block));
  d.execute();
  const out: HeaderList = [];
  for (let h = d.read(); h; h = d.read()) out.push([h.name, h.value]);
  return out;
}

for (const variant of ["release", "debug"] as const) {
  describe(`HPACK vectors (${variant} build)`, () => {
    const codec = getCodec(variant);

    for (const folder of WIRE_FOLDERS) {
      it(`decodes every wire of ${folder}`, () => {
        let cases = 0;
        for (const file of jsonFiles("hpack-test-case", folder)) {
          const story = readJson<Story>(file);
          const dec = new HpackDecoder(4096, codec);
          for (const c of story.cases) {
            if (typeof c.header_table_size === "number") dec.setMaxTableSize(c.header_table_size);
            const got = dec.decode(hex(c.wire!));
            expect(got, `${folder}/${basename(file)} seqno ${c.seqno}`).toEqual(listOf(c));
            cases++;
          }
          dec.dispose();
        }
        expect(cases).toBeGreaterThan(1000);
      });
    }

    for (const folder of ALL_FOLDERS) {
      it(`encodes every header list of ${folder} and decodes it back (ours and hpack.js)`, () => {
        let cases = 0;
        let wireBytes = 0,
          rawBytes = 0;
        for (const file of jsonFiles("hpack-test-case", folder)) {
          const story = readJson<Story>(file);
          const enc = new HpackEncoder(4096, codec);
          const dec = new HpackDecoder(4096, codec);
          const theirs = hpackJs.decompressor.create({ table: { maxSize: 4096 } });
          for (const c of story.cases) {
            if (typeof c.header_table_size === "number") {
              dec.setMaxTableSize(c.header_table_size);
              enc.setMaxTableSize(c.header_table_size);
            }
            const list = listOf(c);
            const block = enc.encode(list);
            expect(dec.decode(block), `${folder}/${basename(file)} seqno ${c.seqno}`).toEqual(list);
            expect(hpackJsDecode(theirs, block)).toEqual(list);
            wireBytes += block.length;
            for (const [n, v] of list) rawBytes += n.length + v.length;
            cases++;
          }
          enc.dispose();
          dec.dispose();
        }
        expect(cases).toBeGreaterThan(1000);
        // Indexing and Huffman must actually compress the corpus.
        expect(wireBytes).toBeLessThan(rawBytes * 0.5);
      });
    }
  });
}
