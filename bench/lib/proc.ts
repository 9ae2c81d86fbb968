/** Process memory from /proc/<pid>/status (Linux): resident set now and its high-water mark, in KiB. */
import { execFileSync } from 'node:child_process';
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

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU time (user + system, all threads) a process has used so far, in milliseconds, from
 * /proc/<pid>/stat. Differences over a run give CPU per operation, a figure that stays
 * meaningful when other work shares the machine.
 */
export function readProcCpuMs(pid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) / ticksPerSecond()) * 1000;
}

/**
 * CPU time of a process and its children (a PostgreSQL postmaster and its backends): its own,
 * its reaped children's (cutime, cstime) and its live children's, in milliseconds.
 */
export function readProcTreeCpuMs(rootPid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${rootPid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  let ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const t = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const r = t.slice(t.lastIndexOf(')') + 2).split(' ');
      if (Number(r[1]) === rootPid) ticks += Number(r[11]) + Number(r[12]);
    } catch {
      // Exited while we looked.
    }
  }
  return (ticks / ticksPerSecond()) * 1000;
}
