/**
 * `thingauth keys status|rotate`: the master key that encrypts stored secrets. Rotation runs in
 * the server without downtime; this command starts it and follows it to the end.
 */
import type { Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, print, type ApiCommandOptions } from './common.js';

function summary(s: Record<string, unknown>): string {
  const { note, error, ...rest } = s;
  return formatRecord({ ...rest, ...(error ? { error } : {}) }) + (note ? `\n\n${note}` : '');
}

export function addKeysCommands(program: Command): void {
  const keys = program.command('keys').description('the master key that encrypts secrets at rest (needs an admin token)');

  apiCommand(keys, 'status', 'current key id, older keys still accepted, the last rotation').action(async (o: ApiCommandOptions) => {
    const s = await clientFor(o).request('GET', apiPath('keys'));
    print(o, s, () => summary(s));
  });

  apiCommand(keys, 'rotate', 're-encrypt every stored secret under a new master key while the server keeps running')
    .option('--no-wait', 'return once the new key is in force, without following the re-encryption')
    .action(async (o: ApiCommandOptions & { wait: boolean }) => {
      const client = clientFor(o);
      let s = await client.request('POST', apiPath('keys', 'rotate'));
      if (!o.json) process.stderr.write(`new key ${s.currentKeyId} in force; re-encrypting stored secrets...\n`);
      while (o.wait && s.state === 'running') {
        await new Promise((r) => setTimeout(r, 300));
        s = await client.request('GET', apiPath('keys'));
        if (!o.json && process.stderr.isTTY) process.stderr.write(`\r${s.rewritten} secrets re-encrypted`);
      }
      if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
      print(o, s, () => summary(s));
      if (s.state === 'failed') process.exitCode = 1;
    });
}
