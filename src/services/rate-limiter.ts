/**
 * Token buckets keyed by a string (a ProductKey for dynamic registration). Each bucket holds
 * up to `burst` tokens and refills at `ratePerSecond`; a request takes one token or is
 * refused. In memory, per process: the limit protects this instance from floods, it is not a
 * global quota across a cluster.
 */

export interface TokenBucketOptions {
  ratePerSecond: number;
  /** Bucket size; defaults to twice the rate (config.registrationRatePerSecond documents 2x). */
  burst?: number;
  /** Injected clock (ms) so the refill can be reasoned about; defaults to performance.now. */
  now?: () => number;
  /** Sweep full buckets once this many keys are held, so the map cannot grow without bound. */
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class KeyedTokenBucket {
  private readonly buckets = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(opts: TokenBucketOptions) {
    if (!(opts.ratePerSecond > 0)) throw new RangeError('ratePerSecond must be > 0');
    this.rate = opts.ratePerSecond;
    this.burst = Math.max(1, opts.burst ?? opts.ratePerSecond * 2);
    this.now = opts.now ?? (() => performance.now());
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Takes one token for `key`; false when the bucket is empty (the caller refuses). */
  tryTake(key: string): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.sweep(t);
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.rate);
      b.at = t;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** A bucket that has refilled completely behaves exactly like a missing one: drop it. */
  private sweep(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    }
  }
}
