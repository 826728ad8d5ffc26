// host/log.ts's line time: the same text as Date#toISOString (which it avoids, see isoTime), for any time a proxy
// can run at, and what a logged line carries.

import { describe, expect, it } from "vitest";
import { isoTime, logger, setSink, type LogRecord } from "../host/log.js";

describe("log line time", () => {
  it("isoTime(ms) is Date#toISOString for times from 1970 to 2200, millisecond edges included", () => {
    const edges = [0, 1, 999, 1000, 59_999, 951_782_400_000 /* 2000-02-29 */, 4_102_444_799_999, 7_258_118_399_999];
    let x = 0x9e3779b9;
    const random = Array.from({ length: 5000 }, () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) * 1690 + (x & 1023); // spread over 1970 .. ~2200
    });
    for (const ms of [...edges, ...random]) expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
  });

  it("a logged line's time is now, in that format", () => {
    const lines: LogRecord[] = [];
    const restore = setSink((r) => lines.push(r));
    const before = Date.now();
    logger("test").warn("hello");
    restore();
    expect(lines).toHaveLength(1);
    expect(lines[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(lines[0]!.time)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(lines[0]!.time)).toBeLessThanOrEqual(Date.now());
  });
});
