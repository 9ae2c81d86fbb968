/** `thingauth device create|list|get|enable|disable|reset|delete|secret|rotate-secret|slots|revoke-slot|import|export|bootstrap-notify`. */
import { Option, type Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, formatTable, intOption, print, type ApiCommandOptions } from './common.js';
import { addDeviceExportCommand } from './device-export.js';
import { addDeviceImportCommand } from './device-import.js';
import { addDeviceRotateSecretCommand } from './device-rotate-secret.js';
import { addDeviceBootstrapNotifyCommand } from './device-bootstrap-notify.js';
import { addDeviceSlotCommands } from './device-slots.js';

const STATUSES = ['UNACTIVE', 'ONLINE', 'OFFLINE', 'DISABLE'];

export function addDeviceCommands(program: Command): void {
  const device = program.command('device').description('manage devices (DeviceName, DeviceSecret, status)');

  apiCommand(device, 'create <productKey> [deviceName]', 'register a device (name generated when omitted), or --count of them; prints the secrets')
    .option('--nickname <text>', '4-64 characters')
    .option('--count <n>', 'register this many devices with generated names (1-10000)', intOption('--count', 1, 10_000))
    .action(async (pk: string, deviceName: string | undefined, o: ApiCommandOptions & { nickname?: string; count?: number }) => {
      const client = clientFor(o);
      if (o.count !== undefined) {
        if (deviceName !== undefined) throw new Error('give a deviceName or --count, not both');
        const r = await client.request('POST', apiPath('products', pk, 'devices', 'batch'), { count: o.count, ...(o.nickname ? { nickname: o.nickname } : {}) });
        // An X.509 product's devices come with a certificate serial instead of a DeviceSecret.
        const x509 = r.devices.length > 0 && r.devices[0].deviceSecret === undefined;
        print(o, r, () => formatTable(r.devices, ['deviceName', x509 ? 'certificateSerial' : 'deviceSecret', 'iotId']));
        return;
      }
      const body: Record<string, unknown> = {};
      if (deviceName !== undefined) body.deviceName = deviceName;
      if (o.nickname !== undefined) body.nickname = o.nickname;
      const d = await client.request('POST', apiPath('products', pk, 'devices'), body);
      print(o, d, () => formatRecord(d));
    });

  apiCommand(device, 'list <productKey>', 'list devices (no secrets)')
    .addOption(new Option('--status <status>').choices(STATUSES))
    .option('--name <substring>', 'DeviceName contains this')
    .option('--offset <n>', 'skip this many', intOption('--offset', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--limit <n>', 'at most this many (1-1000)', intOption('--limit', 1, 1000), 100)
    .action(async (pk: string, o: ApiCommandOptions & { status?: string; name?: string; offset: number; limit: number }) => {
      const q = new URLSearchParams({ offset: String(o.offset), limit: String(o.limit) });
      if (o.status) q.set('status', o.status);
      if (o.name) q.set('name', o.name);
      const page = await clientFor(o).request('GET', `${apiPath('products', pk, 'devices')}?${q}`);
      print(o, page, () =>
        page.items.length === 0
          ? 'no devices'
          : `${formatTable(page.items, ['deviceName', 'status', 'iotId', 'activatedAt', 'lastOnlineAt'])}\n(${page.items.length} of ${page.total})`,
      );
    });

  apiCommand(device, 'get <productKey> <deviceName>', 'show a device (no secret)').action(async (pk: string, dn: string, o: ApiCommandOptions) => {
    const d = await clientFor(o).request('GET', apiPath('products', pk, 'devices', dn));
    print(o, d, () => formatRecord({ ...d, gateway: d.gateway ? `${d.gateway.productKey}/${d.gateway.deviceName}` : null }));
  });

  apiCommand(device, 'secret <productKey> <deviceName>', "print the device's DeviceSecret").action(async (pk: string, dn: string, o: ApiCommandOptions) => {
    const s = await clientFor(o).request('GET', apiPath('products', pk, 'devices', dn, 'secret'));
    print(o, s, () => formatRecord(s));
  });

  const switches: [string, string][] = [
    ['enable', 'enable a device'],
    ['disable', 'disable a device: logins refused, sessions closed'],
    ['reset', 'back to UNACTIVE so dynamic registration can run again (secret kept, regnwl slots cleared)'],
  ];
  for (const [action, description] of switches) {
    apiCommand(device, `${action} <productKey> <deviceName>`, description).action(async (pk: string, dn: string, o: ApiCommandOptions) => {
      const d = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, action));
      print(o, d, () => `${d.productKey}/${d.deviceName}: ${d.status}`);
    });
  }

  apiCommand(device, 'delete <productKey> <deviceName>', 'delete a device').action(async (pk: string, dn: string, o: ApiCommandOptions) => {
    await clientFor(o).request('DELETE', apiPath('products', pk, 'devices', dn));
    print(o, { deleted: { productKey: pk, deviceName: dn } }, () => `deleted device ${pk}/${dn}`);
  });

  addDeviceRotateSecretCommand(device);
  addDeviceSlotCommands(device);
  addDeviceImportCommand(device);
  addDeviceExportCommand(device);
  addDeviceBootstrapNotifyCommand(device);
}
