/**
 * `thingauth device export <productKey> --format csv`: the production-line credentials
 * (ProductKey,DeviceName,DeviceSecret) streamed from the server to stdout or a file. The
 * file is mode 0600 whatever it was before (an existing 0644 file is tightened before the
 * first byte is written): it holds every secret of the product.
 */
import fs from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, print, type ApiCommandOptions } from './common.js';

interface ExportOptions extends ApiCommandOptions {
  format: 'csv' | 'jsonl';
  out?: string;
}

export function addDeviceExportCommand(device: Command): void {
  apiCommand(device, 'export <productKey>', 'write every device of the product with its secret as CSV (ProductKey,DeviceName,DeviceSecret)')
    .addOption(new Option('--format <format>', 'output format; jsonl adds iotId, nickname and activation, for `thingauth import devices`').choices(['csv', 'jsonl']).default('csv'))
    .option('--out <file>', 'write to this file (mode 0600) instead of stdout')
    .action(async (pk: string, o: ExportOptions) => {
      const url = o.format === 'jsonl' ? `${apiPath('export', 'products', pk, 'devices')}?format=jsonl` : `${apiPath('products', pk, 'device-credentials')}?format=csv`;
      const body = await clientFor(o).download(url);
      let lines = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
          cb(null, chunk);
        },
      });
      if (o.out) {
        // The open mode only applies to a new file: fchmod the descriptor before writing.
        const fd = fs.openSync(o.out, 'w', 0o600);
        try {
          fs.fchmodSync(fd, 0o600);
        } catch (e) {
          fs.closeSync(fd);
          throw e;
        }
        await pipeline(body, counter, fs.createWriteStream(o.out, { fd }));
        const devices = Math.max(0, o.format === 'jsonl' ? lines : lines - 1);
        print(o, { productKey: pk, file: o.out, devices }, () => `exported ${devices} devices of ${pk} to ${o.out}`);
      } else {
        await pipeline(body, counter, process.stdout, { end: false });
      }
    });
}
