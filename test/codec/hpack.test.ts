// HPACK rules beyond the corpus: never-indexed literals, table size updates, every error a
// peer can cause (COMPRESSION_ERROR, never a trap), the header list limit, and round trips.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { createRequire } from "node:module";
import * as abi from "../../assembly/abi.js";
import { HpackDecoder, HpackEncoder, type HeaderList } from "../../host/h2/hpack.js";
import { H2Error } from "../../host/errors.js";
import { getCodec } from "../../host/wasm/codec.js";

const require = createRequire(import.meta.url);
const hpackJs = require("hpack.js");
const bytes = (...b: number[]) => Uint8Array.from(b);
const ascii = (s: string) => [...Buffer.from(s, "latin1")];

function errorOf(fn: () => unknown): H2Error {
  try {
    fn();
  } catch (e) {
    if (e instanceof H2Error) return e;
    throw e;
  }
  throw new Error("expected an H2Error");
}

describe("HPACK decoder", () => {
  it("decodes a never-indexed literal and reports it (RFC 7541 C.2.3)", () => {
    const d = new HpackDecoder();
    const r = d.decodeFull(bytes(0x10, 0x08, ...ascii("password"), 0x06, ...ascii("secret")));
    expect(r.headers).toEqual([["password", "secret"]]);
    expect(r.neverIndexed).toEqual([true]);
    expect(d.tableSize).toBe(0);
  });

  it("indexes a literal with incremental indexing (RFC 7541 C.2.1) and evicts by size", () => {
    const d = new HpackDecoder(100);
    const block = bytes(0x40, 0x0a, ...ascii("custom-key"), 0x0d, ...ascii("custom-header"));
    expect(d.decode(block)).toEqual([["custom-key", "custom-header"]]);
    expect(d.tableSize).toBe(55);
    expect(d.decode(bytes(0xbe))).toEqual([["custom-key", "custom-header"]]); // index 62
    d.decode(bytes(0x40, 0x01, ...ascii("a"), 0x10, ...ascii("0123456789abcdef"))); // 49 octets: evicts the first
    expect(d.tableSize).toBe(49);
    expect(d.decode(bytes(0xbe))).toEqual([["a", "0123456789abcdef"]]);
    expect(errorOf(() => d.decode(bytes(0xbf))).code).toBe(abi.COMPRESSION_ERROR);
  });

  const malformed: [string, Uint8Array, number][] = [
    ["index 0", bytes(0x80), abi.R_HPACK_BAD_INDEX],
    ["index past the dynamic table", bytes(0xbe), abi.R_HPACK_BAD_INDEX],
    ["literal name index past the table", bytes(0x7f, 0x20, 0x01, 0x61), abi.R_HPACK_BAD_INDEX],
    ["truncated integer", bytes(0xff), abi.R_HPACK_TRUNCATED],
    ["truncated multi-byte integer", bytes(0xff, 0x80), abi.R_HPACK_TRUNCATED],
    ["integer overflow", bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0x0f), abi.R_HPACK_INTEGER_OVERFLOW],
    ["integer of too many bytes", bytes(0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), abi.R_HPACK_INTEGER_OVERFLOW],
    ["truncated name", bytes(0x40), abi.R_HPACK_TRUNCATED],
    ["string longer than the block", bytes(0x40, 0x05, 0x61, 0x62), abi.R_HPACK_TRUNCATED],
    ["missing value", bytes(0x40, 0x01, 0x61), abi.R_HPACK_TRUNCATED],
    ["Huffman padding of zeros", bytes(0x00, 0x81, 0x18, 0x00), abi.R_HPACK_BAD_HUFFMAN],
    ["Huffman padding longer than 7 bits", bytes(0x00, 0x82, 0x1f, 0xff, 0x00), abi.R_HPACK_BAD_HUFFMAN],
    ["Huffman EOS symbol", bytes(0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00), abi.R_HPACK_BAD_HUFFMAN],
    ["size update above the allowed size", bytes(0x3f, 0xe2, 0x1f), abi.R_HPACK_BAD_SIZE_UPDATE],
    ["size update after a field", bytes(0x82, 0x20), abi.R_HPACK_BAD_SIZE_UPDATE],
  ];
  for (const [name, block, reason] of malformed) {
    it(`rejects ${name} with COMPRESSION_ERROR`, () => {
      const e = errorOf(() => new HpackDecoder().decode(block));
      expect(e.code).toBe(abi.COMPRESSION_ERROR);
      expect(e.reason).toBe(reason);
    });
  }

  it("accepts valid Huffman with EOS-prefix padding", () => {
    expect(new HpackDecoder().decode(bytes(0x00, 0x81, 0x1f, 0x81, 0x1f))).toEqual([["a", "a"]]);
  });

  it("requires a size update after SETTINGS lowered the table size, and honours it", () => {
    const d = new HpackDecoder();
    d.decode(bytes(0x40, 0x01, 0x61, 0x01, 0x62));
    d.setMaxTableSize(0);
    expect(errorOf(() => d.decode(bytes(0x82))).reason).toBe(abi.R_HPACK_MISSING_SIZE_UPDATE);
    const d2 = new HpackDecoder();
    d2.decode(bytes(0x40, 0x01, 0x61, 0x01, 0x62));
    d2.setMaxTableSize(0);
    expect(d2.decode(bytes(0x20, 0x82))).toEqual([[":method", "GET"]]);
    expect(d2.tableSize).toBe(0);
    expect(errorOf(() => d2.decode(bytes(0xbe))).reason).toBe(abi.R_HPACK_BAD_INDEX);
  });

  it("enforces the header list limit while keeping the table in sync", () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder();
    dec.setMaxHeaderListSize(200);
    const big: HeaderList = [
      ["x-big", "v".repeat(300)],
      ["x-small", "s"],
    ];
    const b1 = enc.encode(big);
    const b2 = enc.encode([
      ["x-small", "s"],
      [":method", "GET"],
    ]); // refers to entries from b1
    const e = errorOf(() => dec.decode(b1));
    expect(e.code).toBe(abi.PROTOCOL_ERROR);
    expect(e.reason).toBe(abi.R_HPACK_LIST_TOO_LARGE);
    expect(dec.decode(b2)).toEqual([
      ["x-small", "s"],
      [":method", "GET"],
    ]);
  });
});

describe("HPACK encoder", () => {
  it("sends sensitive fields never-indexed and keeps them out of the table", () => {
    const enc = new HpackEncoder(4096, undefined, { sensitive: new Set(["x-token"]) });
    const dec = new HpackDecoder();
    const list: HeaderList = [
      ["authorization", "Bearer abc"],
      ["proxy-authorization", "Basic xyz"],
      ["cookie", "id=1"],
      ["x-token", "t0k3n"],
      ["x-flagged", "f"],
      ["cookie", "a-long-cookie-value-that-is-worth-indexing=1"],
    ];
    const block = enc.encode(list, [false, false, false, false, true, false]);
    const r = dec.decodeFull(block);
    expect(r.headers).toEqual(list);
    expect(r.neverIndexed).toEqual([true, true, true, true, true, false]);
    // Only the long cookie was indexed.
    expect(enc.tableSize).toBe("cookie".length + list[5][1].length + 32);
    expect(dec.tableSize).toBe(enc.tableSize);
    // The same list again: sensitive fields are literal again, the long cookie one byte.
    const again = dec.decodeFull(enc.encode(list, [false, false, false, false, true, false]));
    expect(again.neverIndexed).toEqual(r.neverIndexed);
  });

  it("indexes repeated fields: a second identical block is one byte per field", () => {
    const enc = new HpackEncoder();
    const list: HeaderList = [
      [":method", "CONNECT"],
      [":authority", "10.1.2.3:15008"],
      ["baggage", "k8s.namespace.name=default"],
    ];
    enc.encode(list);
    expect(enc.encode(list).length).toBe(3);
  });

  it("does not index per-connection values such as traceparent", () => {
    const enc = new HpackEncoder();
    enc.encode([["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"]]);
    expect(enc.tableSize).toBe(0);
  });

  it("uses Huffman only when shorter", () => {
    const enc = new HpackEncoder();
    const h = enc.encode([["x-a", "aaaaaaaaaa"]]); // Huffman: 10 x 5 bits
    expect(h[h.length - 8]! & 0x80).toBe(0x80);
    const raw = enc.encode([["x-b", "\u00ff\u00fe\u00fd"]]); // rare bytes: longer in Huffman
    expect(raw.at(-4)).toBe(3);
  });

  it("announces table size changes: the smallest, then the final (RFC 7541 §4.2)", () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder();
    enc.encode([["x-a", "1"]]);
    enc.setMaxTableSize(0);
    enc.setMaxTableSize(1024);
    dec.setMaxTableSize(1024);
    const block = enc.encode([["x-b", "2"]]);
    expect([...block.subarray(0, 4)]).toEqual([0x20, 0x3f, 0xe1, 0x07]);
    expect(dec.decode(block)).toEqual([["x-b", "2"]]);
    expect(enc.tableSize).toBe(dec.tableSize);
  });

  it("round-trips every byte value through Huffman and raw literals (checked by hpack.js)", () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const list: HeaderList = [
      ["x-all", all],
      ["x-text", "the quick brown fox"],
      ["x-empty", ""],
    ];
    const block = new HpackEncoder().encode(list);
    expect(new HpackDecoder().decode(block)).toEqual(list);
    const d = hpackJs.decompressor.create({ table: { maxSize: 4096 } });
    d.write(Buffer.from(block));
    d.execute();
    const out: HeaderList = [];
    for (let h = d.read(); h; h = d.read()) out.push([h.name, h.value]);
    expect(out).toEqual(list);
  });
});

const arbName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
const arbValue = fc.oneof(
  fc.stringMatching(/^[ -~]{0,60}$/),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constantFrom("GET", "200", "CONNECT", "gzip, deflate", ""),
);
const arbField = fc.tuple(
  fc.oneof(arbName, fc.constantFrom(":method", ":status", "cookie", "authorization", "baggage")),
  arbValue,
);
const arbBlock = fc.record({
  list: fc.array(arbField, { maxLength: 12 }),
  never: fc.array(fc.boolean(), { maxLength: 12 }),
  resize: fc.option(fc.integer({ min: 0, max: 4096 }), { freq: 4 }),
});

for (const variant of ["release", "debug"] as const) {
  describe(`HPACK properties (${variant})`, () => {
    const codec = getCodec(variant);
    it("round-trips random blocks with never-indexed fields and table size changes", () => {
      fc.assert(
        fc.property(fc.array(arbBlock, { minLength: 1, maxLength: 15 }), (blocks) => {
          const enc = new HpackEncoder(4096, codec);
          const dec = new HpackDecoder(4096, codec);
          try {
            for (const { list, never, resize } of blocks) {
              if (resize !== null) enc.setMaxTableSize(resize);
              const nv = list.map((_, i) => never[i] ?? false);
              const r = dec.decodeFull(enc.encode(list as HeaderList, nv));
              expect(r.headers).toEqual(list);
              for (let i = 0; i < list.length; i++) if (nv[i]) expect(r.neverIndexed[i]).toBe(true);
              expect(dec.tableSize).toBe(enc.tableSize);
            }
          } finally {
            enc.dispose();
            dec.dispose();
          }
          expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
        }),
        { numRuns: 300 },
      );
    });

    it("turns random and mutated blocks into headers or COMPRESSION_ERROR, never a trap", () => {
      const enc = new HpackEncoder(4096, codec);
      fc.assert(
        fc.property(
          fc.array(arbField, { maxLength: 8 }),
          fc.uint8Array({ maxLength: 64 }),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
          (list, junk, muts) => {
            const block = Buffer.concat([enc.encode(list as HeaderList), junk]);
            for (const [at, v] of muts) block[at % block.length] = v;
            const dec = new HpackDecoder(4096, codec);
            try {
              dec.decode(block);
            } catch (e) {
              expect(e).toBeInstanceOf(H2Error);
              expect([abi.COMPRESSION_ERROR, abi.PROTOCOL_ERROR]).toContain((e as H2Error).code);
            } finally {
              dec.dispose();
            }
            expect(codec.ex.heap_check()).toBeGreaterThanOrEqual(0);
          },
        ),
        { numRuns: 1000 },
      );
      enc.dispose();
    });
  });
}
