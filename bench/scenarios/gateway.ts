/**
 * Gateway: one gateway logs in N sub-devices with /ext/session/{pk}/{dn}/combine/batch_login
 * in batches of 50 (spec 4.5); reports the seconds from the first batch to the last reply.
 */
import { FigureSink } from '../lib/emit.js';

export interface GatewaySizes {
  subDevices: number;
  batch: number;
  timeLimitMs: number;
}

export async function runGateway(sink: FigureSink, sizes: GatewaySizes, _workDir: string): Promise<void> {
  sink.skip('gateway-batch-login', 'gateway sub-device login (combine/batch_login) has not landed', { target: 'thingauth', n: sizes.subDevices, batch: sizes.batch });
}
