/** `thingauth product create|list|get|update|delete|secret` over the management API. */
import { Option, type Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, boolOption, clientFor, formatRecord, formatTable, intOption, print, type ApiCommandOptions } from './common.js';

const NODE_TYPES = ['DEVICE', 'GATEWAY', 'SUB_DEVICE'];

interface ProductFlags extends ApiCommandOptions {
  name?: string;
  nodeType?: string;
  dynamicRegistration?: boolean;
  preRegistrationFree?: boolean;
  requireTls?: boolean;
  replayProtection?: boolean;
  deviceLimit?: number | 'default';
  description?: string;
  productKey?: string;
  productSecret?: string;
}

/** Flags -> request body, leaving out what was not given. */
function productBody(o: ProductFlags): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.name !== undefined) body.productName = o.name;
  if (o.nodeType !== undefined) body.nodeType = o.nodeType;
  for (const k of ['dynamicRegistration', 'preRegistrationFree', 'requireTls', 'replayProtection', 'deviceLimit', 'description', 'productKey', 'productSecret'] as const) {
    if (o[k] !== undefined) body[k] = o[k] === 'default' && k === 'deviceLimit' ? null : o[k];
  }
  return body;
}

// Commander drops a parser's null, so "default" travels as a string and becomes null in productBody.
const deviceLimit = (raw: string): number | 'default' => (raw === 'default' ? 'default' : intOption('--device-limit', 1, 100_000_000)(raw));

export function addProductCommands(program: Command): void {
  const product = program.command('product').description('manage products (ProductKey, ProductSecret, node type, registration switches)');

  apiCommand(product, 'create <productName>', 'create a product; prints its ProductSecret once')
    .addOption(new Option('--node-type <type>', 'DEVICE, GATEWAY or SUB_DEVICE').choices(NODE_TYPES))
    .option('--dynamic-registration', 'devices may fetch their secret with the ProductSecret')
    .option('--pre-registration-free', 'dynamic registration creates unknown devices (needs --dynamic-registration)')
    .option('--require-tls', 'refuse device logins that do not use TLS')
    .option('--replay-protection', 'dynamic registration randoms are single-use')
    .option('--device-limit <n>', 'maximum devices (default: server limit)', deviceLimit)
    .option('--description <text>')
    .option('--product-key <pk>', 'migration: keep an existing ProductKey')
    .option('--product-secret <secret>', 'migration: keep an existing ProductSecret')
    .addOption(new Option('--auth-mode <mode>', 'secret (default) or x509: devices log in with certificates (docs/x509.md)').choices(['secret', 'x509']))
    .action(async (productName: string, o: ProductFlags & { authMode?: string }) => {
      const p = await clientFor(o).request('POST', apiPath('products'), { ...productBody(o), productName, ...(o.authMode ? { authMode: o.authMode } : {}) });
      print(o, p, () => formatRecord(p));
    });

  apiCommand(product, 'list', 'list products (no secrets)')
    .option('--offset <n>', 'skip this many', intOption('--offset', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--limit <n>', 'at most this many (1-1000)', intOption('--limit', 1, 1000), 100)
    .action(async (o: ApiCommandOptions & { offset: number; limit: number }) => {
      const page = await clientFor(o).request('GET', `${apiPath('products')}?offset=${o.offset}&limit=${o.limit}`);
      print(o, page, () =>
        page.items.length === 0
          ? 'no products'
          : `${formatTable(page.items, ['productKey', 'productName', 'nodeType', 'dynamicRegistration', 'createdAt'])}\n(${page.items.length} of ${page.total})`,
      );
    });

  apiCommand(product, 'get <productKey>', 'show a product (no secret)').action(async (pk: string, o: ApiCommandOptions) => {
    const p = await clientFor(o).request('GET', apiPath('products', pk));
    print(o, p, () => formatRecord(p));
  });

  apiCommand(product, 'update <productKey>', 'change a product')
    .option('--name <productName>')
    .addOption(new Option('--node-type <type>', 'only while the product has no devices').choices(NODE_TYPES))
    .option('--dynamic-registration <bool>', 'true or false', boolOption('--dynamic-registration'))
    .option('--pre-registration-free <bool>', 'true or false', boolOption('--pre-registration-free'))
    .option('--require-tls <bool>', 'true or false', boolOption('--require-tls'))
    .option('--replay-protection <bool>', 'true or false', boolOption('--replay-protection'))
    .option('--device-limit <n>', 'maximum devices, or "default" for the server limit', deviceLimit)
    .option('--description <text>')
    .action(async (pk: string, o: ProductFlags) => {
      const body = productBody(o);
      if (Object.keys(body).length === 0) throw new Error('nothing to update: give at least one option (see --help)');
      const p = await clientFor(o).request('PATCH', apiPath('products', pk), body);
      print(o, p, () => formatRecord(p));
    });

  apiCommand(product, 'delete <productKey>', 'delete a product (refused while it has devices)').action(async (pk: string, o: ApiCommandOptions) => {
    await clientFor(o).request('DELETE', apiPath('products', pk));
    print(o, { deleted: pk }, () => `deleted product ${pk}`);
  });

  apiCommand(product, 'secret <productKey>', "print the product's ProductSecret").action(async (pk: string, o: ApiCommandOptions) => {
    const s = await clientFor(o).request('GET', apiPath('products', pk, 'secret'));
    print(o, s, () => formatRecord(s));
  });
}
