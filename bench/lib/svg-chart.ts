/**
 * A small SVG line chart writer (no dependencies): panels side by side, each with its own
 * y axis (linear or log10), shared series colours and a legend.
 */
export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  log?: boolean;
  series: Series[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 0.001; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  if (ticks[ticks.length - 1]! < max) ticks.push(ticks[ticks.length - 1]! + step);
  return ticks;
}

function fmt(v: number): string {
  if (v >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k');
  return String(Math.round(v * 100) / 100);
}

export function lineChartSvg(panels: Panel[], opts: { title: string; subtitle?: string; width?: number; height?: number }): string {
  const W = opts.width ?? 980;
  const H = opts.height ?? 450;
  const top = 92;
  const bottom = 60;
  const left = 70;
  const gap = 90;
  const pw = (W - left - 30 - gap * (panels.length - 1)) / panels.length;
  const ph = H - top - bottom;
  const names = [...new Set(panels.flatMap((p) => p.series.map((s) => s.name)))];
  const color = (n: string) => COLORS[names.indexOf(n) % COLORS.length]!;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  if (opts.subtitle) out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(opts.subtitle)}</text>`);
  // legend
  names.forEach((n, i) => {
    const lx = left + i * 160;
    out.push(`<line x1="${lx}" y1="58" x2="${lx + 24}" y2="58" stroke="${color(n)}" stroke-width="3"/>`);
    out.push(`<text x="${lx + 30}" y="62">${esc(n)}</text>`);
  });
  panels.forEach((p, pi) => {
    const x0 = left + pi * (pw + gap);
    const y0 = top;
    const xs = [...new Set(p.series.flatMap((s) => s.points.map((pt) => pt.x)))].sort((a, b) => a - b);
    const ys = p.series.flatMap((s) => s.points.map((pt) => pt.y)).filter((y) => Number.isFinite(y));
    // x: categorical positions (concurrency levels), evenly spaced.
    const xPos = (x: number) => x0 + (xs.length <= 1 ? pw / 2 : (xs.indexOf(x) / (xs.length - 1)) * pw);
    let yPos: (y: number) => number;
    let ticks: number[];
    if (p.log) {
      const lo = Math.floor(Math.log10(Math.max(Math.min(...ys), 0.01)));
      const hi = Math.ceil(Math.log10(Math.max(...ys, 1)));
      ticks = [];
      for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
      yPos = (y) => y0 + ph - ((Math.log10(Math.max(y, 10 ** lo)) - lo) / Math.max(hi - lo, 1)) * ph;
    } else {
      ticks = niceTicks(Math.max(...ys, 1));
      const max = ticks[ticks.length - 1]!;
      yPos = (y) => y0 + ph - (y / max) * ph;
    }
    out.push(`<text x="${x0 + pw / 2}" y="${y0 - 8}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    for (const t of ticks) {
      const y = yPos(t);
      out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + pw}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${fmt(t)}</text>`);
    }
    for (const x of xs) out.push(`<text x="${xPos(x)}" y="${y0 + ph + 18}" text-anchor="middle">${fmt(x)}</text>`);
    out.push(`<text x="${x0 + pw / 2}" y="${y0 + ph + 40}" text-anchor="middle">${esc(p.xLabel)}</text>`);
    out.push(`<text transform="translate(${x0 - 52},${y0 + ph / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}</text>`);
    for (const s of p.series) {
      const pts = s.points.filter((pt) => Number.isFinite(pt.y)).sort((a, b) => a.x - b.x);
      if (pts.length === 0) continue;
      out.push(`<polyline fill="none" stroke="${color(s.name)}" stroke-width="2.5" points="${pts.map((pt) => `${xPos(pt.x).toFixed(1)},${yPos(pt.y).toFixed(1)}`).join(' ')}"/>`);
      for (const pt of pts) {
        out.push(`<circle cx="${xPos(pt.x).toFixed(1)}" cy="${yPos(pt.y).toFixed(1)}" r="4" fill="${color(s.name)}"><title>${esc(`${s.name} C=${pt.x}: ${fmt(pt.y)}`)}</title></circle>`);
      }
    }
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
