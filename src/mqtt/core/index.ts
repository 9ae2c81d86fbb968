/**
 * thingauth's own MQTT connection core (issue 15, first stage). Standalone: the product still
 * runs on aedes (src/mqtt/broker.ts); see docs/conformance.md.
 */
export { CoreBroker } from './broker.js';
export { CoreConnection } from './connection.js';
export { MemorySessionStore, Session, type SessionStore } from './session.js';
export { RC } from './reason-codes.js';
export type { CoreClient, CoreHooks, CoreMessage, CoreOptions, Verdict } from './types.js';

import net from 'node:net';
import { CoreBroker } from './broker.js';
import type { CoreOptions } from './types.js';

/** A CoreBroker on a plain TCP listener (tests, open-broker). */
export async function listenCore(options: CoreOptions, port = 0, host = '127.0.0.1'): Promise<{ broker: CoreBroker; server: net.Server; port: number; close(): Promise<void> }> {
  const broker = new CoreBroker(options);
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    broker.handle(socket, socket.remoteAddress ?? '');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return {
    broker,
    server,
    port: addr.port,
    close: async () => {
      // Stop accepting, close every connection, then wait for the listener (it waits for them).
      const listenerClosed = new Promise<void>((r) => server.close(() => r()));
      await broker.close();
      await listenerClosed;
    },
  };
}
