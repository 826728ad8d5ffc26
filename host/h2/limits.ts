// Protections of a session against hostile peers, kept out of the codec (as Envoy's
// protocol_constraints): counters over a sliding window that trip ENHANCE_YOUR_CALM.

/** Counts events in fixed windows; `hit()` is true once more than `max` fell in one window. */
export class RateLimit {
  private windowStart = 0;
  private count = 0;
  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  hit(): boolean {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.count = 0;
    }
    return ++this.count > this.max;
  }
}

export interface SessionLimits {
  /** Streams the peer may have open at once (we advertise it; beyond it: REFUSED_STREAM). */
  maxConcurrentStreams: number;
  /** Uncompressed header list size (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** CONTINUATION frames allowed in one header block (CVE-2024-27316 style floods). */
  maxContinuations: number;
  /** RST_STREAM frames received per window (rapid reset, CVE-2023-44487). */
  maxResetsPerWindow: number;
  /** SETTINGS frames received per window. */
  maxSettingsPerWindow: number;
  /** PING frames received per window. */
  maxPingsPerWindow: number;
  /** Empty DATA / zero-increment floods: frames with no payload per window. */
  maxEmptyFramesPerWindow: number;
  /**
   * Streams we reset or refuse because of what the peer sent (stream errors, REFUSED_STREAM,
   * 431) per window: the MadeYouReset attack (CVE-2025-8671) provokes server-side resets
   * with invalid frames instead of sending RST_STREAM itself.
   */
  maxLocalResetsPerWindow: number;
  /**
   * Control frames (RST_STREAM, SETTINGS/PING ACKs, WINDOW_UPDATE, HEADERS answers) we may queue
   * beyond the socket's high-water mark for a peer that does not read: past it, the
   * connection closes (ENHANCE_YOUR_CALM). DATA is bounded by flow control and backpressure.
   */
  maxQueuedControlBytes: number;
  /** Length of the windows above, in ms. */
  floodWindowMs: number;
}

export const DEFAULT_LIMITS: SessionLimits = {
  maxConcurrentStreams: 200,
  maxHeaderListSize: 64 * 1024,
  maxContinuations: 16,
  maxResetsPerWindow: 400,
  maxSettingsPerWindow: 100,
  maxPingsPerWindow: 100,
  maxEmptyFramesPerWindow: 10_000,
  maxLocalResetsPerWindow: 400,
  maxQueuedControlBytes: 1 << 20,
  floodWindowMs: 10_000,
};

/**
 * Largest header block (HEADERS + CONTINUATION payloads) accepted, and so the largest non-DATA
 * frame the reader gathers: a compressed block is never much larger than its header list, so
 * the list limit plus one default frame of slack. Beyond it: ENHANCE_YOUR_CALM.
 */
export function headerBlockLimit(maxHeaderListSize: number): number {
  return maxHeaderListSize + 16384;
}
