/**
 * `thingauth app create|list|get|delete`: application credentials (appKey/appSecret) over
 * the management API. An application logs in to MQTT with username `app:{appKey}` and may
 * subscribe/publish on the device topics of its products.
 */
import type { Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, formatTable, print, type ApiCommandOptions } from './common.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];
}

export function addAppCommands(program: Command): void {
  const app = program.command('app').description('manage application credentials (MQTT access to the devices of chosen products)');

  apiCommand(app, 'create <name>', 'create an application; prints its appSecret once')
    .requiredOption('--product <productKey>', 'a product it may access (repeat or comma-separate for several)', collect, [])
    .action(async (name: string, o: ApiCommandOptions & { product: string[] }) => {
      const a = await clientFor(o).request('POST', apiPath('applications'), { name, productKeys: o.product });
      print(o, a, () => `${formatRecord(a)}\n\nMQTT login: username app:${a.appKey}, password = appSecret (over TLS only) or an HMAC (see README "Connecting devices").`);
    });

  apiCommand(app, 'list', 'list applications (no secrets)').action(async (o: ApiCommandOptions) => {
    const r = await clientFor(o).request('GET', apiPath('applications'));
    print(o, r, () => (r.items.length === 0 ? 'no applications' : formatTable(r.items, ['appKey', 'name', 'productKeys', 'createdAt'])));
  });

  apiCommand(app, 'get <appKey>', 'show an application (no secret)').action(async (appKey: string, o: ApiCommandOptions) => {
    const a = await clientFor(o).request('GET', apiPath('applications', appKey));
    print(o, a, () => formatRecord(a));
  });

  apiCommand(app, 'delete <appKey>', 'delete an application; its MQTT sessions are closed').action(async (appKey: string, o: ApiCommandOptions) => {
    await clientFor(o).request('DELETE', apiPath('applications', appKey));
    print(o, { deleted: appKey }, () => `deleted application ${appKey}`);
  });
}
