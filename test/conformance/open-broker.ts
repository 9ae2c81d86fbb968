/**
 * The MQTT connection core alone, with an allow-all policy, for conformance suites
 * (Eclipse Paho interoperability tests) and measurements. NEVER used by `thingauth serve`.
 *   node dist/test/conformance/open-broker.js --port <n> [--host 127.0.0.1]
 *   --deny-subscribe <filter>  refuse SUBSCRIBE to exactly this filter (the Paho suites expect
 *                              "test/nosubscribe" to be refused: their subscribe_failure test)
 *   --server-keep-alive <s>    override client keep-alives (v5 Server Keep Alive)
 *   --max-keep-alive <s>       cap client keep-alives (0 or larger gets this; the suites expect 60)
 * Prints "listening <port>" and exits on SIGTERM/SIGINT.
 */
import { listenCore } from '../../src/mqtt/core/index.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(arg('port') ?? '0');
const host = arg('host') ?? '127.0.0.1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: open-broker.js --port <0..65535> [--host <addr>]');
  process.exit(2);
}
const keepAlive = arg('server-keep-alive');
const denySubscribe = arg('deny-subscribe');
const maxKeepAlive = arg('max-keep-alive');
const core = await listenCore(
  {
    authenticate: async () => ({ ok: true }),
    authorizePublish: async () => ({ ok: true }),
    authorizeSubscribe: async (_client, sub) =>
      denySubscribe !== undefined && sub.topic === denySubscribe ? { ok: false, reasonCode: 0x80, reasonString: 'test policy' } : { ok: true },
    ...(keepAlive !== undefined ? { serverKeepAlive: Number(keepAlive) } : {}),
    ...(maxKeepAlive !== undefined ? { maxKeepAlive: Number(maxKeepAlive) } : {}),
  },
  port,
  host,
);
console.log(`listening ${core.port}`);
const stop = () => {
  void core.close().then(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
