/** Process memory from /proc/<pid>/status (Linux): resident set now and its high-water mark, in KiB. */
import fs from 'node:fs';

export interface ProcMemory {
  rssKiB: number;
  hwmKiB: number;
}

export function readProcMemory(pid: number): ProcMemory | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/**
 * Polls a process's high-water mark until stopped. VmHWM only grows, so the last reading
 * before the process exits is its peak up to that moment (the final poll interval excepted).
 */
export class PeakRssSampler {
  private timer: NodeJS.Timeout;
  peakKiB = 0;

  constructor(private readonly pid: number, intervalMs = 50) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const m = readProcMemory(this.pid);
    if (m && Number.isFinite(m.hwmKiB)) this.peakKiB = Math.max(this.peakKiB, m.hwmKiB);
  }

  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakKiB;
  }
}
