// Fuzz target: the HPACK decoder (host/h2/hpack.ts over assembly/hpack/) with a live dynamic table: one decoder
// decodes a sequence of blocks, as a connection does. Input: [params, ...blocks]; params = u16 allowed table size,
// u32 max header list size. Blocks come from our encoder (so they index the dynamic table), the hpack-test-case
// stories, random bytes and hostile shapes, then are mutated.
// Invariants: only H2Error escapes (COMPRESSION_ERROR ends the "connection"; an oversized list is PROTOCOL_ERROR and
// the table stays usable); a decoded list is within the list limit; the table within the allowed size.

import * as abi from "../../assembly/abi.js";
import { H2Error } from "../../host/errors.js";
import { HpackDecoder, HpackEncoder, STATIC_TABLE, type HeaderList } from "../../host/h2/hpack.js";
import type { Codec } from "../../host/wasm/codec.js";
import { hpackStories } from "./corpus.js";
import { Mismatch, type Target } from "./harness.js";
import { mutate, type Rng } from "./rng.js";

const NAMES = [
  ...new Set(STATIC_TABLE.slice(1).map(([n]) => n)),
  "baggage",
  "forwarded",
  "traceparent",
  "x-forwarded-network",
  "x-custom",
];

function value(rng: Rng): string {
  const n = rng.chance(0.05) ? rng.range(1000, 5000) : rng.size(60);
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.9) ? rng.range(0x20, 0x7e) : rng.int(256));
  return s;
}

function headerList(rng: Rng): HeaderList {
  return Array.from({ length: rng.range(0, 12) }, () => {
    const name = rng.chance(0.85) ? rng.pick(NAMES) : value(rng).toLowerCase() || "x";
    return [name, rng.chance(0.3) ? STATIC_TABLE[rng.range(1, 61)]![1] : value(rng)] as [string, string];
  });
}

/** Blocks that cost the decoder most per input byte, or probe its integer and length decoding. */
function hostileBlock(rng: Rng): Buffer {
  switch (rng.int(5)) {
    case 0: // a 4 KiB literal with indexing, then many 1-byte references to it
      return Buffer.concat([
        Buffer.from([0x40, 0x01, 0x78, 0x7f, 0x81, 0x1f]),
        Buffer.alloc(4000, 0x61),
        Buffer.alloc(rng.range(1, 20000), 0xbe),
      ]);
    case 1: // table size updates, in and out of order
      return Buffer.from(
        Array.from({ length: rng.range(1, 6) }, () => [0x3f, rng.int(256), rng.int(128)])
          .flat()
          .concat(rng.chance(0.5) ? [0x82] : [0x20, 0x82]),
      );
    case 2: // integer continuations that overflow
      return Buffer.concat([
        Buffer.from([rng.pick([0xff, 0x7f, 0x3f, 0x1f, 0x0f])]),
        Buffer.alloc(rng.range(1, 12), 0xff),
        Buffer.from([rng.int(128)]),
      ]);
    case 3: // a literal whose declared length is larger than the block
      return Buffer.from([0x00, 0x7f, 0xff, 0xff, 0x03, 0x61, 0x62]);
    default: // Huffman strings of random bits (EOS, bad padding)
      return Buffer.concat([Buffer.from([0x00, 0x81, 0x61, 0x80 | 20]), rng.bytes(20)]);
  }
}

export const hpackTarget: Target = {
  name: "hpack",
  memoryBound: 64 << 20,
  generate(rng) {
    const params = Buffer.alloc(6);
    params.writeUInt16BE(rng.pick([0, 256, 4096, 4096, 65535]), 0);
    params.writeUInt32BE(rng.pick([16 * 1024, 64 * 1024, 64 * 1024, 1 << 20, 100]), 2);
    const blocks: Buffer[] = [];
    const mode = rng.int(4);
    if (mode === 0) {
      const stories = hpackStories();
      if (stories.length) blocks.push(...rng.pick(stories).slice(0, rng.range(1, 40)));
    }
    if (blocks.length === 0 && mode <= 1) {
      const enc = new HpackEncoder(4096);
      try {
        for (let k = rng.range(1, 12); k > 0; k--) {
          if (rng.chance(0.1)) enc.setMaxTableSize(rng.pick([0, 100, 4096]));
          blocks.push(Buffer.from(enc.encode(headerList(rng))));
        }
      } finally {
        enc.dispose();
      }
    }
    while (blocks.length === 0 || (mode >= 2 && rng.chance(0.5))) {
      blocks.push(mode === 2 ? rng.bytes(rng.size(300)) : hostileBlock(rng));
    }
    // Mutate some blocks: the ones before stay valid, so the table is live when the bad one arrives.
    for (let k = rng.int(3); k > 0; k--) {
      const i = rng.int(blocks.length);
      blocks[i] = mutate(rng, blocks[i]!, blocks);
    }
    return [params, ...blocks];
  },
  execute(input, codec: Codec) {
    const params = input[0] ?? Buffer.alloc(6);
    const allowed = params.length >= 2 ? params.readUInt16BE(0) : 4096;
    const maxList = params.length >= 6 ? params.readUInt32BE(2) : 65536;
    const dec = new HpackDecoder(4096, codec);
    try {
      dec.setMaxTableSize(allowed);
      dec.setMaxHeaderListSize(maxList);
      for (const block of input.slice(1)) {
        let list: HeaderList;
        try {
          list = dec.decodeFull(block).headers;
        } catch (e) {
          if (!(e instanceof H2Error)) throw e;
          if (e.code === abi.PROTOCOL_ERROR && e.reason === abi.R_HPACK_LIST_TOO_LARGE) continue;
          // A list expanding past LIST_WORK_FACTOR x its limit is refused as a connection error (amplification).
          if (e.code === abi.ENHANCE_YOUR_CALM && e.reason === abi.R_HPACK_AMPLIFICATION) return;
          if (e.code !== abi.COMPRESSION_ERROR) throw new Mismatch(`HPACK error code ${e.code} (reason ${e.reason})`);
          return; // a connection error: the connection is gone
        }
        let bytes = 0;
        for (const [n, v] of list) bytes += n.length + v.length;
        if (bytes > maxList) throw new Mismatch(`decoded list of ${bytes} bytes over the limit ${maxList}`);
        const size = dec.tableSize;
        if (size > Math.max(allowed, 4096) || size < 0) throw new Mismatch(`table size ${size} over ${allowed}`);
      }
    } finally {
      dec.dispose();
    }
  },
};
