/** One JSON line per figure on stdout; the run keeps them for the report and the chart. */
export interface Figure {
  bench: string;
  target?: string;
  transport?: string;
  /** Present instead of numbers when the scenario could not run, with the reason. */
  skipped?: string;
  [k: string]: unknown;
}

export class FigureSink {
  readonly figures: Figure[] = [];
  /** Fields every figure carries from now on (the run sets `store` for each store's pass). */
  context: Record<string, unknown> = {};

  constructor(private readonly write: (line: string) => void = (l) => process.stdout.write(l + '\n')) {}

  emit(figure: Figure): Figure {
    const f: Figure = { ...figure, ...this.context };
    this.figures.push(f);
    this.write(JSON.stringify(f));
    return f;
  }

  skip(bench: string, reason: string, extra: Record<string, unknown> = {}): Figure {
    return this.emit({ bench, ...extra, skipped: reason });
  }
}

/** Progress and notes go to stderr so stdout stays pure JSON lines. */
export function note(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}
