/**
 * TLS on the management listener (THINGAUTH_MANAGEMENT_TLS: on, off, auto = on when the API
 * binds beyond loopback) and the CLI over it, plus `thingauth doctor`: real servers, real
 * sockets, the CLI in a child process as users run it. The CLI trusts the data dir's generated
 * CA and nothing less: a client without it is refused by certificate verification.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { createDevice, signedConnect } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) base[k] = v;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

function httpsGet(url: string, ca: string | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...(ca ? { ca } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

describe('management API over TLS, and the CLI doctor', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
  });

  it('THINGAUTH_MANAGEMENT_TLS=on: https with the generated certificate; plain HTTP gets no answer; the CLI talks https trusting the data dir CA', async () => {
    const srv = await startTestServer({ managementTls: 'on' });
    servers.push(srv);
    const l = srv.running.listeners['management-http']!;
    assert.match(l.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = fs.readFileSync(srv.running.ctx.tls.caPath!, 'utf8');
    const health = await httpsGet(`https://127.0.0.1:${l.port}/healthz`, ca);
    assert.equal(health.status, 200);
    // Without the CA the certificate is not trusted.
    await assert.rejects(httpsGet(`https://127.0.0.1:${l.port}/healthz`, undefined), /self[- ]signed|unable to verify|certificate/i);
    // Plain HTTP to the TLS port: no HTTP answer.
    await assert.rejects(fetch(`http://127.0.0.1:${l.port}/healthz`));

    const url = `https://127.0.0.1:${l.port}`;
    const ok = await cli(['product', 'list', '--url', url, '--data-dir', srv.dataDir, '--token', srv.adminToken]);
    assert.equal(ok.code, 0, ok.stderr);
    // Another data dir (no CA of this server): refused by certificate verification, never skipped.
    const other = makeTempDir();
    const refused = await cli(['product', 'list', '--url', url, '--data-dir', other, '--token', srv.adminToken]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /cannot reach thingauth .*(SELF_SIGNED|UNABLE_TO_VERIFY|CERT)/i);
    // A plain URL against the TLS port says what to do.
    const plain = await cli(['product', 'list', '--url', `http://127.0.0.1:${l.port}`, '--data-dir', srv.dataDir, '--token', srv.adminToken]);
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /https:\/\//);

    // A streamed upload goes over TLS too: `thingauth import` sends the file as it reads it.
    const file = path.join(other, 'products.jsonl');
    fs.writeFileSync(file, JSON.stringify({ productKey: 'a1TlsImport1', productSecret: 'TlsImportSecret01', productName: 'over tls' }) + '\n');
    const imp = await cli(['import', 'products', '--file', file, '--no-progress', '--url', url, '--data-dir', srv.dataDir, '--token', srv.adminToken]);
    assert.equal(imp.code, 0, imp.stderr + imp.stdout);
    const got = await cli(['product', 'get', 'a1TlsImport1', '--json', '--url', url, '--data-dir', srv.dataDir, '--token', srv.adminToken]);
    assert.equal(JSON.parse(got.stdout).productName, 'over tls');
  });

  it('auto: TLS when the API binds beyond loopback (the start line says so), plain on loopback; off keeps plain', async () => {
    const open = await startTestServer({ host: '127.0.0.2', managementHost: '0.0.0.0' });
    servers.push(open);
    const l = open.running.listeners['management-http']!;
    assert.match(l.url, /^https:\/\//);
    const line = open.logs.map((x) => JSON.parse(x) as { listener?: string; msg: string }).find((j) => j.listener === 'management-http');
    assert.match(line!.msg, /reachable from the network over TLS/);
    const ca = fs.readFileSync(open.running.ctx.tls.caPath!, 'utf8');
    assert.equal((await httpsGet(`https://127.0.0.1:${l.port}/healthz`, ca)).status, 200);
    // The CLI on the server's machine with the server's environment finds https by itself.
    const r = await cli(['product', 'list', '--data-dir', open.dataDir, '--token', open.adminToken], { THINGAUTH_MANAGEMENT_HOST: '0.0.0.0', THINGAUTH_URL: `https://127.0.0.1:${l.port}` });
    assert.equal(r.code, 0, r.stderr);

    const local = await startTestServer();
    servers.push(local);
    assert.match(local.running.listeners['management-http']!.url, /^http:\/\/127\.0\.0\.1:/);
    assert.equal((await fetch(`${local.api}/healthz`)).status, 200);
  });

  it('thingauth doctor: a device (exit 1 when refused), a pasted CONNECT (exit 0 when ok, password from stdin), findings printed readably', async () => {
    const srv = await startTestServer();
    servers.push(srv);
    const conn = ['--url', srv.api, '--data-dir', srv.dataDir, '--token', srv.adminToken];
    const d = await createDevice(srv);
    const c = signedConnect(d);
    const ok = await cli(['doctor', '--client-id', c.clientId, '--username', c.username, '--password-stdin', '--transport', 'tcp', ...conn], {}, c.password + '\n');
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /^verdict: ok/);
    assert.match(ok.stdout, /\[credentials-ok\]/);

    const bad = signedConnect({ ...d, deviceSecret: 'WrongSecret0123456789abcdefABCDEF' });
    const refused = await cli(['doctor', '--client-id', bad.clientId, '--username', bad.username, '--password', bad.password, '--transport', 'tcp', ...conn]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stdout, /^verdict: REFUSED/);
    assert.match(refused.stdout, /ERROR {3}The signature does not match the current DeviceSecret .*\[sign-mismatch\]\n {9}-> Sign with the DeviceSecret/);
    assert.ok(!refused.stdout.includes(c.password) && !refused.stdout.includes(d.deviceSecret));

    assert.equal((await srv.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/disable`)).status, 200);
    const dev = await cli(['doctor', '--product', d.productKey, '--device', d.deviceName, '--json', ...conn]);
    assert.equal(dev.code, 1, dev.stderr);
    const body = JSON.parse(dev.stdout);
    assert.equal(body.verdict, 'refused');
    assert.ok(body.findings.some((f: { code: string }) => f.code === 'device-disabled'));

    const quiet = await createDevice(srv);
    const unknown = await cli(['doctor', '--product', quiet.productKey, '--device', quiet.deviceName, ...conn]);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stdout, /\[no-recent-activity\]/);

    const usage = await cli(['doctor', '--client-id', 'x', ...conn]);
    assert.notEqual(usage.code, 0);
    assert.match(usage.stderr, /needs --client-id, --username and --password/);
  });
});
