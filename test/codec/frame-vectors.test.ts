// Frames against the http2-frame-test-case corpus (http2jp): every valid case parses to its
// listed fields, every error case fails with one of its listed codes. Both Wasm builds.

import { describe, expect, it } from "vitest";
import { readdirSync, statSync } from "node:fs";
import { join, basename } from "node:path";
import { parseFrames } from "../../host/h2/frames.js";
import { H2Error } from "../../host/errors.js";
import { getCodec } from "../../host/wasm/codec.js";
import { vectorDir, readJson, hex } from "../helpers/vectors.js";

interface FrameCase {
  error: number[] | null;
  wire: string;
  description: string;
  frame: null | {
    length: number;
    type: number;
    flags: number;
    stream_identifier: number;
    frame_payload: Record<string, unknown>;
  };
}

function cases(kind: "valid" | "error"): [string, FrameCase][] {
  const root = vectorDir("http2-frame-test-case");
  const out: [string, FrameCase][] = [];
  for (const d of readdirSync(root).sort()) {
    const dir = join(root, d);
    if (!statSync(dir).isDirectory() || (d === "error") !== (kind === "error")) continue;
    for (const f of readdirSync(dir)
      .filter((x) => x.endsWith(".json"))
      .sort()) {
      out.push([`${d}/${f}`, readJson<FrameCase>(join(dir, f))]);
    }
  }
  return out;
}

const latin1 = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("latin1") : undefined);

for (const variant of ["release", "debug"] as const) {
  describe(`frame vectors (${variant} build)`, () => {
    const codec = getCodec(variant);
    const valid = cases("valid");
    const errors = cases("error");

    it("has the whole corpus", () => {
      expect(valid.length).toBe(12);
      expect(errors.length).toBe(22);
    });

    for (const [name, c] of valid) {
      it(`parses ${name}`, () => {
        const frames = parseFrames(hex(c.wire), undefined, codec);
        expect(frames).toHaveLength(1);
        const f = frames[0];
        const want = c.frame!;
        const p = want.frame_payload;
        expect(f.type).toBe(want.type);
        expect(f.flags).toBe(want.flags);
        expect(f.streamId).toBe(want.stream_identifier);
        expect(f.length).toBe(want.length);
        if ("padding_length" in p) expect(f.padLength ?? null).toBe(p.padding_length);
        if ("data" in p) expect(latin1(f.payload)).toBe(p.data);
        if ("header_block_fragment" in p) expect(latin1(f.payload)).toBe(p.header_block_fragment);
        if ("weight" in p) {
          if (p.weight === null) expect(f.priority).toBeUndefined();
          else
            expect(f.priority).toEqual({ weight: p.weight, dependency: p.stream_dependency, exclusive: p.exclusive });
        }
        if ("error_code" in p) expect(f.errorCode).toBe(p.error_code);
        if ("last_stream_id" in p) expect(f.lastStreamId).toBe(p.last_stream_id);
        if ("additional_debug_data" in p) expect(latin1(f.debugData)).toBe(p.additional_debug_data);
        if ("settings" in p) expect(f.settings).toEqual(p.settings);
        if ("window_size_increment" in p) expect(f.windowIncrement).toBe(p.window_size_increment);
        if ("promised_stream_id" in p) expect(f.promisedStreamId).toBe(p.promised_stream_id);
        if ("opaque_data" in p) expect(latin1(f.opaqueData)).toBe(p.opaque_data);
      });
    }

    for (const [name, c] of errors) {
      it(`rejects ${name} (${basename(name, ".json")})`, () => {
        let err: unknown;
        try {
          parseFrames(hex(c.wire), undefined, codec);
        } catch (e) {
          err = e;
        }
        expect(err, c.description).toBeInstanceOf(H2Error);
        expect(c.error).toContain((err as H2Error).code);
      });
    }
  });
}
