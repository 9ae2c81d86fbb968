/**
 * The CLI's connection settings with the management API on TLS (THINGAUTH_MANAGEMENT_TLS):
 * the default URL follows the server settings of the environment, and an https URL is checked
 * against the system CAs plus the data dir's generated CA. The connection itself is tested end
 * to end in test/e2e/console-api-cli-tls.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { DEFAULT_TLS_URL, DEFAULT_URL, defaultUrl, resolveConnection } from '../../src/cli/api-client.js';

describe('CLI connection with management TLS', () => {
  it('default URL: http on loopback, https when the environment puts the API on TLS', () => {
    assert.equal(defaultUrl({}), DEFAULT_URL);
    assert.equal(defaultUrl({ THINGAUTH_MANAGEMENT_HOST: '127.0.0.1' }), DEFAULT_URL);
    assert.equal(defaultUrl({ THINGAUTH_MANAGEMENT_HOST: '0.0.0.0' }), DEFAULT_TLS_URL);
    assert.equal(defaultUrl({ THINGAUTH_MANAGEMENT_HOST: '0.0.0.0', THINGAUTH_MANAGEMENT_TLS: 'off' }), DEFAULT_URL);
    assert.equal(defaultUrl({ THINGAUTH_MANAGEMENT_TLS: 'ON' }), DEFAULT_TLS_URL);
    assert.equal(defaultUrl({ THINGAUTH_MANAGEMENT_TLS: 'bogus', THINGAUTH_MANAGEMENT_HOST: '0.0.0.0' }), DEFAULT_URL);
  });

  it('https trusts the system CAs plus <data dir>/tls/ca.pem; http carries no CA list', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-cli-ca-'));
    fs.mkdirSync(path.join(dir, 'tls'));
    fs.writeFileSync(path.join(dir, 'tls', 'ca.pem'), 'PEM OF THE LOCAL CA');
    const c = resolveConnection({ url: 'https://mgmt.example:8080/', token: 't'.repeat(20), dataDir: dir }, {});
    assert.equal(c.url, 'https://mgmt.example:8080');
    assert.equal(c.ca?.length, tls.rootCertificates.length + 1);
    assert.equal(c.ca?.at(-1), 'PEM OF THE LOCAL CA');
    const plain = resolveConnection({ url: 'http://127.0.0.1:8080', token: 't'.repeat(20), dataDir: dir }, {});
    assert.equal(plain.ca, undefined);
    // No CA in the data dir: the system's only.
    const none = resolveConnection({ url: 'https://x:1', token: 't'.repeat(20), dataDir: path.join(dir, 'missing') }, {});
    assert.equal(none.ca?.length, tls.rootCertificates.length);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
