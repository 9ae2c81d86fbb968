/** `thingauth audit`: the audit trail (logins, registrations, management changes), newest first. */
import { InvalidArgumentError, type Command } from 'commander';
import { apiCommand, clientFor, formatTable, intOption, print, type ApiCommandOptions } from './common.js';

interface AuditFlags extends ApiCommandOptions {
  device?: { productKey: string; deviceName: string };
  product?: string;
  action?: string;
  since?: string;
  limit: number;
}

function deviceRef(raw: string): { productKey: string; deviceName: string } {
  const slash = raw.indexOf('/');
  if (slash <= 0 || slash === raw.length - 1) throw new InvalidArgumentError('--device must be <productKey>/<deviceName>');
  return { productKey: raw.slice(0, slash), deviceName: raw.slice(slash + 1) };
}

export function addAuditCommand(program: Command): void {
  apiCommand(program, 'audit', 'show the audit trail, newest first: logins, registrations and management changes')
    .option('--device <productKey/deviceName>', "one device's entries", deviceRef)
    .option('--product <productKey>', "one product's entries")
    .option('--action <action>', 'one action, e.g. mqtt.connect.sign, register.https, "api.post /products"')
    .option('--since <time>', 'entries at or after this ISO 8601 time')
    .option('--limit <n>', 'at most this many (1-10000)', intOption('--limit', 1, 10_000), 100)
    .action(async (o: AuditFlags) => {
      if (o.device && o.product && o.product !== o.device.productKey) throw new Error('--product and --device name different products');
      const q = new URLSearchParams();
      const productKey = o.device?.productKey ?? o.product;
      if (productKey) q.set('productKey', productKey);
      if (o.device) q.set('deviceName', o.device.deviceName);
      if (o.action) q.set('action', o.action);
      if (o.since) q.set('since', o.since);
      q.set('limit', String(o.limit));
      const r = await clientFor(o).request('GET', `/api/v1/audit?${q}`);
      print(o, r, () =>
        r.items.length === 0 ? 'no audit entries' : formatTable(r.items, ['at', 'action', 'actor', 'productKey', 'deviceName', 'sourceAddress', 'result', 'reason']),
      );
    });
}
