/**
 * `thingauth device slots <pk> <dn>` and `thingauth device revoke-slot <pk> <dn> <slot>`: the
 * pre-registration-free credential slots of a device (up to 5 physical devices per DeviceName
 * through regnwl). Tokens are never shown.
 */
import type { Command } from 'commander';
import { MAX_REGNWL_SLOTS } from '../core/records.js';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatRecord, formatTable, intOption, print, type ApiCommandOptions } from './common.js';

export function addDeviceSlotCommands(device: Command): void {
  apiCommand(device, 'slots <productKey> <deviceName>', `list the pre-registration-free credential slots (regnwl, at most ${MAX_REGNWL_SLOTS}; no tokens)`).action(
    async (pk: string, dn: string, o: ApiCommandOptions) => {
      const r = await clientFor(o).request('GET', apiPath('products', pk, 'devices', dn, 'slots'));
      print(o, r, () =>
        r.items.length === 0
          ? `${pk}/${dn}: no slot issued`
          : `${formatTable(r.items, ['slot', 'status', 'clientId', 'createdAt', 'activatedAt', 'revokedAt'])}\n(${r.items.filter((s: { status: string }) => s.status !== 'REVOKED').length} of ${r.maxSlots} in use)`,
      );
    },
  );

  apiCommand(device, 'revoke-slot <productKey> <deviceName> <slot>', 'revoke one slot: its DeviceToken is refused from now on and a session on it is closed; the slot becomes free for a later regnwl').action(
    async (pk: string, dn: string, slotText: string, o: ApiCommandOptions) => {
      const slot = intOption('<slot>', 1, MAX_REGNWL_SLOTS)(slotText); // refused before any request
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'slots', String(slot), 'revoke'));
      print(o, r, () => formatRecord(r));
    },
  );
}
