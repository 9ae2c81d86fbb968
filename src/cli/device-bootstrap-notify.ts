/** `thingauth device bootstrap-notify <productKey> [deviceName] [--host h] [--port p] [--use-default]`. */
import type { Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, intOption, print, type ApiCommandOptions } from './common.js';

export function addDeviceBootstrapNotifyCommand(device: Command): void {
  apiCommand(
    device,
    'bootstrap-notify <productKey> [deviceName]',
    'ask a connected device (or every connected device of the product) to run bootstrap again and reconnect where it is told',
  )
    .option('--host <host>', 'MQTT host its next bootstrap answers (stored for the device or product)')
    .option('--port <port>', 'MQTT port its next bootstrap answers (stored)', intOption('--port', 1, 65535))
    .option('--use-default', 'remove the stored host/port: the configured public endpoint applies again')
    .action(async (pk: string, dn: string | undefined, o: ApiCommandOptions & { host?: string; port?: number; useDefault?: boolean }) => {
      const body: Record<string, unknown> = {};
      if (o.host !== undefined) body.host = o.host;
      if (o.port !== undefined) body.port = o.port;
      if (o.useDefault) body.useDefault = true;
      const path = dn === undefined ? apiPath('products', pk, 'bootstrap-notify') : apiPath('products', pk, 'devices', dn, 'bootstrap-notify');
      const r = await clientFor(o).request('POST', path, body);
      const where = r.endpoint ? ` (next bootstrap answers ${r.endpoint.host ?? 'the configured host'}:${r.endpoint.port ?? 'the configured port'})` : '';
      print(o, r, () => `${dn === undefined ? `product ${pk}` : `${pk}/${dn}`}: ${r.notified} connected device(s) notified${where}`);
    });
}
