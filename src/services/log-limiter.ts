/**
 * Rate limit for log lines an outsider can trigger at will (a refused CONNECT, SUBSCRIBE or
 * registration): without it every attempt is one line, so a flood fills the disk and buries
 * what an operator needs to see (issue 11 item 11).
 *
 * Keyed by event + source: the first `perInterval` lines of a key within `intervalMs` are
 * written, the rest are counted. When the interval of a key that suppressed lines ends, one
 * summary line says how many ("suppressed k similar"), with the event and the source. A timer (unref'd, one for the whole
 * limiter, running only while something is suppressed) writes the summaries; flush() writes
 * them at once (tests, shutdown). Bounded by `maxKeys`: when full, ended windows are swept and,
 * if still full, further new keys share one overflow key.
 */
import type { Logger } from '../logger.js';

export interface LogLimiterOptions {
  /** Lines per key per interval written in full. */
  perInterval: number;
  intervalMs: number;
  maxKeys?: number;
  now?: () => number;
}

interface KeyWindow {
  start: number;
  written: number;
  suppressed: number;
  event: string;
  source: string;
  level: 'info' | 'warn';
}

const OVERFLOW_KEY = '(many sources)';

export class LogLimiter {
  private readonly windows = new Map<string, KeyWindow>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly maxKeys: number;
  /** Lines suppressed since start (for tests and diagnostics). */
  suppressedTotal = 0;

  constructor(
    private readonly logger: Logger,
    private readonly opts: LogLimiterOptions,
  ) {
    if (!(opts.perInterval >= 1) || !(opts.intervalMs > 0)) throw new RangeError('perInterval must be >= 1 and intervalMs > 0');
    this.now = opts.now ?? (() => Date.now());
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /**
   * Writes `msg` at `level` with `fields` (plus `event`) unless this event from this source
   * is over its budget; returns whether it was written.
   */
  log(level: 'info' | 'warn', event: string, source: string | null | undefined, fields: Record<string, unknown>, msg: string): boolean {
    const t = this.now();
    const src = source ?? '';
    let key = `${event}\u0000${src}`;
    let w = this.windows.get(key);
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.sweep(t);
      if (this.windows.size >= this.maxKeys) {
        key = `${event}\u0000${OVERFLOW_KEY}`;
        w = this.windows.get(key);
      }
      if (!w) {
        w = { start: t, written: 0, suppressed: 0, event, source: this.windows.size >= this.maxKeys ? OVERFLOW_KEY : src, level };
        this.windows.set(key, w);
      }
    } else if (t - w.start >= this.opts.intervalMs) {
      this.summarise(w);
      w.start = t;
      w.written = 0;
    }
    if (w.written < this.opts.perInterval) {
      w.written++;
      this.logger[level]({ event, ...fields }, msg);
      return true;
    }
    w.suppressed++;
    this.suppressedTotal++;
    this.arm();
    return false;
  }

  /** Writes the summary of every key that suppressed lines, now. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    for (const w of this.windows.values()) this.summarise(w);
  }

  /** Stops the timer after writing what is pending (server shutdown). */
  close(): void {
    this.flush();
    this.windows.clear();
  }

  private summarise(w: KeyWindow): void {
    if (w.suppressed === 0) return;
    this.logger[w.level](
      { event: w.event, source: w.source, suppressed: w.suppressed, intervalMs: this.opts.intervalMs },
      `${w.event}: suppressed ${w.suppressed} similar`,
    );
    w.suppressed = 0;
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const t = this.now();
      let pending = false;
      for (const w of this.windows.values()) {
        if (w.suppressed === 0) continue;
        if (t - w.start >= this.opts.intervalMs) this.summarise(w);
        else pending = true;
      }
      if (pending) this.arm();
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  private sweep(t: number): void {
    for (const [k, w] of this.windows) {
      if (t - w.start >= this.opts.intervalMs) {
        this.summarise(w);
        this.windows.delete(k);
      }
    }
  }
}
