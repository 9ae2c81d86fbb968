/**
 * The caps on MQTT connections not logged in yet (pending-connections.ts) and their settings:
 * per source (IPv6 per /64, IPv4-mapped as IPv4), in total, 0 = off, release on login or
 * close exactly once; THINGAUTH_MQTT_PENDING_PER_SOURCE / _TOTAL defaults and validation.
 * The e2e side (real sockets on every listener) is test/e2e/security-packet-size.test.ts.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { ConfigError, configInputFromEnv, loadConfig } from '../../src/config.js';
import { PendingConnections } from '../../src/mqtt/pending-connections.js';

/** Just what the gate uses of a socket: its peer address, destroy() and 'close'. */
class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(readonly remoteAddress: string | undefined) {
    super();
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}
const sock = (a: string | undefined) => new FakeSocket(a) as unknown as net.Socket & FakeSocket;

describe('pending connections gate', () => {
  it('caps per source; other sources are unaffected; a close frees a slot', () => {
    const refused: string[] = [];
    const g = new PendingConnections({ perSource: 2, total: 100 }, (r, s) => refused.push(`${r}:${s}`));
    const a = [sock('10.0.0.1'), sock('::ffff:10.0.0.1')];
    for (const s of a) assert.equal(g.admit(s), true);
    const third = sock('10.0.0.1');
    assert.equal(g.admit(third), false);
    assert.equal(third.destroyed, true);
    assert.deepEqual(refused, ['per_source:10.0.0.1']);
    assert.equal(g.admit(sock('10.0.0.2')), true);
    a[0]!.destroy();
    assert.equal(g.size('10.0.0.1'), 1);
    assert.equal(g.admit(sock('10.0.0.1')), true);
  });

  it('IPv6 addresses count per /64', () => {
    const g = new PendingConnections({ perSource: 2, total: 0 });
    assert.equal(g.admit(sock('2001:db8:1:2::1')), true);
    assert.equal(g.admit(sock('2001:db8:1:2:ffff::9')), true);
    assert.equal(g.admit(sock('2001:db8:1:2::abcd')), false);
    assert.equal(g.admit(sock('2001:db8:1:3::1')), true);
  });

  it('caps in total over all sources; 0 switches each cap off', () => {
    const g = new PendingConnections({ perSource: 0, total: 3 });
    for (let i = 0; i < 3; i++) assert.equal(g.admit(sock('10.0.0.1')), true);
    assert.equal(g.admit(sock('10.9.9.9')), false);
    assert.equal(g.size(), 3);
    const off = new PendingConnections({ perSource: 0, total: 0 });
    for (let i = 0; i < 1000; i++) assert.equal(off.admit(sock('10.0.0.1')), true);
  });

  it('release on login and the later close count once; an unknown address counts in the total only', () => {
    const g = new PendingConnections({ perSource: 1, total: 2 });
    const s = sock('10.0.0.1');
    assert.equal(g.admit(s), true);
    g.release(s); // CONNACK 0
    g.release(s);
    s.destroy(); // and later the device leaves
    assert.equal(g.size(), 0);
    assert.equal(g.size('10.0.0.1'), 0);
    const gone = sock(undefined);
    assert.equal(g.admit(gone), true);
    assert.equal(g.size(), 1);
    gone.destroy();
    assert.equal(g.size(), 0);
  });
});

describe('pending connection settings', () => {
  it('default 64 per source and 10,000 in total; read from THINGAUTH_MQTT_PENDING_*', () => {
    const d = loadConfig({});
    assert.equal(d.mqttPendingPerSource, 64);
    assert.equal(d.mqttPendingTotal, 10_000);
    const c = loadConfig(configInputFromEnv({ THINGAUTH_MQTT_PENDING_PER_SOURCE: '0', THINGAUTH_MQTT_PENDING_TOTAL: '500' }));
    assert.equal(c.mqttPendingPerSource, 0);
    assert.equal(c.mqttPendingTotal, 500);
  });

  it('bad values name the variable and the flag', () => {
    for (const [k, v] of [['mqttPendingPerSource', '-1'], ['mqttPendingPerSource', 'many'], ['mqttPendingTotal', '1.5']] as const) {
      assert.throws(
        () => loadConfig({ [k]: v }),
        (e: unknown) => e instanceof ConfigError && /THINGAUTH_MQTT_PENDING_(PER_SOURCE|TOTAL) \(--mqtt-pending-(per-source|total)\)/.test(e.message),
      );
    }
  });
});
