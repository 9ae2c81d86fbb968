/**
 * What every API-backed command shares: the connection flags (--url, --token, --data-dir),
 * --json, number parsing and human-readable printing. Options are added per leaf command,
 * not on the program, so they never swallow `serve --data-dir`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { ApiClient, resolveConnection } from './api-client.js';

export interface ApiCommandOptions {
  url?: string;
  token?: string;
  dataDir?: string;
  json?: boolean;
}

/** Adds a subcommand that talks to the server; use `clientFor(opts)` in its action. */
export function apiCommand(parent: Command, nameAndArgs: string, description: string): Command {
  return parent
    .command(nameAndArgs)
    .description(description)
    .option('--url <url>', 'management API URL (env THINGAUTH_URL, default http://127.0.0.1:8080)')
    .option('--token <token>', 'admin token (env THINGAUTH_ADMIN_TOKEN, else <data dir>/admin-token)')
    .option('--data-dir <dir>', 'server data dir to read the admin token from (env THINGAUTH_DATA_DIR, default ./data)')
    .option('--json', 'print JSON instead of text');
}

export function clientFor(opts: ApiCommandOptions): ApiClient {
  return new ApiClient(resolveConnection(opts));
}

export function intOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
}

export function boolOption(name: string) {
  return (raw: string): boolean => {
    const v = raw.toLowerCase();
    if (['true', 'on', 'yes', '1'].includes(v)) return true;
    if (['false', 'off', 'no', '0'].includes(v)) return false;
    throw new InvalidArgumentError(`${name} must be true or false`);
  };
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** "key: value" lines, keys aligned. */
export function formatRecord(record: Record<string, unknown>): string {
  const keys = Object.keys(record);
  const w = Math.max(...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(w)}  ${cell(record[k])}`).join('\n');
}

/** A plain text table of the given columns. */
export function formatTable(rows: Record<string, unknown>[], columns: string[]): string {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}

export function print(opts: ApiCommandOptions, data: unknown, human: () => string): void {
  process.stdout.write((opts.json ? JSON.stringify(data, null, 2) : human()) + '\n');
}
