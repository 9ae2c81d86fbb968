/** Latency samples in milliseconds with exact percentiles (the sample counts here are bounded). */
export class LatencyRecorder {
  private samples: Float64Array;
  private n = 0;

  constructor(capacity: number) {
    this.samples = new Float64Array(Math.max(16, capacity));
  }

  record(ms: number): void {
    if (this.n === this.samples.length) {
      const bigger = new Float64Array(this.samples.length * 2);
      bigger.set(this.samples);
      this.samples = bigger;
    }
    this.samples[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  /** Percentiles (0..100) by nearest rank over the sorted samples. */
  percentiles(ps: number[]): number[] {
    if (this.n === 0) return ps.map(() => NaN);
    const sorted = this.samples.slice(0, this.n).sort();
    return ps.map((p) => sorted[Math.min(this.n - 1, Math.max(0, Math.ceil((p / 100) * this.n) - 1))]!);
  }

  summary(): { p50Ms: number; p99Ms: number; maxMs: number } {
    const [p50, p99, max] = this.percentiles([50, 99, 100]);
    return { p50Ms: round(p50!, 3), p99Ms: round(p99!, 3), maxMs: round(max!, 3) };
  }
}

export function round(x: number, digits = 1): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
