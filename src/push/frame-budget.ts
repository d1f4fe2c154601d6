/** How much a client may send on one socket (WS_MAX_FRAMES_PER_SECOND, WS_MAX_INVALID_FRAMES). */
export interface FrameLimits {
  /** Frames per second, and the burst allowed on top of an idle socket: a token bucket. */
  maxFramesPerSecond: number;
  /** Invalid frames (answered with an error frame) allowed within one window. */
  maxInvalidFrames: number;
  /** WS_PING_INTERVAL: the window the invalid frames are counted in. */
  invalidWindowMs: number;
}

/**
 * What one socket may still send, so that a client flooding frames costs the node little
 * and other clients nothing: a token bucket of maxFramesPerSecond that refills
 * continuously (a burst of as many), and a count of invalid frames per window. Created on
 * the first frame a client sends: most sockets only ever ack.
 */
export class FrameBudget {
  private tokens: number;
  private refilledAt: number;
  private invalid = 0;
  private windowStart: number;

  constructor(
    private readonly limits: FrameLimits,
    now: number,
  ) {
    this.tokens = limits.maxFramesPerSecond;
    this.refilledAt = now;
    this.windowStart = now;
  }

  /** Takes one frame from the bucket; false when the client sends faster than allowed. */
  take(now: number): boolean {
    const { maxFramesPerSecond } = this.limits;
    this.tokens = Math.min(
      maxFramesPerSecond,
      this.tokens + ((now - this.refilledAt) * maxFramesPerSecond) / 1000,
    );
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Counts one invalid frame; false when it is one too many for this window. */
  takeInvalid(now: number): boolean {
    if (now - this.windowStart >= this.limits.invalidWindowMs) {
      this.windowStart = now;
      this.invalid = 0;
    }
    return ++this.invalid <= this.limits.maxInvalidFrames;
  }
}
