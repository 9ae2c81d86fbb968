/**
 * `thingauth device import <productKey> --file names.txt`: registers one device per line.
 * The file is read twice as a stream: first to check every name (nothing is sent if one is
 * bad or repeated, with its line number), then to send batches of up to 10,000 to the batch
 * route with a progress bar on stderr. Batches are all-or-nothing on the server; if one is
 * refused the import stops and says how many devices the earlier batches created.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { DEVICE_NAME_RE } from '../core/names.js';
import { MAX_BATCH } from '../services/registry.js';
import { ApiError, apiPath } from './api-client.js';
import { apiCommand, clientFor, intOption, print, type ApiCommandOptions } from './common.js';

interface ImportOptions extends ApiCommandOptions {
  file: string;
  batchSize: number;
  progress: boolean;
}

async function* namesOf(file: string): AsyncGenerator<{ name: string; line: number }> {
  const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of rl) {
    line++;
    const name = raw.trim();
    if (name === '' || name.startsWith('#')) continue;
    yield { name, line };
  }
}

/** First pass: count and check. Throws with up to 20 problems, each with its line number. */
async function checkFile(file: string): Promise<number> {
  const firstLine = new Map<string, number>();
  const problems: string[] = [];
  let count = 0;
  for await (const { name, line } of namesOf(file)) {
    count++;
    if (!DEVICE_NAME_RE.test(name)) {
      problems.push(`line ${line}: "${name.slice(0, 40)}" is not a valid DeviceName (4-32 characters of A-Z a-z 0-9 - _ @ . :)`);
    } else if (firstLine.has(name)) {
      problems.push(`line ${line}: "${name}" repeats line ${firstLine.get(name)}`);
    } else {
      firstLine.set(name, line);
    }
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 20).join('\n  ');
    throw new Error(`${file} has ${problems.length} bad line(s); nothing was imported:\n  ${shown}${problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : ''}`);
  }
  if (count === 0) throw new Error(`${file} holds no DeviceNames (one per line)`);
  return count;
}

export function addDeviceImportCommand(device: Command): void {
  apiCommand(device, 'import <productKey>', 'register every DeviceName in a file (one per line), in batches, with a progress bar')
    .requiredOption('--file <path>', 'text file with one DeviceName per line (blank lines and # comments skipped)')
    .option('--batch-size <n>', `names per request (1-${MAX_BATCH})`, intOption('--batch-size', 1, MAX_BATCH), MAX_BATCH)
    .option('--no-progress', 'no progress bar')
    .action(async (pk: string, o: ImportOptions) => {
      const client = clientFor(o);
      const started = Date.now();
      // Fail fast on an unknown product or a bad token before reading a big file.
      await client.request('GET', apiPath('products', pk));
      try {
        await fs.promises.access(o.file, fs.constants.R_OK);
      } catch {
        throw new Error(`cannot read --file ${o.file}`);
      }
      const total = await checkFile(o.file);

      const bar =
        o.progress && !o.json
          ? new cliProgress.SingleBar(
              { stream: process.stderr, format: 'importing [{bar}] {percentage}% | {value}/{total} devices | {eta_formatted} left', hideCursor: true },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
      bar?.start(total, 0);

      let created = 0;
      let batches = 0;
      let batch: string[] = [];
      let batchFirstLine = 0;
      let lastLine = 0;
      const send = async () => {
        try {
          // Only the count comes back: the secrets are exported afterwards (device export).
          const r = await client.request<{ created: number }>('POST', `${apiPath('products', pk, 'devices', 'batch')}?credentials=false`, { deviceNames: batch });
          created += r.created;
          batches++;
          bar?.increment(batch.length);
        } catch (e) {
          bar?.stop();
          const why = e instanceof ApiError ? e.message : (e as Error).message;
          throw new Error(
            `batch ${batches + 1} (lines ${batchFirstLine}-${lastLine}) was refused: ${why}\n` +
              `nothing from that batch was written; ${created} devices from earlier batches were created. ` +
              `Remove the lines already imported (the first ${created} names) and run the import again.`,
          );
        }
        batch = [];
      };
      for await (const { name, line } of namesOf(o.file)) {
        if (batch.length === 0) batchFirstLine = line;
        batch.push(name);
        lastLine = line;
        if (batch.length >= o.batchSize) await send();
      }
      if (batch.length > 0) await send();
      bar?.stop();

      const seconds = (Date.now() - started) / 1000;
      const summary = { productKey: pk, file: o.file, created, batches, seconds };
      print(o, summary, () => `imported ${created} devices into ${pk} in ${batches} batch(es), ${seconds.toFixed(1)} s. Export their secrets with: thingauth device export ${pk} --format csv --out <file>`);
    });
}
