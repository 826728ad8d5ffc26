// Fuzz target: the frame reader (host/wasm/codec.ts FrameReader over assembly/h2/frame-reader.ts), fed one
// byte stream in random chunkings. Input: [params, ...chunks]; params = [max frame size index, reader options].
// Invariants beyond the harness's: only H2Error escapes a feed, and the chunked feed agrees with feeding the
// same bytes at once (same frames, or the same error code after a prefix of the same frames).

import * as abi from "../../assembly/abi.js";
import { H2Error } from "../../host/errors.js";
import { FrameReader, type Codec } from "../../host/wasm/codec.js";
import { frame, settingsPayload } from "../helpers/frames.js";
import { frameCorpus } from "./corpus.js";
import { Mismatch, type Target } from "./harness.js";
import { chunk, mutate, type Rng } from "./rng.js";

const MAX_FRAME_SIZES = [abi.DEFAULT_MAX_FRAME_SIZE, 1 << 20, abi.MAX_ALLOWED_FRAME_SIZE];

/** A frame with random type, flags, stream and payload; the length field usually honest. */
function randomFrame(rng: Rng): Buffer {
  const type = rng.chance(0.9) ? rng.int(10) : rng.int(256);
  const stream = rng.pick([0, 1, 2, 3, 5, 0x7fffffff, 0x80000001, rng.u32()]);
  const flags = rng.chance(0.5) ? rng.pick([0, 1, 4, 5, 8, 0x20, 0x2d]) : rng.int(256);
  const payload =
    type === abi.FRAME_SETTINGS && rng.chance(0.5)
      ? settingsPayload(Array.from({ length: rng.int(8) }, () => [rng.int(10), rng.u32()] as [number, number]))
      : rng.bytes(rng.size(600));
  const f = frame(type, flags, stream, payload);
  if (rng.chance(0.1)) f.writeUIntBE(rng.pick([0, payload.length + 1, 16384, 16385, 1 << 20, 0xffffff]), 0, 3);
  return f;
}

/** Shapes that stress the gather buffer and header-block sequencing. */
function hostile(rng: Rng): Buffer {
  switch (rng.int(4)) {
    case 0: {
      // A large declared frame, only partly sent (gathered for the reader's life).
      const h = frame(
        rng.pick([abi.FRAME_HEADERS, abi.FRAME_SETTINGS, abi.FRAME_GOAWAY, abi.FRAME_DATA, 0xfa]),
        rng.int(256),
        rng.range(0, 3),
      );
      h.writeUIntBE(rng.pick([16384, 1 << 20, 0xffffff]), 0, 3);
      return Buffer.concat([h, rng.bytes(rng.size(2000))]);
    }
    case 1: // HEADERS then many CONTINUATIONs
      return Buffer.concat([
        frame(abi.FRAME_HEADERS, 0, 1, [0x82]),
        ...Array.from({ length: rng.range(1, 200) }, () =>
          frame(abi.FRAME_CONTINUATION, 0, 1, rng.bytes(rng.size(40))),
        ),
        frame(abi.FRAME_CONTINUATION, rng.chance(0.5) ? abi.FLAG_END_HEADERS : 0, rng.chance(0.9) ? 1 : 3, [0x84]),
      ]);
    case 2: // Many tiny frames (the event ring holds 8192 per call)
      return Buffer.concat(
        Array.from({ length: rng.range(100, 9000) }, () =>
          frame(
            rng.pick([abi.FRAME_PING, abi.FRAME_DATA, abi.FRAME_WINDOW_UPDATE, abi.FRAME_PRIORITY]),
            0,
            rng.int(4),
            rng.bytes(rng.pick([0, 4, 5, 8])),
          ),
        ),
      );
    default: // A large SETTINGS frame
      return frame(
        abi.FRAME_SETTINGS,
        0,
        0,
        settingsPayload(
          Array.from({ length: rng.range(100, 2700) }, () => [rng.range(1, 8), rng.int(70000)] as [number, number]),
        ),
      );
  }
}

export function frameStream(rng: Rng): Buffer {
  const seeds = frameCorpus();
  switch (rng.int(7)) {
    case 0:
    case 1:
      return Buffer.concat(Array.from({ length: rng.range(1, 12) }, () => randomFrame(rng)));
    case 2:
    case 3:
    case 4:
      return mutate(rng, Buffer.concat(Array.from({ length: rng.range(1, 6) }, () => rng.pick(seeds))), seeds);
    case 5:
      return rng.bytes(rng.size(3000));
    default:
      return hostile(rng);
  }
}

type Ev = string;
interface Outcome {
  frames: Ev[];
  error: number | null;
}

/** Feeds the chunks; DATA pieces are joined back into whole frames so chunkings compare. */
function parse(chunks: Buffer[], maxFrameSize: number, options: number, codec: Codec): Outcome {
  const r = new FrameReader(maxFrameSize, options, codec);
  const frames: Ev[] = [];
  let data: Buffer[] = [];
  let error: number | null = null;
  try {
    for (const c of chunks) {
      r.feed(c, (type, flags, streamId, payload, a, b, c2) => {
        if (type === abi.FRAME_DATA) {
          data.push(Buffer.from(payload));
          if (flags & abi.FLAG_FRAME_END) {
            frames.push(`D ${flags & 0xff} ${streamId} ${c2} ${Buffer.concat(data).toString("hex")}`);
            data = [];
          }
        } else {
          frames.push(`${type} ${flags} ${streamId} ${a} ${b} ${c2} ${Buffer.from(payload).toString("hex")}`);
        }
      });
    }
  } catch (e) {
    if (!(e instanceof H2Error)) throw e;
    error = e.code;
  } finally {
    r.dispose();
  }
  return { frames, error };
}

export const framesTarget: Target = {
  name: "frames",
  memoryBound: 128 << 20,
  generate(rng) {
    const bytes = frameStream(rng);
    return [Buffer.from([rng.chance(0.6) ? 0 : rng.int(3), rng.int(4)]), ...chunk(rng, bytes)];
  },
  execute(input, codec) {
    const params = input[0] ?? Buffer.alloc(2);
    const maxFrameSize = MAX_FRAME_SIZES[(params[0] ?? 0) % 3]!,
      options = (params[1] ?? 0) & 3;
    const chunks = input.slice(1);
    const split = parse(chunks, maxFrameSize, options, codec);
    const whole = parse([Buffer.concat(chunks)], maxFrameSize, options, codec);
    const prefix = split.frames.slice(0, whole.frames.length).join("\n") === whole.frames.join("\n");
    if (
      split.error !== whole.error ||
      !prefix ||
      (whole.error === null && split.frames.length !== whole.frames.length)
    ) {
      throw new Mismatch(
        `chunked feed: ${split.frames.length} frames, error ${split.error}; ` +
          `whole: ${whole.frames.length} frames, error ${whole.error}`,
      );
    }
  },
};
