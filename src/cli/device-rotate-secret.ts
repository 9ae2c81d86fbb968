/**
 * `thingauth device rotate-secret <productKey> <deviceName> [--grace 7d]`: issue a new
 * DeviceSecret while the old one keeps working for the grace period, then print the new
 * secret and when the old one stops working.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { parseGraceText } from '../core/secret-rotation.js';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, print, type ApiCommandOptions } from './common.js';

function graceOption(raw: string): number {
  try {
    return parseGraceText(raw, '--grace');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function addDeviceRotateSecretCommand(device: Command): void {
  apiCommand(device, 'rotate-secret <productKey> <deviceName>', 'issue a new DeviceSecret; the old one keeps working for --grace, then is refused')
    .option('--grace <duration>', 'how long the old secret keeps working: 7d, 12h, 30m, 3600s, or 0 to refuse it at once (default 7d)', graceOption)
    .action(async (pk: string, dn: string, o: ApiCommandOptions & { grace?: number }) => {
      const body = o.grace === undefined ? {} : { graceSeconds: o.grace };
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'secret', 'rotate'), body);
      print(o, r, () =>
        [
          formatRecord({ productKey: r.productKey, deviceName: r.deviceName, iotId: r.iotId, deviceSecret: r.deviceSecret }),
          r.previousSecretExpiresAt ? `the old secret keeps working until ${r.previousSecretExpiresAt}` : 'the old secret no longer works',
        ].join('\n'),
      );
    });
}
