/**
 * X.509 behind HAProxy in TCP passthrough (issue 16, docs/x509.md "Which deployment verifies
 * what"): a private HAProxy (`mode tcp`, TLS not terminated) in front of the MQTTS listener;
 * the TLS session, client certificate included, runs between device and thingauth, so
 * thingauth verifies it: the device logs in and a foreign-CA certificate is refused.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort } from '../../bench/lib/ports.js';
import { caOf, endClient } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { deviceSubject, makeCa, signCert, x509Device, x509Product } from './x509-helpers.js';

const HAPROXY = '/usr/sbin/haproxy';

function waitForPort(port: number, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > until) reject(new Error(`haproxy did not listen on ${port}`));
        else setTimeout(tryOnce, 50);
      });
    };
    tryOnce();
  });
}

if (!fs.existsSync(HAPROXY) && !process.env.CI) {
  test('X.509 behind HAProxy passthrough', { skip: `${HAPROXY} not installed` }, () => undefined);
} else {
  describe('X.509 behind HAProxy in TCP passthrough', () => {
    let server: TestServer;
    let haproxy: ChildProcess;
    let port: number;
    let pk: string;

    before(async () => {
      server = await startTestServer({ loginFailThreshold: '0' });
      pk = await x509Product(server);
      port = await freePort();
      const dir = makeTempDir('thingauth-haproxy-');
      const cfg = path.join(dir, 'haproxy.cfg');
      fs.writeFileSync(
        cfg,
        [
          'global',
          '  maxconn 200',
          'defaults',
          '  mode tcp',
          '  timeout connect 5s',
          '  timeout client 60s',
          '  timeout server 60s',
          'frontend mqtts_passthrough',
          `  bind 127.0.0.1:${port}`,
          '  default_backend thingauth',
          'backend thingauth',
          `  server node1 127.0.0.1:${server.running.listeners.mqtts!.port}`,
          '',
        ].join('\n'),
      );
      haproxy = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
      haproxy.stderr!.resume();
      await waitForPort(port);
    });
    after(async () => {
      if (haproxy && haproxy.exitCode === null) {
        const exited = new Promise((r) => haproxy.once('exit', r));
        haproxy.kill('SIGTERM');
        await exited;
      }
      await server.stop();
    });

    function connect(cert: string, key: string): Promise<{ client?: MqttClient; code?: number; identity?: unknown }> {
      return new Promise((resolve) => {
        const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
          ca: caOf(server), servername: 'localhost', rejectUnauthorized: true, cert, key,
          clientId: '.|securemode=2|', username: '', password: '', keepalive: 60, reconnectPeriod: 0, connectTimeout: 5_000,
        });
        let code: number | undefined;
        client.on('message', (topic, payload) => {
          if (topic === '/ext/auth/identity/response') resolve({ client, identity: JSON.parse(payload.toString()) });
        });
        client.on('error', (err: Error & { code?: number }) => {
          if (typeof err.code === 'number') code = err.code;
        });
        client.once('close', () => {
          client.end(true);
          resolve({ code });
        });
      });
    }

    it('thingauth sees the client certificate through the proxy: the device logs in and is told who it is', async () => {
      const d = await x509Device(server, pk, 'haproxy-x509-01');
      const r = await connect(d.cert, d.key);
      assert.deepEqual(r.identity, { productKey: pk, deviceName: d.deviceName });
      await endClient(r.client);
    });

    it('a certificate with the right subject from a foreign CA is refused through the proxy too', async () => {
      const foreign = await makeCa('attacker');
      const forged = await signCert({ issuer: foreign, ...deviceSubject(pk, 'haproxy-x509-01') });
      const r = await connect(forged.pem, forged.keyPem);
      assert.equal(r.code, 5);
    });
  });
}
