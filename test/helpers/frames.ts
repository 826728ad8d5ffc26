// A plain reference frame serializer for tests: builds wire bytes independently of the Wasm
// writers, so parser tests do not check the codec against itself.

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array | number[] = []): Buffer {
  const p = Buffer.from(payload as Uint8Array);
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([h, p]);
}

export function u32(...v: number[]): Buffer {
  const b = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => b.writeUInt32BE(x >>> 0, i * 4));
  return b;
}

export function settingsPayload(entries: [number, number][]): Buffer {
  const b = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return b;
}
