/**
 * The global in-flight byte budget (issue 12, point 5): the sum of request-body bytes the gateway holds
 * at once (in memory or spooled) stays under `limit`; a request that would go over it is answered 503
 * with `Retry-After` instead of being read.
 */
export class ByteBudget {
  private used = 0;

  /** @param limit bytes */
  constructor(readonly limit: number) {}

  /** Bytes currently held. */
  get inUse(): number {
    return this.used;
  }

  /** Take `n` bytes if they fit; false (nothing taken) otherwise. */
  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  /** Give back `n` bytes taken earlier. */
  release(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}
