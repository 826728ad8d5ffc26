// A small seeded generator (mulberry32) and the byte mutations every fuzz target shares. Seeded so a
// failure is a seed and an input that reproduce it exactly.

export class Rng {
  private a: number;

  constructor(readonly seed: number) {
    this.a = seed >>> 0;
  }

  /** A uniform u32. */
  u32(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A size skewed towards small values, sometimes up to `max`. */
  size(max: number): number {
    const r = this.int(10);
    return r < 6 ? this.int(Math.min(max, 16) + 1) : r < 9 ? this.int(Math.min(max, 512) + 1) : this.int(max + 1);
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Values around the edges of 8-, 16-, 24- and 32-bit fields. */
const INTERESTING = [
  0, 1, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xffff, 0x10000, 0xffffff, 0x7fffffff, 0x80000000,
  0xffffffff,
];

/** A copy of `input` with 1-4 random mutations: bit flips, byte sets, interesting words, inserts, deletes, splices. */
export function mutate(rng: Rng, input: Uint8Array, donors: readonly Uint8Array[] = []): Buffer {
  let b = Buffer.from(input);
  for (let n = rng.range(1, 4); n > 0; n--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(8)) {
      case 0:
        if (b.length) b[at % b.length] ^= 1 << rng.int(8);
        break;
      case 1:
        if (b.length) b[at % b.length] = rng.u32() & 0xff;
        break;
      case 2: {
        // An interesting big-endian value over 1-4 bytes (length fields, stream ids, window increments).
        const w = rng.range(1, 4),
          v = rng.pick(INTERESTING);
        for (let i = 0; i < w && at + i < b.length; i++) b[at + i] = (v >>> (8 * (w - 1 - i))) & 0xff;
        break;
      }
      case 3:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.size(64)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.size(64)))]);
        break;
      case 5: {
        // Duplicate a slice (repeated frames, repeated header fields).
        const from = rng.int(b.length + 1),
          len = rng.size(256);
        b = Buffer.concat([b.subarray(0, at), b.subarray(from, from + len), b.subarray(at)]);
        break;
      }
      case 6:
        if (donors.length) {
          const d = rng.pick(donors),
            from = rng.int(d.length + 1);
          b = Buffer.concat([
            b.subarray(0, at),
            Buffer.from(d.subarray(from, from + rng.size(d.length))),
            b.subarray(at),
          ]);
        }
        break;
      case 7:
        b = b.subarray(0, at); // truncation
        break;
    }
  }
  return b;
}

/** Cuts `bytes` into random chunks (sometimes byte by byte). */
export function chunk(rng: Rng, bytes: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const byteByByte = bytes.length < 600 && rng.chance(0.1);
  for (let off = 0; off < bytes.length;) {
    const n = byteByByte ? 1 : Math.max(1, rng.size(bytes.length - off));
    out.push(Buffer.from(bytes.subarray(off, off + n)));
    off += n;
  }
  return out;
}

export const toHex = (parts: readonly Uint8Array[]): string =>
  parts.map((p) => Buffer.from(p).toString("hex")).join(",");
export const fromHex = (s: string): Buffer[] => (s === "" ? [] : s.split(",").map((h) => Buffer.from(h, "hex")));
