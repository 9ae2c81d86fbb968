import net from 'node:net';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import { startTestServer } from '/work/main/dist/test/helpers/server.js';
import { createDevice, signedConnect, caOf } from '/work/main/dist/test/helpers/mqtt.js';
const server = await startTestServer();
const d = await createDevice(server);
const c = signedConnect(d);
/** A TCP relay that records how the server side ended: TLS records seen (types), FIN or RST. */
async function relay(targetPort) {
  const seen = { types: [], fin: false, rst: false, closed: false };
  let closedResolve; const closed = new Promise((r) => (closedResolve = r));
  const proxy = net.createServer((down) => {
    const up = net.connect(targetPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    up.on('data', (chunk) => { down.write(chunk); buf = Buffer.concat([buf, chunk]); while (buf.length >= 5) { const len = buf.readUInt16BE(3); if (buf.length < 5 + len) break; seen.types.push(buf[0]); buf = buf.subarray(5 + len); } });
    up.on('end', () => { seen.fin = true; down.end(); });
    up.on('error', (e) => { if (e.code === 'ECONNRESET') seen.rst = true; down.destroy(); });
    up.on('close', () => { seen.closed = true; closedResolve(); });
    down.on('data', (chunk) => up.write(chunk));
    down.on('end', () => up.end());
    down.on('error', () => up.destroy());
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  return { port: proxy.address().port, seen, closed, proxy };
}
async function session(targetPort) {
  const r = await relay(targetPort);
  const s = tls.connect({ host: '127.0.0.1', port: r.port, ca: caOf(server), servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
    s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: c.clientId, username: c.username, password: Buffer.from(c.password) }));
  });
  s.on('error', () => {});
  await new Promise((res) => s.once('data', res));
  return { s, ...r };
}
const show = (l, x) => console.log(l, JSON.stringify({ alertFromServer: x.seen.types.includes(0x15), fin: x.seen.fin, rst: x.seen.rst }));
for (const [name, port] of [['plain-port', server.running.listeners.mqtt.port], ['mqtts', server.running.listeners.mqtts.port]]) {
  const x = await session(port); x.s.end(); await x.closed; show(`${name} device ends:`, x);
  const y = await session(port); y.s.write(mqttPacket.generate({ cmd: 'disconnect' })); await y.closed; show(`${name} device DISCONNECTs:`, y);
  for (let i = 0; i < 5; i++) { const z = await session(port); z.s.end(mqttPacket.generate({ cmd: 'disconnect' })); await z.closed; show(`${name} DISCONNECT+end:`, z); }
  for (let i = 0; i < 3; i++) { const z = await session(port); z.s.destroy(); await z.closed; show(`${name} device destroy:`, z); }
}
const a = await session(server.running.listeners.mqtt.port);
const b = await session(server.running.listeners.mqtts.port);
await server.stop();
await Promise.race([Promise.all([a.closed, b.closed]), new Promise((r) => setTimeout(r, 3000))]);
show('shutdown plain-port:', a); show('shutdown mqtts:', b);
process.exit(0);
