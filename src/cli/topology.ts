/**
 * `thingauth topo list|add|remove <gatewayProductKey> <gatewayDeviceName> ...`: a gateway's
 * sub-devices through the management API; `thingauth topo release <subPk>/<subDn>` unbinds a
 * sub-device from its gateway (issue 11 item 8). Sub-devices are named `productKey/deviceName`
 * (DeviceNames cannot contain `/`), or by bare DeviceName with `--sub-product <productKey>`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatTable, intOption, print, type ApiCommandOptions } from './common.js';

interface SubOptions extends ApiCommandOptions {
  subProduct?: string;
}

/** `pk/dn` -> {productKey, deviceName}; a bare name takes --sub-product. */
export function parseSubDeviceArgs(args: string[], subProduct?: string): { productKey: string; deviceName: string }[] {
  return args.map((a) => {
    const slash = a.indexOf('/');
    if (slash > 0 && slash < a.length - 1) return { productKey: a.slice(0, slash), deviceName: a.slice(slash + 1) };
    if (slash < 0 && subProduct) return { productKey: subProduct, deviceName: a };
    throw new InvalidArgumentError(`sub-device "${a}" must be productKey/deviceName (or a DeviceName with --sub-product <productKey>)`);
  });
}

export function addTopologyCommands(program: Command): void {
  const topo = program.command('topo').description("a gateway's sub-devices (topology)");

  apiCommand(topo, 'list <gatewayProductKey> <gatewayDeviceName>', 'list the sub-devices of a gateway')
    .option('--offset <n>', 'skip this many', intOption('--offset', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--limit <n>', 'at most this many (1-1000)', intOption('--limit', 1, 1000), 100)
    .action(async (pk: string, dn: string, o: ApiCommandOptions & { offset: number; limit: number }) => {
      const q = new URLSearchParams({ offset: String(o.offset), limit: String(o.limit) });
      const page = await clientFor(o).request('GET', `${apiPath('products', pk, 'devices', dn, 'sub-devices')}?${q}`);
      print(o, page, () =>
        page.items.length === 0
          ? `gateway ${pk}/${dn} has no sub-devices`
          : `${formatTable(page.items, ['productKey', 'deviceName', 'status', 'iotId', 'lastOnlineAt'])}\n(${page.items.length} of ${page.total})`,
      );
    });

  apiCommand(topo, 'add <gatewayProductKey> <gatewayDeviceName> <subDevices...>', 'add sub-devices (productKey/deviceName ...) to a gateway; all or nothing')
    .option('--sub-product <productKey>', 'ProductKey for sub-devices given by bare DeviceName')
    .action(async (pk: string, dn: string, subs: string[], o: SubOptions) => {
      const subDevices = parseSubDeviceArgs(subs, o.subProduct);
      const r = await clientFor(o).request('POST', apiPath('products', pk, 'devices', dn, 'sub-devices'), { subDevices });
      print(o, r, () => {
        const moved = r.moved.length > 0 ? `, ${r.moved.length} moved from another gateway` : '';
        return `gateway ${pk}/${dn}: ${r.added.length} added${moved}; ${r.total} sub-devices now`;
      });
    });

  apiCommand(topo, 'remove <gatewayProductKey> <gatewayDeviceName> <subDevices...>', 'remove sub-devices (productKey/deviceName ...) from a gateway; their logins end')
    .option('--sub-product <productKey>', 'ProductKey for sub-devices given by bare DeviceName')
    .action(async (pk: string, dn: string, subs: string[], o: SubOptions) => {
      const subDevices = parseSubDeviceArgs(subs, o.subProduct);
      const r = await clientFor(o).request('DELETE', apiPath('products', pk, 'devices', dn, 'sub-devices'), { subDevices });
      print(o, r, () => `gateway ${pk}/${dn}: ${r.removed.length} removed`);
    });

  apiCommand(topo, 'release <subDevice>', 'release a sub-device (productKey/deviceName) from the gateway it is bound to, so another gateway may register or add it')
    .option('--sub-product <productKey>', 'ProductKey when the sub-device is given by bare DeviceName')
    .action(async (sub: string, o: SubOptions) => {
      const [s] = parseSubDeviceArgs([sub], o.subProduct);
      const r = await clientFor(o).request('POST', apiPath('products', s!.productKey, 'devices', s!.deviceName, 'release'));
      print(o, r, () => {
        const from = [r.releasedFrom.gateway, r.releasedFrom.registeredBy].filter((g) => g).map((g) => `${g.productKey}/${g.deviceName}`);
        return from.length === 0 ? `${s!.productKey}/${s!.deviceName} was not bound to a gateway` : `${s!.productKey}/${s!.deviceName} released from ${[...new Set(from)].join(', ')}`;
      });
    });
}
