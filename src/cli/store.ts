/**
 * `thingauth store copy --from <url> --to <url>`: moves the whole registry from one store to
 * another (SQLite -> PostgreSQL) through the Store port, then verifies both sides. Unlike the
 * other commands it opens the stores itself: no server may run against the destination while
 * it copies (the server's caches would not see the writes, and its own writes could race).
 */
import fs from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { KeyringCipher, parseMasterKey, type SecretCipher } from '../core/secret-cipher.js';
import { ensureDataDir, loadKeyring, MASTER_KEY_FILE } from '../data-dir.js';
import { COPY_TABLES, copyStore, type CopyProgress, type CopyReport, type CopyTable } from '../services/store-copy.js';
import type { Store } from '../store/store.js';
import { formatTable, intOption } from './common.js';

interface CopyCliOptions {
  from: string;
  to: string;
  fromMasterKey?: string;
  toMasterKey?: string;
  fromDataDir?: string;
  toDataDir?: string;
  batchSize: number;
  verifyOnly?: boolean;
  progress: boolean;
  json?: boolean;
}

/**
 * The keyring of one side: its --*-master-key, else its --*-data-dir's master.key, else the
 * server's usual sources (THINGAUTH_MASTER_KEY with THINGAUTH_MASTER_KEY_PREVIOUS, else
 * master.key in THINGAUTH_DATA_DIR or ./data). A source's master.key must exist; a
 * destination's is created when absent (the new server's data dir).
 */
function cipherFor(side: 'from' | 'to', key: string | undefined, dataDir: string | undefined): SecretCipher {
  if (key) return new KeyringCipher(parseMasterKey(key));
  if (!dataDir && process.env.THINGAUTH_MASTER_KEY) {
    const { keys } = loadKeyring('', process.env.THINGAUTH_MASTER_KEY, process.env.THINGAUTH_MASTER_KEY_PREVIOUS);
    return new KeyringCipher(keys[0]!, keys.slice(1));
  }
  const dir = dataDir ?? process.env.THINGAUTH_DATA_DIR ?? './data';
  if (side === 'from' && !fs.existsSync(path.join(dir, MASTER_KEY_FILE))) {
    throw new Error(`no ${MASTER_KEY_FILE} in ${dir} for the source; give --from-data-dir or --from-master-key`);
  }
  if (side === 'to') ensureDataDir(dir);
  const { keys } = loadKeyring(dir, undefined, undefined);
  return new KeyringCipher(keys[0]!, keys.slice(1));
}

/** Bars still drawing; stopped on any exit so a failed copy does not leave the cursor hidden. */
const openBars: cliProgress.MultiBar[] = [];

function progressBars(enabled: boolean, label: string): CopyProgress | undefined {
  if (!enabled) return undefined;
  const multi = new cliProgress.MultiBar(
    { stream: process.stderr, format: `${label} {table} [{bar}] {value}/{total}`, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  openBars.push(multi);
  const bars = new Map<CopyTable, { bar: cliProgress.SingleBar; value: number; growing: boolean }>();
  const width = Math.max(...COPY_TABLES.map((t) => t.length));
  return {
    start(table, total) {
      bars.set(table, { bar: multi.create(total ?? 0, 0, { table: table.padEnd(width) }), value: 0, growing: total === undefined });
    },
    advance(table, n) {
      const b = bars.get(table);
      if (!b) return;
      b.value += n;
      // The audit's size is not known ahead: its total grows with what was read.
      if (b.growing) b.bar.setTotal(b.value);
      b.bar.update(b.value);
    },
    done(table) {
      if (table === COPY_TABLES[COPY_TABLES.length - 1]) multi.stop();
    },
  };
}

function human(from: string, to: string, copied: CopyReport | undefined, verified: CopyReport, seconds: number): string {
  const rows = COPY_TABLES.map((t) => ({
    table: t,
    source: verified.tables[t].source,
    destination: verified.tables[t].destination,
    created: copied?.tables[t].created ?? '-',
    updated: copied?.tables[t].updated ?? '-',
    identical: copied ? copied.tables[t].identical : verified.tables[t].identical,
  }));
  const lines = [`${copied ? 'copied' : 'verified'} ${from} -> ${to} in ${seconds.toFixed(1)} s`, '', formatTable(rows, ['table', 'source', 'destination', 'created', 'updated', 'identical']), ''];
  if (verified.mismatchCount === 0) {
    lines.push('verified: every table has the same count on both sides and every record matches');
  } else {
    lines.push(`MISMATCH: ${verified.mismatchCount} difference(s) between the source and the destination:`);
    for (const m of verified.mismatches.slice(0, 50)) lines.push(`  ${m.table}${m.key ? ` ${m.key}` : ''}: ${m.problem}`);
    if (verified.mismatchCount > 50) lines.push(`  ... and ${verified.mismatchCount - 50} more (--json lists up to 1000)`);
  }
  return lines.join('\n');
}

export function addStoreCommands(program: Command): void {
  const store = program.command('store').description('the registry database itself (works on the files, not through a server)');
  store
    .command('copy')
    .description(
      'copy every product, device (secrets, slots, state), topology link, application, token hash, secret setting and audit entry ' +
        'from one store to another, then verify; idempotent and resumable. Stop the server first: none may run against the destination',
    )
    .requiredOption('--from <url>', 'source store, e.g. sqlite:/var/lib/thingauth/thingauth.db')
    .requiredOption('--to <url>', 'destination store, e.g. sqlite:/new/thingauth.db (postgres:// with the PostgreSQL adapter)')
    .option('--from-master-key <key>', "source master key (64 hex or base64); default: --from-data-dir's master.key, else THINGAUTH_MASTER_KEY, else THINGAUTH_DATA_DIR or ./data")
    .option('--to-master-key <key>', "destination master key; default: --to-data-dir's master.key (created if absent), else as for the source")
    .option('--from-data-dir <dir>', 'data dir holding the source master.key')
    .option('--to-data-dir <dir>', 'data dir holding (or to hold) the destination master.key')
    .option('--batch-size <n>', 'records per transaction (1-100000)', intOption('--batch-size', 1, 100_000), 5000)
    .option('--verify-only', 'compare the two stores and report; write nothing')
    .option('--no-progress', 'no progress bars')
    .option('--json', 'print a JSON summary instead of text')
    .action(async (o: CopyCliOptions) => {
      // Loaded here: the other commands never open a store and need not load its driver.
      const { openStoreByUrl, redactStoreUrl, sqliteFileOf } = await import('../store/open-store.js');
      const fromFile = sqliteFileOf(o.from);
      if (fromFile !== undefined && fromFile === sqliteFileOf(o.to)) throw new InvalidArgumentError('--from and --to name the same database');
      const fromCipher = cipherFor('from', o.fromMasterKey, o.fromDataDir);
      const toCipher = cipherFor('to', o.toMasterKey, o.toDataDir);
      const started = Date.now();
      let from: Store | undefined;
      let to: Store | undefined;
      try {
        from = await openStoreByUrl(o.from, fromCipher, { mustExist: true });
        to = await openStoreByUrl(o.to, toCipher, { mustExist: !!o.verifyOnly });
        const bars = o.progress && !o.json && process.stderr.isTTY === true;
        const copied = o.verifyOnly ? undefined : await copyStore(from, to, { batchSize: o.batchSize, write: true, progress: progressBars(bars, 'copy  ') });
        const verified = await copyStore(from, to, { batchSize: o.batchSize, write: false, progress: progressBars(bars, 'verify') });
        const seconds = (Date.now() - started) / 1000;
        const fromShown = redactStoreUrl(o.from);
        const toShown = redactStoreUrl(o.to);
        const summary = {
          from: fromShown,
          to: toShown,
          seconds,
          tables: Object.fromEntries(
            COPY_TABLES.map((t) => [t, { source: verified.tables[t].source, destination: verified.tables[t].destination, ...(copied ? { created: copied.tables[t].created, updated: copied.tables[t].updated, identical: copied.tables[t].identical } : { identical: verified.tables[t].identical }) }]),
          ),
          verified: verified.mismatchCount === 0,
          mismatchCount: verified.mismatchCount,
          mismatches: verified.mismatches,
        };
        process.stdout.write((o.json ? JSON.stringify(summary, null, 2) : human(fromShown, toShown, copied, verified, seconds)) + '\n');
        if (verified.mismatchCount > 0) process.exitCode = 1;
      } catch (e) {
        // A secret that does not decrypt is nearly always the wrong key for one side.
        if (e instanceof Error && /stored secret/.test(e.message)) {
          throw new Error(`${e.message}: is the master key of that side right? (--from-master-key/--from-data-dir, --to-master-key/--to-data-dir)`);
        }
        throw e;
      } finally {
        for (const m of openBars.splice(0)) m.stop();
        await from?.close();
        await to?.close();
      }
    });
}
