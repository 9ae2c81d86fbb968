/** `thingauth token create|list|revoke`: management API tokens with a scope (read: GET only, admin). */
import { Option, type Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, formatTable, print, type ApiCommandOptions } from './common.js';

export function addTokenCommands(program: Command): void {
  const token = program.command('token').description('manage management API tokens (needs an admin token)');

  apiCommand(token, 'create', 'create a token; prints it once (only its hash is stored)')
    .requiredOption('--name <name>', 'what the token is for; shown in the audit as token:<id> (<name>)')
    .addOption(new Option('--scope <scope>', 'read: GET requests and /metrics only; admin: everything').choices(['read', 'admin']).makeOptionMandatory())
    .action(async (o: ApiCommandOptions & { name: string; scope: string }) => {
      const t = await clientFor(o).request('POST', apiPath('tokens'), { name: o.name, scope: o.scope });
      print(o, t, () => `${formatRecord(t)}\n\nStore the token now: it is not shown again. Use it with --token or THINGAUTH_ADMIN_TOKEN.`);
    });

  apiCommand(token, 'list', 'list tokens (ids, names and scopes; never the tokens)').action(async (o: ApiCommandOptions) => {
    const r = await clientFor(o).request('GET', apiPath('tokens'));
    print(o, r, () => (r.items.length === 0 ? 'no tokens (the bootstrap admin token always works)' : formatTable(r.items, ['id', 'name', 'scope', 'createdAt'])));
  });

  apiCommand(token, 'revoke <id>', 'revoke a token; it is refused from its next request on').action(async (id: string, o: ApiCommandOptions) => {
    await clientFor(o).request('DELETE', apiPath('tokens', id));
    print(o, { revoked: id }, () => `revoked token ${id}`);
  });
}
