/** Configuration: defaults, environment, and a clear message naming each bad value. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_ENV, ConfigError, configInputFromEnv, loadConfig, sqlitePath, type ConfigInput } from '../../src/config.js';

function problemsOf(input: ConfigInput): string[] {
  try {
    loadConfig(input);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.match(e.message, /^invalid configuration:/);
    for (const p of e.problems) assert.ok(e.message.includes(p), 'every problem is in the message');
    return e.problems;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(input)}`);
}

describe('config', () => {
  it('defaults match the documented ones', () => {
    const c = loadConfig({});
    assert.equal(c.dataDir, path.resolve('./data'));
    assert.equal(c.httpPort, 8080);
    assert.equal(c.httpsPort, 8443);
    assert.equal(c.mqttPort, 1883);
    assert.equal(c.mqttsPort, 8883);
    assert.equal(c.wsPort, 8083);
    assert.equal(c.adminToken, undefined);
    assert.equal(c.databaseUrl, undefined);
    assert.equal(c.tlsCert, undefined);
    assert.deepEqual(c.hostnames, []);
    assert.equal(c.deviceLimit, 500_000);
    assert.equal(c.subDeviceLimit, 1_500);
    assert.equal(c.sqliteSynchronous, 'FULL');
    assert.equal(c.keepaliveMinSeconds, 30, 'the platform minimum (spec 1.5)');
    assert.equal(c.cacheTtlSeconds, 0, 'one process on SQLite sees every change as an event');
    assert.equal(loadConfig({ databaseUrl: 'postgres://u@127.0.0.1:5432/db' }).cacheTtlSeconds, 5, 'a shared store bounds staleness');
    assert.equal(sqlitePath(c), path.join(path.resolve('./data'), 'thingauth.db'));
  });

  it('reads every THINGAUTH_* variable, ignoring empty ones', () => {
    const env: NodeJS.ProcessEnv = {
      THINGAUTH_DATA_DIR: '/tmp/ta-data',
      THINGAUTH_HTTP_PORT: '0',
      THINGAUTH_MQTT_PORT: '11883',
      THINGAUTH_HOSTNAMES: 'iot.example.com, gw.example.com ,',
      THINGAUTH_DEVICE_LIMIT: '10',
      THINGAUTH_SQLITE_SYNCHRONOUS: 'normal',
      THINGAUTH_ADMIN_TOKEN: '',
      UNRELATED: 'x',
    };
    const input = configInputFromEnv(env);
    assert.equal(input.adminToken, undefined, 'empty means unset');
    assert.equal(Object.keys(input).length, 6);
    const c = loadConfig(input);
    assert.equal(c.dataDir, '/tmp/ta-data');
    assert.equal(c.httpPort, 0, 'port 0 = ephemeral');
    assert.equal(c.mqttPort, 11883);
    assert.deepEqual(c.hostnames, ['iot.example.com', 'gw.example.com']);
    assert.equal(c.deviceLimit, 10);
    assert.equal(c.sqliteSynchronous, 'NORMAL');
    for (const name of Object.values(CONFIG_ENV)) assert.match(name, /^THINGAUTH_[A-Z_]+$/);
  });

  it('a bad port names the variable, the flag and the value', () => {
    for (const bad of ['65536', '-1', 'http', '80.5']) {
      const [p] = problemsOf({ httpPort: bad });
      assert.match(p!, /THINGAUTH_HTTP_PORT \(--http-port\) must be a port number 0-65535/);
      assert.ok(p!.includes(`"${bad}"`));
    }
    assert.match(problemsOf({ mqttsPort: 'x' })[0]!, /THINGAUTH_MQTTS_PORT/);
  });

  it('bad numbers and choices say what is allowed', () => {
    assert.match(problemsOf({ deviceLimit: '0' })[0]!, /THINGAUTH_DEVICE_LIMIT \(--device-limit\) must be a whole number from 1 to/);
    assert.match(problemsOf({ deviceLimit: 'lots' })[0]!, /"lots"/);
    assert.match(problemsOf({ subDeviceLimit: '1.5' })[0]!, /THINGAUTH_SUB_DEVICE_LIMIT/);
    assert.match(problemsOf({ tlsProfile: 'tls13' })[0]!, /THINGAUTH_TLS_PROFILE \(--tls-profile\) must be one of compat, strict, got "tls13"/);
    assert.match(problemsOf({ sqliteSynchronous: 'OFF' })[0]!, /must be one of FULL, NORMAL/);
    assert.match(problemsOf({ logLevel: 'loud' })[0]!, /THINGAUTH_LOG_LEVEL/);
    assert.match(problemsOf({ keepaliveMinSeconds: '0' })[0]!, /THINGAUTH_KEEPALIVE_MIN_SECONDS \(--keepalive-min-seconds\) must be a whole number from 1 to 1200/);
    assert.match(problemsOf({ keepaliveMinSeconds: '1201' })[0]!, /THINGAUTH_KEEPALIVE_MIN_SECONDS/);
  });

  it('the advertised bootstrap endpoint: unset by default, a host name or IP and a real port (issue 12 item 3)', () => {
    const c = loadConfig({});
    assert.equal(c.publicMqttHost, undefined);
    assert.equal(c.publicMqttPort, undefined);
    const set = loadConfig({ publicMqttHost: 'mqtt.example.com', publicMqttPort: '443' });
    assert.equal(set.publicMqttHost, 'mqtt.example.com');
    assert.equal(set.publicMqttPort, 443);
    assert.equal(loadConfig({ publicMqttHost: '10.0.0.7' }).publicMqttHost, '10.0.0.7');
    assert.equal(loadConfig({ publicMqttHost: '::1' }).publicMqttHost, '::1');
    assert.match(problemsOf({ publicMqttHost: 'mqtt.example.com:1883' })[0]!, /THINGAUTH_PUBLIC_MQTT_HOST \(--public-mqtt-host\) must be a host name or an IP address/);
    assert.match(problemsOf({ publicMqttHost: 'a"b' })[0]!, /THINGAUTH_PUBLIC_MQTT_HOST/);
    assert.match(problemsOf({ publicMqttPort: '0' })[0]!, /THINGAUTH_PUBLIC_MQTT_PORT \(--public-mqtt-port\) must be a whole number from 1 to 65535/);
    assert.match(problemsOf({ publicMqttPort: '65536' })[0]!, /THINGAUTH_PUBLIC_MQTT_PORT/);
  });

  it('a short admin token, a lone TLS cert or key, or an unknown database URL are refused', () => {
    assert.match(problemsOf({ adminToken: 'short' })[0]!, /THINGAUTH_ADMIN_TOKEN .*at least 16 characters/);
    assert.match(problemsOf({ tlsCert: '/x/cert.pem' })[0]!, /THINGAUTH_TLS_CERT and THINGAUTH_TLS_KEY must be set together/);
    assert.match(problemsOf({ tlsKey: '/x/key.pem' })[0]!, /must be set together/);
    const [db] = problemsOf({ databaseUrl: 'mysql://user:pw@host/db' });
    assert.match(db!, /THINGAUTH_DATABASE_URL/);
    assert.ok(!db!.includes('pw@host'), 'the message does not echo credentials from the URL');
  });

  it('postgres:// and postgresql:// URLs are accepted; a bad sslmode, a missing database or CA file are refused without echoing the URL (issue 13)', () => {
    assert.equal(loadConfig({ databaseUrl: 'postgres://user:pw@db.example:5432/thingauth' }).databaseUrl, 'postgres://user:pw@db.example:5432/thingauth');
    assert.equal(loadConfig({ databaseUrl: 'postgresql://user:pw@db.example/thingauth?sslmode=require' }).databaseUrl, 'postgresql://user:pw@db.example/thingauth?sslmode=require');
    const bad = (input: ConfigInput) => problemsOf(input).join('\n');
    assert.match(bad({ databaseUrl: 'postgres://user:pw@db.example/thingauth?sslmode=prefer' }), /THINGAUTH_DATABASE_URL .*sslmode must be one of disable, require, verify-ca, verify-full/);
    assert.match(bad({ databaseUrl: 'postgres://user:pw@db.example/' }), /names no database/);
    assert.match(bad({ databaseUrl: 'postgres://user:pw@db.example/thingauth?sslmode=verify-full' }), /needs the database CA file setting/);
    assert.match(bad({ databaseUrl: 'postgres://user:pw@db.example/thingauth', databaseCaFile: '/nonexistent/ca.pem' }), /CA file \/nonexistent\/ca.pem does not exist/);
    assert.match(bad({ databaseCaFile: '/nonexistent/ca.pem' }), /THINGAUTH_DATABASE_CA_FILE only applies with a postgres:\/\//);
    for (const p of problemsOf({ databaseUrl: 'postgres://user:s3cretpw@db.example/thingauth?sslmode=prefer' })) assert.ok(!p.includes('s3cretpw'), 'no password in the message');
    assert.equal(loadConfig({}).databasePoolSize, 10);
    assert.equal(loadConfig({ databasePoolSize: '40' }).databasePoolSize, 40);
    assert.match(bad({ databasePoolSize: '0' }), /THINGAUTH_DATABASE_POOL_SIZE .*whole number from 1 to 1000/);
    assert.equal(loadConfig({}).presenceLeaseSeconds, 30);
    assert.match(bad({ presenceLeaseSeconds: '0' }), /THINGAUTH_PRESENCE_LEASE_SECONDS .*whole number from 1 to 3600/);
  });

  it('THINGAUTH_REDIS_URL: unset by default; redis:// and rediss:// accepted; anything else refused without echoing the URL (issue 14)', () => {
    assert.equal(loadConfig({}).redisUrl, undefined);
    const pg = 'postgres://thingauth:pw@db.example:5432/thingauth';
    assert.equal(loadConfig({ redisUrl: 'redis://127.0.0.1:6379', databaseUrl: pg }).redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(loadConfig({ redisUrl: 'rediss://user:pw@redis.example:6380/2', databaseUrl: pg }).redisUrl, 'rediss://user:pw@redis.example:6380/2');
    assert.equal(loadConfig({ redisUrl: 'redis://r:6379', databaseUrl: pg }).presenceLeaseSeconds, 10, 'a cluster notices a dead node within 15 s');
    assert.match(problemsOf({ redisUrl: 'redis://127.0.0.1:6379' }).join('\n'), /THINGAUTH_REDIS_URL .*set THINGAUTH_DATABASE_URL=postgres/);
    assert.equal(configInputFromEnv({ THINGAUTH_REDIS_URL: 'redis://r:6379' }).redisUrl, 'redis://r:6379');
    const bad = (raw: string) => problemsOf({ redisUrl: raw }).join('\n');
    assert.match(bad('http://user:s3cretpw@redis.example'), /THINGAUTH_REDIS_URL \(--redis-url\) must start with redis:\/\/ or rediss:\/\//);
    assert.match(bad('redis.example:6379'), /THINGAUTH_REDIS_URL .*(must be a URL|must start with redis)/);
    assert.match(bad('redis://:s3cretpw@redis.example:99999'), /must be a URL/);
    assert.match(bad('redis://:s3cretpw@redis.example/db1'), /database must be a number/);
    for (const raw of ['http://user:s3cretpw@redis.example', 'redis://:s3cretpw@redis.example:99999', 'redis://:s3cretpw@redis.example/db1']) {
      assert.ok(!bad(raw).includes('s3cretpw'), 'no password in the message');
    }
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({ httpPort: 'a', mqttPort: 'b', deviceLimit: '0', adminToken: 'x' });
    assert.equal(problems.length, 4);
  });

  it('the admin token is not echoed in the error', () => {
    const [p] = problemsOf({ adminToken: 'shortsecret' });
    assert.ok(!p!.includes('shortsecret'));
  });

  it('sqlite: URLs choose the file', () => {
    assert.equal(sqlitePath(loadConfig({ databaseUrl: 'sqlite:/var/lib/ta/db.sqlite' })), '/var/lib/ta/db.sqlite');
    assert.equal(sqlitePath(loadConfig({ databaseUrl: 'sqlite://relative.db' })), path.resolve('relative.db'));
    assert.equal(sqlitePath(loadConfig({ databaseUrl: 'sqlite::memory:' })), ':memory:');
  });
  it('management API bind address: THINGAUTH_MANAGEMENT_HOST, loopback by default, apart from THINGAUTH_HOST (issue 11 item 2)', () => {
    const c = loadConfig({});
    assert.equal(c.managementHost, '127.0.0.1');
    assert.equal(c.host, '0.0.0.0');
    assert.equal(loadConfig(configInputFromEnv({ THINGAUTH_MANAGEMENT_HOST: '::' })).managementHost, '::');
    assert.equal(loadConfig({ managementHost: 'mgmt.internal' }).managementHost, 'mgmt.internal');
    for (const bad of ['127.0.0.1:8080', 'not a host', 'http://127.0.0.1', '-bad', 'a..b']) {
      const [p] = problemsOf({ managementHost: bad });
      assert.match(p!, /THINGAUTH_MANAGEMENT_HOST \(--management-host\) must be an IP address or a host name/);
      assert.ok(p!.includes(bad));
    }
    assert.match(problemsOf({ host: '0.0.0.0:1883' })[0]!, /THINGAUTH_HOST \(--host\)/);
  });

  it('HTTP deadlines and the per-source connection cap (issue 11 item 6): defaults, bounds, headers not longer than requests', () => {
    const c = loadConfig({});
    assert.equal(c.httpHeadersTimeoutSeconds, 10);
    assert.equal(c.httpRequestTimeoutSeconds, 30);
    assert.equal(c.managementRequestTimeoutSeconds, 900);
    assert.equal(c.httpConnectionsPerSource, 64);
    assert.equal(loadConfig({ httpConnectionsPerSource: '0' }).httpConnectionsPerSource, 0);
    assert.match(problemsOf({ httpHeadersTimeoutSeconds: '0' })[0]!, /THINGAUTH_HTTP_HEADERS_TIMEOUT_SECONDS/);
    assert.match(problemsOf({ httpRequestTimeoutSeconds: '1.5' })[0]!, /THINGAUTH_HTTP_REQUEST_TIMEOUT_SECONDS/);
    assert.match(problemsOf({ httpHeadersTimeoutSeconds: '40' })[0]!, /THINGAUTH_HTTP_REQUEST_TIMEOUT_SECONDS .* must not be shorter than THINGAUTH_HTTP_HEADERS_TIMEOUT_SECONDS/);
  });
});
